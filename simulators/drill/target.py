"""What a drill runs against: the embedded system in this process, or a running system by its URLs.

How this works: a `DrillTarget` gives the runner four things: a broker to publish simulated devices to, the
drill clock, the alarm store's view of the drill (alarms, each alarm's audit log, the ladder's timeline when
there is one), and a way for simulated responders to act on an alarm. The alarm store is the source of
truth: the report reads everything it says about the system from here.

- `EmbeddedTarget` starts the whole system (embedded broker + backend) in a temporary data folder, on the
  drill clock, so compressed time is compressed everywhere: devices, ingest stamps, alarm rules, ladder
  deadlines and responders. Responders act through the system's alarm service (`move()`) and, when the
  backend runs an escalation service, through its `respond()` too, as the responder API does.
- `RemoteTarget` talks to a running system: MQTT URL for the devices, API URL and a login for the alarms.
  It runs at speed 1 (a drill cannot change a production clock) and acts through the HTTP API's alarm moves
  when the API offers them; otherwise it waits for real people on the console.

Errors:

    DrillTargetError
     └── TargetUnavailable   the system could not be started or reached
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlparse

import httpx

from alerting.model import AuditEntry
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord, AlarmStore
from simulators.drill.clock import DrillClock

__all__ = ["DrillTarget", "DrillTargetError", "EmbeddedTarget", "RemoteTarget", "TargetUnavailable"]

log = logging.getLogger(__name__)


class DrillTargetError(RuntimeError):
    pass


class TargetUnavailable(DrillTargetError):
    def __init__(self, what: str, why: str) -> None:
        self.what, self.why = what, why
        super().__init__(f"{what}: {why}")


@dataclass(frozen=True, slots=True)
class ActResult:
    ok: bool
    via: str  # "alarm service", "escalation", "api"
    refused: str = ""


class DrillTarget(Protocol):
    clock: DrillClock
    broker_host: str
    broker_port: int
    broker_username: str | None
    broker_password: str | None
    description: str
    can_act: bool

    async def alarms(self, since_ms: int) -> list[AlarmRecord]:
        """Alarms raised at or after since_ms (drill and real: the report separates them)."""
        ...

    async def audit(self, alarm_id: str) -> list[AuditEntry]: ...

    async def ladder(self, alarm_id: str) -> dict[str, Any] | None:
        """The escalation timeline of an alarm, when the system runs the ladder."""
        ...

    async def act(self, alarm_id: str, move: str, actor: str, note: str) -> ActResult: ...


# ---------------------------------------------------------------- embedded


def _find(obj: object, cls_path: str) -> Any:
    """The first attribute of `obj` that is an instance of the class at `cls_path` (module:Name), if any."""
    module, name = cls_path.split(":")
    try:
        cls = getattr(__import__(module, fromlist=[name]), name)
    except (ImportError, AttributeError):
        return None
    for value in vars(obj).values():
        if isinstance(value, cls):
            return value
    return None


class EmbeddedTarget:
    """The whole system in this process on the drill clock, in a temporary data folder (kept if given)."""

    can_act = True

    def __init__(self, sites: SiteDirectory, speed: float, *, data_dir: Path | None = None, rules: Any = None) -> None:
        self.sites = sites
        self.clock = DrillClock(speed)
        self.broker_username: str | None = None
        self.broker_password: str | None = None
        self.broker_host, self.broker_port = "", 0
        self._data_dir = data_dir
        self._rules = rules
        self._stack = contextlib.AsyncExitStack()
        self.description = "embedded system (this process)"
        self.store: AlarmStore
        self.alarm_service: Any = None
        self.escalation: Any = None
        self.own_alarm_service = False

    async def __aenter__(self) -> Self:
        from backend.server import Backend
        from backend.settings import load_settings
        from broker.embedded import EmbeddedBroker
        from shouwang.system import System

        try:
            data_dir = self._data_dir or Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="shouwang-drill-")))
            settings = load_settings(storage={"data_dir": data_dir}, api={"port": 0}, simulate={"enabled": False}, broker={"embedded_port": 0})
            if "clock" in inspect.signature(System).parameters:
                system = await self._stack.enter_async_context(System(settings, self.sites, clock=self.clock))  # type: ignore[call-arg,unused-ignore]
                self.broker_host, self.broker_port, backend = system.broker_host, system.broker_port, system.backend
                self.description = "embedded shouwang.system.System on the drill clock"
            else:  # System takes no clock yet: the same parts, composed here, so the backend runs on drill time
                broker = await self._stack.enter_async_context(EmbeddedBroker(settings.broker.embedded_host, 0))
                self.broker_host, self.broker_port = broker.host, broker.port
                backend = await self._stack.enter_async_context(Backend(settings, self.sites, broker.host, broker.port, clock=self.clock))
                self.description = "embedded broker + backend.server.Backend on the drill clock"
            self.alarm_service = _find(backend, "backend.alarms.service:AlarmService")
            store = getattr(self.alarm_service, "store", None) or getattr(backend, "alarms", None)
            if not isinstance(store, AlarmStore):
                store = _find(backend, "backend.alarms.store:AlarmStore")
            if store is None:
                raise TargetUnavailable("embedded system", "the backend has no alarm store to read the drill from")
            self.store = store
            self.escalation = _find(backend, "backend.escalation.service:EscalationService")
            if self.alarm_service is None:
                # The backend does not run the alarm service yet: responders act through one over the same store
                # (its move() reads a stored alarm, applies the lifecycle and writes it back with its audit entry).
                from backend.alarms.service import AlarmService

                self.alarm_service = AlarmService(store, self.sites, self.clock)
                await self.alarm_service.start()
                self.own_alarm_service = True
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def alarms(self, since_ms: int) -> list[AlarmRecord]:
        rows = await asyncio.to_thread(self.store.list, limit=100_000)
        return [r for r in rows if r.raised_at_ms >= since_ms]

    async def audit(self, alarm_id: str) -> list[AuditEntry]:
        return await asyncio.to_thread(self.store.audit, alarm_id)

    async def ladder(self, alarm_id: str) -> dict[str, Any] | None:
        if self.escalation is None:
            return None
        try:
            timeline = await self.escalation.timeline(alarm_id)
        except Exception:  # no escalation for this alarm (not every alarm climbs a ladder)
            return None
        data: dict[str, Any] = timeline.as_json()
        return data

    async def act(self, alarm_id: str, move: str, actor: str, note: str) -> ActResult:
        from backend.alarms.service import AlarmServiceError

        if self.escalation is not None:
            from alerting.ladder import Response

            response = {"acknowledge": "acknowledge", "depart": "en_route", "arrive": "on_scene", "finish": "handled",
                        "verify_close": "closed"}.get(move)
            if response is not None:
                with contextlib.suppress(Exception):  # the ladder may not hold this alarm: fall back to the lifecycle
                    await self.escalation.respond(alarm_id, Response(response), actor, note)
                    return ActResult(True, "escalation")
        try:
            await self.alarm_service.move(alarm_id, move, actor, note=note)
        except AlarmServiceError as exc:
            return ActResult(False, "alarm service", str(getattr(exc, "reason", exc)))
        return ActResult(True, "alarm service")


# ---------------------------------------------------------------- remote


class RemoteTarget:
    """A running system: its broker (mqtt://host:port), its API (http://...) and a login. Speed 1 only."""

    def __init__(self, api_url: str, mqtt_url: str, username: str, password: str, *,
                 broker_username: str | None = None, broker_password: str | None = None) -> None:
        u = urlparse(mqtt_url)
        if u.scheme not in ("mqtt", "tcp") or not u.hostname:
            raise TargetUnavailable(mqtt_url, "the broker URL must look like mqtt://host:1883")
        self.broker_host, self.broker_port = u.hostname, u.port or 1883
        self.broker_username, self.broker_password = broker_username, broker_password
        self.clock = DrillClock(1.0)
        self.api_url = api_url.rstrip("/")
        self._login = (username, password)
        self.description = f"running system at {self.api_url} (broker {mqtt_url})"
        self.can_act = False
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(base_url=self.api_url, timeout=10.0)
        try:
            r = await self._client.post("/api/login", json={"username": self._login[0], "password": self._login[1]})
        except httpx.HTTPError as exc:
            await self._client.aclose()
            raise TargetUnavailable(self.api_url, f"cannot reach the API: {exc}") from exc
        if r.status_code != 200:
            await self._client.aclose()
            raise TargetUnavailable(self.api_url, f"login refused ({r.status_code}): {r.text[:200]}")
        self._client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        spec = (await self._client.get("/api/openapi.json")).json()
        self._move_path = next((p for p in spec.get("paths", {}) if p.startswith("/api/alarms/{") and p.endswith("/moves")), None)
        self.can_act = self._move_path is not None
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "use `async with RemoteTarget(...)`"
        return self._client

    async def alarms(self, since_ms: int) -> list[AlarmRecord]:
        r = await self.client.get("/api/alarms", params={"limit": 1000})
        r.raise_for_status()
        fields = set(AlarmRecord.__slots__)
        out = []
        for a in r.json()["alarms"]:
            row = {k: a.get(k) for k in fields}
            if row["raised_at_ms"] is not None and row["raised_at_ms"] >= since_ms:
                out.append(AlarmRecord(**row))
        return out

    async def audit(self, alarm_id: str) -> list[AuditEntry]:
        from alerting.lifecycle import AlarmState

        r = await self.client.get(f"/api/alarms/{alarm_id}/audit")
        if r.status_code != 200:
            return []
        return [AuditEntry(alarm_id, e["seq"], e["at_ms"], e["actor"], e["move"], AlarmState(e["from_state"]) if e.get("from_state") else None,
                           AlarmState(e["to_state"]), e.get("note", ""), e.get("drill", False)) for e in r.json().get("audit", [])]

    async def ladder(self, alarm_id: str) -> dict[str, Any] | None:
        return None

    async def act(self, alarm_id: str, move: str, actor: str, note: str) -> ActResult:
        if self._move_path is None:
            return ActResult(False, "api", "the API offers no alarm moves")
        r = await self.client.post(self._move_path.replace("{alarm_id}", alarm_id), json={"move": move, "note": f"{actor}: {note}"})
        return ActResult(r.status_code < 300, "api", "" if r.status_code < 300 else r.text[:200])
