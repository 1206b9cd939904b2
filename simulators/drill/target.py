"""What a drill runs against: the embedded system in this process, or a running system by its URLs.

How this works: a `DrillTarget` gives the runner four things: a broker to publish simulated devices to, the
drill clock, the alarm store's view of the drill (alarms, each alarm's audit log, the ladder's timeline when
there is one), and a way for simulated responders to act on an alarm. The alarm store is the source of
truth: the report reads everything it says about the system from here.

- `EmbeddedTarget` starts the whole system (embedded broker + backend) in a temporary data folder, on the
  drill clock (a broker.clock.ScaledClock at the drill's speed), so compressed time is compressed everywhere:
  devices, ingest stamps, alarm rules, ladder deadlines and responders. Whoever builds the target may hand it
  a `SystemFactory` (settings, sites, clock → an async context manager of an `EmbeddedSystem`); by default it
  composes the embedded broker and backend.server.Backend itself (simulators/ never imports shouwang/).
  Responders act through the system's alarm service (`move()`) and, when the backend runs an escalation
  service, through its `respond()` too, as the responder API does.
- `RemoteTarget` talks to a running system: MQTT URL (and the broker login the system's own simulator uses)
  for the devices, API URL and a console login for the alarms. It runs at speed 1 (a drill cannot change a
  production clock). Simulated responders act through the console API as the duty officer records answers
  phoned in: 我已收到 on behalf of the responder (`POST /api/alarms/{id}/acknowledge`, needs
  acknowledge_for_others) and 复核关闭 (`POST /api/alarms/{id}/close`, needs close). A responder's 出发 / 到场 /
  处置完成 reach a running system only through that person's own one-tap link (single-use, bound to them), so
  `refusal(moves)` says, before the drill starts, why a scenario needing them cannot run here and what to do.
  Entering it checks the API login, what the login may do and the broker login, each failure one line.

Errors:

    DrillTargetError
     └── TargetUnavailable   the system could not be started or reached
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self
from urllib.parse import unquote, urlparse

import aiomqtt
import httpx

from alerting.model import AuditEntry
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord, AlarmStore
from broker.clock import ScaledClock

if TYPE_CHECKING:
    from backend.alarms.service import AlarmService
    from backend.escalation.service import EscalationService
    from backend.server import Backend
    from backend.settings import Settings

__all__ = ["DrillTarget", "DrillTargetError", "EmbeddedSystem", "EmbeddedTarget", "RemoteTarget", "SystemFactory", "TargetUnavailable", "broker_and_backend"]

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
    clock: ScaledClock
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


class EmbeddedSystem(Protocol):
    """What a drill needs of a system in this process: where its broker listens, and its backend (read for the
    alarm service, the alarm store and the escalation service)."""

    @property
    def broker_host(self) -> str: ...

    @property
    def broker_port(self) -> int: ...

    @property
    def backend(self) -> Backend: ...


SystemFactory = Callable[["Settings", SiteDirectory, ScaledClock], AbstractAsyncContextManager[EmbeddedSystem]]


@dataclass(frozen=True, slots=True)
class _Composed:
    broker_host: str
    broker_port: int
    backend: Backend


@contextlib.asynccontextmanager
async def broker_and_backend(settings: Settings, sites: SiteDirectory, clock: ScaledClock) -> AsyncIterator[EmbeddedSystem]:
    """The default embedded system: the embedded broker and backend.server.Backend, both on the drill clock."""
    from backend.server import Backend
    from broker.embedded import EmbeddedBroker

    async with EmbeddedBroker(settings.broker.embedded_host, 0) as broker, Backend(settings, sites, broker.host, broker.port, clock=clock) as backend:
        yield _Composed(broker.host, broker.port, backend)


class EmbeddedTarget:
    """The whole system in this process on the drill clock, in a temporary data folder (kept if given)."""

    can_act = True

    def __init__(self, sites: SiteDirectory, speed: float, *, data_dir: Path | None = None, rules: Any = None,
                 system: SystemFactory | None = None) -> None:
        self.sites = sites
        self.clock = ScaledClock(speed)
        self._system = system
        self.broker_username: str | None = None
        self.broker_password: str | None = None
        self.broker_host, self.broker_port = "", 0
        self._data_dir = data_dir
        self._rules = rules
        self._stack = contextlib.AsyncExitStack()
        self.description = "embedded system (this process)"
        self.store: AlarmStore
        self.alarm_service: AlarmService
        self.escalation: EscalationService | None = None
        self._bridge: Any = None
        self._backend: Any = None

    async def __aenter__(self) -> Self:
        from backend.settings import load_settings

        try:
            data_dir = self._data_dir or Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="shouwang-drill-")))
            settings = load_settings(storage={"data_dir": data_dir}, api={"port": 0}, simulate={"enabled": False}, broker={"embedded_port": 0})
            factory = self._system or broker_and_backend
            system = await self._stack.enter_async_context(factory(settings, self.sites, self.clock))
            self.broker_host, self.broker_port, backend = system.broker_host, system.broker_port, system.backend
            self.description = ("embedded broker + backend.server.Backend on the drill clock" if self._system is None
                                else "embedded system on the drill clock")
            # The single process's parts, by name: its alarm service (the one writer of alarm state) and its ladder.
            self.alarm_service = backend.alarm_service
            self._backend = backend
            self.store = backend.alarm_service.store
            self.escalation = backend.escalation.service
            self._bridge = getattr(backend, "bridge", None)  # its settle(): a ladder the press started is there before a call-back
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def alarms(self, since_ms: int) -> list[AlarmRecord]:
        rows = await asyncio.to_thread(self.store.list, limit=100_000)
        return [r for r in rows if r.raised_at_ms >= since_ms]

    async def quiet(self) -> bool:
        """Nothing the backend took in still waits for the rules or the store (its ingest lanes are empty)."""
        ingest = getattr(self._backend, "ingest", None)
        if ingest is None:
            return True
        stats = ingest.stats()
        return not stats.get("backlog") and not stats.get("uplinks_waiting")

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
        from alerting.lifecycle import FIELD_ORDER, TRANSITIONS, AlarmState, Move, field_rank, field_state_of
        from backend.alarms.service import AlarmServiceError

        # The alarm service is the one writer of alarm state; the ladder observes each committed move (its bridge). A
        # responder's answer the alarm has already reached or passed (another responder got there first) is the
        # ladder's alone, as a one-tap answer is (backend/api/responses.py); a step the responder skipped is walked
        # the legal way, as the console's close does (acknowledge first; finish before verify and close).
        if move.startswith("callback:"):
            return await self._callback(alarm_id, move.split(":", 1)[1], actor, note)
        reached = field_state_of(move)
        stored = await asyncio.to_thread(self.store.get, alarm_id)
        state = AlarmState(stored.state) if stored is not None else None
        if reached is not None and state in FIELD_ORDER and field_rank(state) >= field_rank(reached) and self.escalation is not None \
                and await self.escalation.get(alarm_id) is not None:
            await self.escalation.observe(alarm_id, reached, actor)
            return ActResult(True, "escalation")
        steps = [Move(move)]
        if state is not None and (state, steps[0]) not in TRANSITIONS:
            if steps[0] is Move.VERIFY_CLOSE and ((state, Move.FINISH) in TRANSITIONS or state in (AlarmState.RAISED, AlarmState.NOTIFIED)):
                steps = [Move.FINISH, *steps]
            if (state, steps[0]) not in TRANSITIONS and (state, Move.ACKNOWLEDGE) in TRANSITIONS and steps[0] in (Move.DEPART, Move.ARRIVE, Move.FINISH):
                steps = [Move.ACKNOWLEDGE, *steps]
        try:
            for step in steps:
                await self.alarm_service.move(alarm_id, step, actor, note=note)
        except AlarmServiceError as exc:
            return ActResult(False, "alarm service", str(getattr(exc, "reason", exc)))
        return ActResult(True, "alarm service")

    async def _callback(self, alarm_id: str, outcome: str, actor: str, note: str) -> ActResult:
        """The SOS call-back's outcome, through the desk the console uses (backend.callbacks): the ladder records it."""
        from alerting.ladder import CallbackOutcome
        from backend.callbacks import CallbackDesk, CallbackDeskError

        if self.escalation is None:
            return ActResult(False, "escalation", "no escalation service: nobody to record the call-back")

        class _Everywhere:
            def covers(self, building_id: str | None, grid_id: str | None = None, community_id: str | None = None) -> bool:
                return True

        if self._bridge is not None:  # the press's ladder (and with it the call-back) is started by the bridge: let it finish
            await self._bridge.settle()
        desk = CallbackDesk(self.escalation, self.alarm_service, self.store, self.sites)
        try:
            await desk.record(alarm_id, CallbackOutcome(outcome), actor, _Everywhere(), note)
        except CallbackDeskError as exc:
            return ActResult(False, "escalation", exc.zh)
        return ActResult(True, "escalation")


