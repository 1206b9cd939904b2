"""Patrol alarms go through the alarm service: the ladder's or a person's move on a `patrol_missed` alarm and the
next miss work on one alarm, not two copies of it; and an alarm left open across a restart clears on the first
answer of the new schedule. Real alarm service and SQLite store, virtual clock."""

from __future__ import annotations

from pathlib import Path

from alerting.lifecycle import AlarmState, Move
from backend.alarms.service import AlarmService
from backend.patrol import PATROL_MISSED, PatrolAlarms
from backend.patrol.book import PatrolMiss, PatrolReturn
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock


def miss(gateway: str, n: int, at_ms: int) -> PatrolMiss:
    return PatrolMiss(gateway, f"p{n}", at_ms - 120_000, at_ms, n, None)


def answer(gateway: str, n: int, at_ms: int) -> PatrolReturn:
    return PatrolReturn(gateway, f"p{n}", at_ms - 1_000, at_ms, late=False, was_missing=False)


async def test_a_move_on_a_patrol_alarm_is_kept_by_the_next_miss_and_a_restart_clears_on_the_first_answer(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    gw = sorted(sample_site.gateways)[0]
    db = make_engine(sqlite_url(tmp_path / "alarms.db"))
    service = AlarmService.for_sites(db, sample_site, clock)
    await service.start()
    patrol = PatrolAlarms(service, sample_site)
    await patrol.patrol_missed(miss(gw, 1, clock.now_ms()), clock.now_ms())
    [alarm] = [a for a in service.store.list(open_only=True) if a.alarm_type == PATROL_MISSED]
    clock.advance(60)
    await service.move(alarm.id, Move.ACKNOWLEDGE, "officer:zhang")  # the platform owner saw it
    clock.advance(3600)
    await patrol.patrol_missed(miss(gw, 2, clock.now_ms()), clock.now_ms())  # a second miss: one more occurrence
    stored = service.store.get(alarm.id)
    assert stored is not None
    assert (stored.state, stored.occurrences) == (AlarmState.ACKNOWLEDGED, 2), "the next miss keeps the acknowledgement"

    # a restart: a new service and a fresh schedule that knows no misses; the gateway answers at once
    again = AlarmService.for_sites(db, sample_site, clock)
    await again.start()
    clock.advance(60)
    await PatrolAlarms(again, sample_site).patrol_returned(answer(gw, 1, clock.now_ms()), clock.now_ms())
    closed = again.store.get(alarm.id)
    assert closed is not None
    assert not closed.is_open, f"the first answer after the restart resolves it: {closed.state}"
    assert [e.move for e in again.store.audit(alarm.id)][-1] == Move.RESOLVE.value
