"""The de-duplication window: a repeat within the last `capacity` keys is seen, the oldest key leaves first."""

from __future__ import annotations

from backend.ingest.dedupe import RecentIds


def test_repeats_are_seen_and_the_oldest_key_leaves_first() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.seen(k) for k in ("gw/a", "gw/b", "gw/a", "gw/c")] == [False, False, True, False]
    assert len(recent) == 3, "a repeat takes no room"
    assert recent.seen("gw/d") is False  # the window is full: gw/a, the oldest, leaves
    assert recent.seen("gw/b") is True
    assert recent.seen("gw/a") is False, "gw/a left the window: it is new again"
    assert recent.seen("other-gw/a") is False, "the key includes the gateway"


def test_a_prefilled_window_behaves_the_same_and_never_mistakes_a_key_for_a_placeholder() -> None:
    empty, full = RecentIds(capacity=3, prefill=False), RecentIds(capacity=3)
    assert len(full) == 0, "placeholders are not keys"
    keys = ["gw/a", "gw/b", "gw/a", "gw/c", "gw/d", "gw/b", "gw/a", "other-gw/a"]
    assert [full.seen(k) for k in keys] == [empty.seen(k) for k in keys]
    assert len(full) == len(empty) == 3


def test_the_prefilled_window_takes_its_memory_at_start() -> None:
    """Its set is sized for the whole window when built, so keys arriving later replace placeholders one for one."""
    import sys

    recent = RecentIds(capacity=50_000)
    size_at_start = sys.getsizeof(recent._ids)
    for i in range(120_000):
        recent.seen(f"gw/{i}")
    assert sys.getsizeof(recent._ids) == size_at_start
    assert len(recent) == 50_000
    assert recent.seen("gw/119999") is True
    assert recent.seen("gw/0") is False, "left the window long ago"