# ---------------------------------------------------------------- remote


# What simulated responders ask for, and how a running system's console API can make it (None: it cannot).
REMOTE_MOVES: Final = {"acknowledge": "acknowledge", "verify_close": "close", "callback": "callback"}
_MOVE_NAMES: Final = {"acknowledge": "我已收到/acknowledge", "depart": "出发/depart", "arrive": "到场/on scene", "finish": "处置完成/handled",
                      "verify_close": "复核关闭/verify and close", "callback": "回访/SOS call-back"}
_CAPABILITY: Final = {"acknowledge": "acknowledge_for_others", "verify_close": "close", "callback": "acknowledge"}


class RemoteTarget:
    """A running system: its broker (mqtt://[user:password@]host:port), its API (http://...) and a login. Speed 1 only."""

    only_touched_gateways = True  # a running system's own gateways keep their links: the drill speaks only for those it uses

    def __init__(self, api_url: str, mqtt_url: str, username: str, password: str, *,
                 broker_username: str | None = None, broker_password: str | None = None, sites: SiteDirectory | None = None) -> None:
        u = urlparse(mqtt_url)
        if u.scheme not in ("mqtt", "tcp") or not u.hostname:
            raise TargetUnavailable(mqtt_url, "the broker URL must look like mqtt://host:1883")
        self.broker_host, self.broker_port = u.hostname, u.port or 1883
        self.broker_username = unquote(u.username) if u.username else broker_username
        self.broker_password = unquote(u.password) if u.password else broker_password
        self.mqtt_url = f"mqtt://{self.broker_host}:{self.broker_port}"  # never the password in what is printed
        self.clock = ScaledClock(1.0)
        self.api_url = api_url.rstrip("/")
        self._login = (username, password)
        self.sites = sites
        self.description = f"running system at {self.api_url} (broker {self.mqtt_url})"
        self.can_act = False
        self.moves: frozenset[str] = frozenset()
        self.role = ""
        self._missing: dict[str, str] = {}
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(base_url=self.api_url, timeout=10.0)
        try:
            await self._check_api(self._client)
            await self._check_broker()
        except BaseException:
            await self._client.aclose()
            raise
        return self

    async def _check_api(self, client: httpx.AsyncClient) -> None:
        try:
            r = await client.post("/api/login", json={"username": self._login[0], "password": self._login[1]})
        except httpx.HTTPError as exc:
            raise TargetUnavailable(self.api_url, f"cannot reach the API ({exc}): is the system running there (`shouwang run` prints its URL)?") from exc
        if r.status_code != 200:
            raise TargetUnavailable(self.api_url, f"the login {self._login[0]!r} was refused ({r.status_code}): give a console login with "
                                                  "--user and --password (or $SHOUWANG_DRILL_PASSWORD)")
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        me = await client.get("/api/me")
        caps = set(me.json().get("capabilities", [])) if me.status_code == 200 else set()
        self.role = me.json().get("role", "") if me.status_code == 200 else ""
        spec = await client.get("/api/openapi.json")
        paths = set(spec.json().get("paths", {})) if spec.status_code == 200 else set()
        moves = set()
        for move, route in REMOTE_MOVES.items():
            if f"/api/alarms/{{alarm_id}}/{route}" not in paths:
                self._missing[move] = f"the API has no POST /api/alarms/{{alarm_id}}/{route}"
            elif _CAPABILITY[move] not in caps:
                self._missing[move] = (f"the login {self._login[0]!r} (role {self.role or 'unknown'}) lacks {_CAPABILITY[move]}: "
                                       "log in as a duty officer or admin (--user)")
            else:
                moves.add(move)
        self.moves = frozenset(moves)
        self.can_act = bool(moves)

    async def _check_broker(self) -> None:
        try:
            async with asyncio.timeout(10.0), aiomqtt.Client(self.broker_host, self.broker_port, username=self.broker_username,
                                                              password=self.broker_password, identifier=f"drill-check-{id(self):x}"):
                pass
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            who = f"the login {self.broker_username!r}" if self.broker_username else "no login"
            raise TargetUnavailable(self.mqtt_url, f"the broker did not accept the drill's simulated gateways with {who} ({exc}): give the "
                                                   "running system's broker login, --mqtt mqtt://USER:PASSWORD@host:port or --broker-access "
                                                   "DATA_DIR/broker-access.json (the file `shouwang run` names)") from exc

    def refusal(self, needed: set[str]) -> str | None:
        """Why simulated responders needing `needed` moves cannot act on this system, in one line; None if they can."""
        lacking = sorted(needed - self.moves, key=list(_MOVE_NAMES).index)
        if not lacking:
            return None
        field_moves = [m for m in lacking if m not in REMOTE_MOVES]
        if field_moves:
            return (f"this scenario's simulated responders make {', '.join(_MOVE_NAMES[m] for m in field_moves)}, which a running system records "
                    "only from each responder's own one-tap link (single-use, bound to that person), never through the console API: run it "
                    "--embedded (the default), or with --real-people and have people answer on their phones")
        return f"the simulated responders cannot {', '.join(_MOVE_NAMES[m] for m in lacking)}: {'; '.join(self._missing[m] for m in lacking)}"

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
        """The alarm's lifecycle entries, from the console's alarm detail (its timeline's `lifecycle` rows)."""
        from alerting.lifecycle import AlarmState

        r = await self.client.get(f"/api/alarms/{alarm_id}")
        if r.status_code != 200:
            return []
        drill = bool(r.json().get("alarm", {}).get("drill", False))
        rows = [e for e in r.json().get("timeline", []) if e.get("source") == "lifecycle"]
        return [AuditEntry(alarm_id, n, e["at_ms"], e["actor"], e["what"], AlarmState(e["from_state"]) if e.get("from_state") else None,
                           AlarmState(e["to_state"]), e.get("note") or "", drill) for n, e in enumerate(rows, 1)]

    async def ladder(self, alarm_id: str) -> dict[str, Any] | None:
        r = await self.client.get(f"/api/alarms/{alarm_id}")
        ladder = r.json().get("ladder") if r.status_code == 200 else None
        return ladder if isinstance(ladder, dict) else None

    async def act(self, alarm_id: str, move: str, actor: str, note: str) -> ActResult:
        if move.startswith("callback:") and "callback" in self.moves:
            r = await self.client.post(f"/api/alarms/{alarm_id}/callback", json={"outcome": move.split(":", 1)[1], "note": f"{actor}: {note}"[:500]})
            return ActResult(r.status_code < 300, "api", "" if r.status_code < 300 else f"{r.status_code} {r.text[:200]}")
        if move not in self.moves:
            return ActResult(False, "api", self._missing.get(move, f"a running system's API cannot record {_MOVE_NAMES.get(move, move)}"))
        if move == "acknowledge":
            known = self.sites is None or actor in self.sites.responders or actor.startswith(("family:", "neighbour:"))
            body: dict[str, Any] = {"note": note[:500]} | ({"on_behalf_of": actor} if known else {})
            r = await self.client.post(f"/api/alarms/{alarm_id}/acknowledge", json=body)
        else:
            r = await self.client.post(f"/api/alarms/{alarm_id}/close", json={"outcome": "real", "note": f"{actor}: {note}"[:500]})
        return ActResult(r.status_code < 300, "api", "" if r.status_code < 300 else f"{r.status_code} {r.text[:200]}")
