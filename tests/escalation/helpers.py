"""A service on SQLite and a virtual clock, with recording channels, for the escalation tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alerting.ladder import AlarmFacts, PolicySet
from alerting.model import Severity
from backend.escalation import EscalationService, EscalationStore, load_policies
from backend.notify import Channel, Dispatcher, Message, RateLimiter, Receipt, ReceiptStore
from backend.notify.mqtt import MqttNoticeChannel
from backend.sites import SiteDirectory
from backend.sites.roster import SiteRoster
from backend.store.db import make_engine, sqlite_url
from backend.stream import CentreStream
from broker.clock import VirtualClock

THU_0900 = 1_767_225_600_000 + 3_600_000  # Thursday 09:00 in Beijing


@dataclass
class RecordingChannel:
    kind: str
    outside: bool = True
    sent: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> str | None:
        self.sent.append(message)
        return f"{self.kind}-{len(self.sent)}"


@dataclass
class Rig:
    clock: VirtualClock
    store: EscalationStore
    receipts: ReceiptStore
    service: EscalationService
    roster: SiteRoster
    console: CentreStream
    published: list[tuple[str, bytes, int]]
    sms: RecordingChannel
    policies: PolicySet


def make_rig(tmp_path: Path, site: SiteDirectory, *, db: str = "esc.db", start_ms: int = THU_0900, rate_limit: int = 100) -> Rig:
    clock = VirtualClock(start_ms)
    engine = make_engine(sqlite_url(tmp_path / db))
    policies = load_policies()
    store = EscalationStore(engine, policies)
    receipts = ReceiptStore(engine)
    roster = SiteRoster(site)
    console = CentreStream()
    published: list[tuple[str, bytes, int]] = []

    async def publish(topic: str, payload: bytes, qos: int) -> None:
        published.append((topic, payload, qos))

    sms = RecordingChannel("sms")
    channels: dict[str, Channel] = {"app": MqttNoticeChannel("app", publish), "sounder": MqttNoticeChannel("sounder", publish), "sms": sms,
                "voice": RecordingChannel("voice")}

    async def record(r: Receipt) -> None:
        receipts.record(r)

    async def no_sleep(_: float) -> None:
        return None

    dispatcher = Dispatcher(channels, console, clock, sleep=no_sleep, limiter=RateLimiter(rate_limit, 60), record=record)
    service = EscalationService(store, policies, roster, dispatcher, clock, links=lambda a, r, c: f"https://sw.example/r/{a}/{r}/{c.id}",
                                place_name=lambda w: f"{w.building}")
    return Rig(clock, store, receipts, service, roster, console, published, sms, policies)


def fire(alarm_id: str = "A1", building: str = "c01-b01", *, drill: bool = False, drill_outside: bool = False, raised_ms: int = THU_0900,
         roster: SiteRoster | None = None, alarm_type: str = "smoke", severity: Severity = Severity.CRITICAL, household: str | None = None) -> AlarmFacts:
    assert roster is not None
    where = roster.where(building=building, household=household)
    return AlarmFacts(alarm_id, alarm_type, severity, raised_ms, where, "烟感报警", drill, drill_outside)
