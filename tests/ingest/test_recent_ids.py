"""The de-duplication window: a repeat within the last `capacity` keys is seen, the oldest key leaves first."""

from __future__ import annotations

from backend.pipeline import RecentIds


def test_repeats_are_seen_and_the_oldest_key_leaves_first() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.seen(k) for k in ("gw/a", "gw/b", "gw/a", "gw/c")] == [False, False, True, False]
    assert len(recent) == 3, "a repeat takes no room"
    assert recent.seen("gw/d") is False  # the window is full: gw/a, the oldest, leaves
    assert recent.seen("gw/b") is True
    assert recent.seen("gw/a") is False, "gw/a left the window: it is new again"
    assert recent.seen("other-gw/a") is False, "the key includes the gateway"
