"""Alarms written straight into a real alarm store for the history and report tests: each with a known place, time,
type, outcome and audit path, so a test knows every answer before it asks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from alerting.lifecycle import OPEN_STATES, AlarmState
from alerting.model import Alarm, AlarmKey, AuditEntry, Persist, Place, Severity
from backend.alarms.store import AlarmStore
from backend.sites.model import SiteDirectory

LIFE_SAFETY = frozenset({"smoke", "sos", "confirmed_fire"})


@dataclass(frozen=True)
class Seed:
    id: str
    alarm_type: str
    device: str  # a device id of the site directory
    raised_ms: int
    path: Sequence[tuple[int, str, str]] = ()  # (seconds after raised, move, to_state), from "raised"
    severity: str = "major"
    drill: bool = False
    detail: str | None = None
    occurrences: int = 1


def store_for(engine: sa.Engine, sites: SiteDirectory) -> AlarmStore:
    return AlarmStore(engine, sites.place_of_building, gateway_context=sites.place_of_gateway)


def seed(store: AlarmStore, sites: SiteDirectory, seeds: Sequence[Seed]) -> None:
    """Write every seed as its final row plus its whole audit log (one transaction per alarm)."""
    for s in seeds:
        d = sites.devices[s.device]
        place = Place(d.id, d.gateway, d.building, d.unit, d.household)
        bname = sites.buildings[d.building].name
        entries = [AuditEntry(s.id, 0, s.raised_ms, "system", "raise", None, AlarmState.RAISED, "", s.drill)]
        state = AlarmState.RAISED
        for i, (after_s, move, to) in enumerate(s.path, start=1):
            entries.append(AuditEntry(s.id, i, s.raised_ms + after_s * 1000, "duty1", move, state, AlarmState(to), "", s.drill))
            state = AlarmState(to)
        updated = entries[-1].at_ms
        alarm = Alarm(id=s.id, key=AlarmKey(f"device:{d.id}:{s.id}", s.alarm_type, s.drill), state=state, severity=Severity(s.severity),
                      life_safety=s.alarm_type in LIFE_SAFETY, title=f"{s.alarm_type} · {bname}", place=place, occurrences=s.occurrences,
                      first_seen_ms=s.raised_ms, last_seen_ms=s.raised_ms, raised_at_ms=s.raised_ms, updated_ms=updated, audit_seq=len(entries),
                      detail=s.detail)
        assert alarm.is_open == (state in OPEN_STATES)
        store.apply([Persist(alarm, tuple(entries))])
