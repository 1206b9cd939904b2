"""The centre's middle on real stores: the alarm service, the escalation service and the bridge between them,
on one database (SQLite, or a fresh PostgreSQL database), a virtual clock and recording channels.

The alarm service watches no devices here (the site's devices and gateways are left out of its copy of the
directory): the tests raise and clear alarms with signals, and a clock moved on by minutes must not also
raise "device lost" for the site's ~3,000 devices that never reported. Places, grids and responders are the
sample site's.

`centre_api(c)` serves the HTTP API over a centre as backend/server.py wires it: the console's routes and the
one-tap links, with the alarm service as the one owner of moves and the escalation service as the ladder.

`Centre.restart()` is a crash and a restart: the bridge's in-memory queue is dropped (its task ends without
working what is queued), and a new alarm service, escalation service and bridge are built from the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa

from alerting.ladder import PolicySet
from alerting.model import Place, Severity, Signal, SignalKind
from backend.alarms.service import AlarmService
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.escalation import EscalationService, EscalationStore, load_policies
from backend.escalation.bridge import AlarmLadderBridge
from backend.escalation.store import LogEntry
from backend.notify import Dispatcher, Message, RateLimiter, Receipt, ReceiptStore
from backend.sites import SiteDirectory
from backend.sites.roster import SiteRoster
from backend.store.users import UserStore
from backend.stream import CentreStream
from broker.clock import VirtualClock
from tests.escalation.helpers import THU_0900, RecordingChannel

BUILDING = "c01-b01"


@dataclass
class Centre:
    engine: sa.Engine
    site: SiteDirectory
    clock: VirtualClock
    policies: PolicySet = field(default_factory=load_policies)
    app: RecordingChannel = field(default_factory=lambda: RecordingChannel("app", outside=False))
    sms: RecordingChannel = field(default_factory=lambda: RecordingChannel("sms"))
    receipts_seen: list[Receipt] = field(default_factory=list)
    rate_limit: int = 6
    quiet: bool = True  # the alarm service watches none of the site's devices (see above)
    alarms: AlarmService | None = None
    escalation: EscalationService | None = None
    bridge: AlarmLadderBridge | None = None

    async def _build(self) -> None:
        watched = dataclasses.replace(self.site, devices={}, gateways={}, rule_settings={}) if self.quiet else self.site
        self.alarms = AlarmService.for_sites(self.engine, watched, self.clock)
        await self.alarms.start()  # the core from the store; ticks are driven by the test
        store = EscalationStore(self.engine, self.policies)
        receipts = ReceiptStore(self.engine)

        async def record(r: Receipt) -> None:
            receipts.record(r)
            self.receipts_seen.append(r)

        async def no_sleep(_: float) -> None:
            return None

        roster = SiteRoster(self.site)
        dispatcher = Dispatcher({"app": self.app, "sms": self.sms}, CentreStream(), self.clock, sleep=no_sleep,
                                limiter=RateLimiter(self.rate_limit, 60), record=record)
        self.escalation = EscalationService(store, self.policies, roster, dispatcher, self.clock,
                                            place_name=lambda w: f"{w.building}")
        self.bridge = AlarmLadderBridge(self.alarms, self.escalation, roster)
        await self.bridge.__aenter__()

    async def _crash(self) -> None:
        assert self.bridge is not None
        await self.bridge.__aexit__(None, None, None)

    async def restart(self) -> None:
        """Crash (whatever the bridge had queued is lost) and start again from the stores."""
        await self._crash()
        await self._build()

    # -- driving -----------------------------------------------------------------------------------------------
    async def settle(self) -> None:
        assert self.bridge is not None
        await self.bridge.settle()

    async def raise_(self, alarm_type: str = "smoke", subject: str = "device:c01-b01-smoke-1", *, severity: Severity = Severity.CRITICAL,
                     life_safety: bool = True, cause: str | None = None, drill: bool = False) -> str:
        assert self.alarms is not None
        sig = Signal(SignalKind.RAISE, alarm_type, subject, self.clock.now_ms(), severity, life_safety, drill, f"{alarm_type} 测试",
                     Place(subject.split(":", 1)[1], None, BUILDING), cause=cause)
        actions = await self.alarms.signal(sig)
        return next(a.alarm.id for a in actions if hasattr(a, "alarm") and a.alarm.key == sig.key)

    async def clear(self, alarm_type: str, subject: str) -> None:
        assert self.alarms is not None
        await self.alarms.signal(Signal(SignalKind.CLEAR, alarm_type, subject, self.clock.now_ms()))

    # -- reading -----------------------------------------------------------------------------------------------
    def log(self, alarm_id: str) -> list[LogEntry]:
        assert self.escalation is not None
        return self.escalation.store.log(alarm_id)

    def pages(self, alarm_id: str, reason: str) -> list[str]:
        """Contacts paged for this alarm with this reason, one entry per notice written to the outbox."""
        return [e.contact or "" for e in self.log(alarm_id) if e.kind == "notify" and e.detail == reason]

    def sent(self) -> list[Message]:
        return self.app.sent


@asynccontextmanager
async def centre(engine: sa.Engine, site: SiteDirectory, *, start_ms: int = THU_0900, rate_limit: int = 6, quiet: bool = True) -> AsyncIterator[Centre]:
    c = Centre(engine, site, VirtualClock(start_ms), rate_limit=rate_limit, quiet=quiet)
    await c._build()
    try:
        yield c
    finally:
        await c._crash()


@dataclass
class CentreApi:
    client: httpx.AsyncClient
    links: OneTapLinks
    users: UserStore  # the one-tap ledger
    duty: dict[str, str]  # the duty officer's session header


@asynccontextmanager
async def centre_api(c: Centre) -> AsyncIterator[CentreApi]:
    """The HTTP API over the centre, wired as the server wires it: moves go to the alarm service, the ladder is the
    centre's escalation service, and its notices carry real one-tap links (with the ladder's round)."""
    assert c.alarms is not None
    assert c.escalation is not None
    signer = TokenSigner(b"0123456789abcdef0123456789abcdef")
    links = OneTapLinks(signer, c.clock, "https://sw.example", ttl_s=3600)
    c.escalation.links = links.link
    users = UserStore(c.engine)
    users.add("duty", None, "duty_officer", "值班员")
    deps = ApiDeps(alarms=c.alarms.store, users=users, signer=signer, clock=c.clock, ingest_stats=dict, sites=c.site,
                   alarm_service=c.alarms, escalation=c.escalation, extras={"one_tap": links})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://api") as client:
        session = signer.sign({"sub": "duty"}, c.clock.now_ms() / 1000, 12 * 3600)
        yield CentreApi(client, links, users, {"Authorization": f"Bearer {session}"})
