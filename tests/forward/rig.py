"""The real path of a 119 hand-off on one SQLite alarm database and a virtual clock: the alarm service, the escalation
runtime (the ladder, console channel only) and `AlarmCore` as backend/server.py enters it, with `forward` settings.

The alarm service watches none of the site's devices (a test raises alarms with signals); the core gets the whole
sample site so the forward names the place in words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from alerting.model import Place, Severity, Signal, SignalKind
from backend.alarms.service import AlarmService
from backend.centre import AlarmCore
from backend.escalation.runtime import EscalationRuntime
from backend.forward.forwarder import Forwarder
from backend.forward.settings import ForwardSettings
from backend.settings import Settings
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.stream import Bulletin, CentreStream
from broker.clock import VirtualClock

THU_0900 = 1_767_225_600_000 + 3_600_000  # Thursday 09:00 in Beijing
BUILDING = "c01-b01"


@dataclass
class Rig:
    engine: sa.Engine
    clock: VirtualClock
    stream: CentreStream
    alarms: AlarmService
    escalation: EscalationRuntime
    core: AlarmCore

    @property
    def forwarder(self) -> Forwarder:
        assert self.core.forwarder is not None, "forward.enabled is off in this rig"
        return self.core.forwarder

    async def raise_fire(self, alarm_type: str = "smoke", subject: str = "device:c01-b01-smoke-1", *, drill: bool = False) -> str:
        sig = Signal(SignalKind.RAISE, alarm_type, subject, self.clock.now_ms(), Severity.CRITICAL, True, drill, "烟感报警",
                     Place(subject.split(":", 1)[1], None, BUILDING, 2, None))
        actions = await self.alarms.signal(sig)
        alarm_id = next(a.alarm.id for a in actions if hasattr(a, "alarm") and a.alarm.key == sig.key)
        await self.core.bridge.settle()  # its ladder runs (the verify window counts from here)
        return alarm_id

    async def verify(self, alarm_id: str, actor: str = "duty1") -> None:
        await self.escalation.service.verify(alarm_id, actor)


def forward_settings(**values: Any) -> Settings:
    return Settings(forward=ForwardSettings(**{"enabled": True, **values}))


@asynccontextmanager
async def rig(tmp_path: Path, site: SiteDirectory, settings: Settings, *, clock: VirtualClock | None = None, db: str = "alarms.db",
              url: str | None = None) -> AsyncIterator[Rig]:
    """`url`: a database URL (PostgreSQL) instead of the SQLite file `db` under tmp_path."""
    clock = clock or VirtualClock(THU_0900)
    engine = make_engine(url or sqlite_url(tmp_path / db))
    stream = CentreStream()
    quiet = dataclasses.replace(site, devices={}, gateways={}, rule_settings={})
    alarms = AlarmService.for_sites(engine, quiet, clock, stream=stream)
    try:
        async with EscalationRuntime(settings.escalation, engine, site, clock, stream=stream) as esc, \
                AlarmCore(alarms, esc, settings, site, publish=None, broker=("127.0.0.1", 0)) as core:
            yield Rig(engine, clock, stream, alarms, esc, core)
    finally:
        engine.dispose()


def forward_bulletins(events: list[Any]) -> list[Bulletin]:
    return [e for e in events if isinstance(e, Bulletin) and e.kind == "forward"]
