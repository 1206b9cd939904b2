"""The patrol book on virtual time: staggering, deadlines, misses within one period, late answers."""

from __future__ import annotations

import pytest

from backend.patrol import PatrolBook, PatrolSettings

T0 = 1_767_225_600_000
GWS = [f"gw-{i}" for i in range(20)]


def _run_until(book: PatrolBook, until_ms: int, answer: set[str], now: int) -> int:
    """Advance from `now` to `until_ms` waking exactly when the book asks; gateways in `answer` reply at once."""
    while True:
        wake = book.next_wakeup_ms()
        if wake is None or wake > until_ms:
            return until_ms
        now = max(now, wake)
        book.expire(now)
        for sent in book.due(now):
            if sent.gateway in answer:
                assert book.answered(sent.gateway, sent.patrol_id, now + 50) is not None


def test_settings_hold_the_standard() -> None:
    with pytest.raises(ValueError, match="2 h"):
        PatrolSettings(period_s=7201)
    with pytest.raises(ValueError, match="shorter"):
        PatrolSettings(period_s=600, window_s=600)


def _first_round(book: PatrolBook) -> dict[str, int]:
    """When each gateway was first patrolled (every patrol answered at once)."""
    first: dict[str, int] = {}
    now = T0
    while len(first) < len(GWS):
        now = book.next_wakeup_ms() or now
        for sent in book.due(now):
            first.setdefault(sent.gateway, sent.sent_ms)
            assert book.answered(sent.gateway, sent.patrol_id, now) is not None
    return first


def test_every_gateway_is_patrolled_once_an_interval_staggered() -> None:
    s = PatrolSettings(period_s=3600, window_s=120)
    first = _first_round(PatrolBook(GWS, s, T0))
    assert max(first.values()) - T0 < s.interval_ms
    assert len(set(first.values())) > len(GWS) // 2  # spread, not all at once


def test_a_gateway_that_stops_answering_is_missed_within_one_period_wherever_it_stops() -> None:
    s = PatrolSettings(period_s=3600, window_s=120)
    for stop_after_s in (0, 1, 1799, 3479, 3480, 3599):
        book = PatrolBook(["gw-a", "gw-b"], s, T0)
        now = _run_until(book, T0 + 3 * 3600_000, {"gw-a", "gw-b"}, T0)
        stop = now + stop_after_s * 1000
        now = _run_until(book, stop, {"gw-a", "gw-b"}, now)
        missed_at = None
        while missed_at is None:
            now = book.next_wakeup_ms() or now
            misses = book.expire(now)
            if any(m.gateway == "gw-a" for m in misses):
                missed_at = now
            for sent in book.due(now):
                if sent.gateway == "gw-b":
                    book.answered("gw-b", sent.patrol_id, now)
        assert missed_at - stop <= s.period_s * 1000, (stop_after_s, missed_at - stop)
        assert all(m.gateway == "gw-a" for m in book.expire(now))


def test_misses_count_in_a_row_and_a_late_answer_clears_without_unmissing() -> None:
    s = PatrolSettings(period_s=600, window_s=60, stagger=False)
    book = PatrolBook(["gw"], s, T0)
    sent = book.due(T0)
    assert len(sent) == 1
    assert book.due(T0 + 1000) == []  # one outstanding at a time
    miss = book.expire(T0 + 60_000)
    assert [m.consecutive for m in miss] == [1]
    second = book.due(T0 + 540_000)
    assert [m.consecutive for m in book.expire(T0 + 600_000)] == [2]
    late = book.answered("gw", sent[0].patrol_id, T0 + 601_000)
    assert late is not None
    assert late.late
    assert late.was_missing
    assert book.answered("gw", second[0].patrol_id, T0 + 602_000) is not None  # also late, now not missing any more
    st = book.status()[0]
    assert (st.sent, st.missed, st.consecutive_misses) == (2, 2, 0)


def test_answers_from_the_wrong_gateway_or_unknown_ids_are_ignored() -> None:
    book = PatrolBook(["gw-1", "gw-2"], PatrolSettings(period_s=600, window_s=60, stagger=False), T0)
    sent = {p.gateway: p for p in book.due(T0)}
    assert book.answered("gw-2", sent["gw-1"].patrol_id, T0 + 10) is None
    assert book.answered("gw-1", "patrol-nope", T0 + 10) is None
    assert book.answered("gw-1", sent["gw-1"].patrol_id, T0 + 10) is not None
    assert [m.gateway for m in book.expire(T0 + 60_000)] == ["gw-2"]


def test_no_patrol_within_the_start_grace_and_the_first_round_still_ends_by_period_plus_grace() -> None:
    s = PatrolSettings(period_s=3600, window_s=120, start_grace_s=30)
    book = PatrolBook(GWS, s, T0)
    assert book.due(T0 + 29_999) == []
    first = _first_round(book)
    assert min(first.values()) >= T0 + 30_000
    assert max(first.values()) < T0 + 30_000 + s.interval_ms
    with pytest.raises(ValueError, match="negative"):
        PatrolSettings(start_grace_s=-1)
