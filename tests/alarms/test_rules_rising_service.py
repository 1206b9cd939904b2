"""A rising hazard through the alarm service (issue 15): the stored alarm's severity rises, its timeline records
the previous severity and the trend, and the service's listeners (the ladder bridge among them) receive the raised
alarm with its `severity_raised` entry. Today a later 600 mA left no trace (occurrences 1, detail 320)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alerting.model import Persist
from backend.alarms.service import AlarmService
from backend.ingest.handoff import Reading
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.stream import Event
from broker.clock import VirtualClock
from broker.kinds import DeviceKind


async def test_residual_current_rising_to_600_ma_raises_the_stored_alarm_and_tells_the_listeners(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    box = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL and d.id not in sample_site.rule_settings)
    heard: list[Persist] = []

    async def listener(actions: Sequence[Event]) -> None:
        heard.extend(a for a in actions if isinstance(a, Persist))

    async with AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600) as svc:
        svc.stream.subscribe(listener, name="test")
        for value in (320.0, 330.0, 600.0):
            clock.advance(60)
            t = clock.now_ms()
            await svc.on_readings([Reading(box.id, box.gateway, "residual_current_ma", value, t, t)])
        [stored] = svc.store.list(open_only=True)
        assert (stored.alarm_type, stored.severity, stored.occurrences, stored.detail) == ("residual_current", "critical", 2, "600.0")
        audit = svc.store.audit(stored.id)
        assert [e.move for e in audit] == ["raise", "severity_raised"]
        assert audit[1].note.startswith("major -> critical; rising: 330.0 -> 600.0")
        rose = [p for p in heard if any(e.move == "severity_raised" for e in p.audit)]
        assert len(rose) == 1
        assert (rose[0].alarm.id, rose[0].alarm.severity.value) == (stored.id, "critical")
