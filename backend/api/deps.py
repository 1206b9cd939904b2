"""What the HTTP API needs from the rest of the backend, handed in by backend/server.py.

How this works: `ApiDeps` names every collaborator; only the thin-slice ones are required, so a server that
has not wired the alarm service, the escalation service or the live console yet still serves the board.
What is missing degrades visibly: actions on alarms fall back to `StoreMoves` (lifecycle moves written
straight to the store, only safe while no AlarmService runs in the process), silencing answers 503, the
ladder part of an alarm's detail is empty, and the live feed answers 503 unless `feed` is given or the app's
lifespan runs (then create_app starts one itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from alerting.book import transition
from alerting.lifecycle import LifecycleError, Move
from alerting.model import Alarm, Persist
from backend.alarms.maintenance import MaintenanceWindows
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.api.tokens import TokenSigner
from backend.clock import Clock
from backend.errors import BackendError
from backend.escalation.service import EscalationService
from backend.notify.console import LiveConsole
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmStore
from backend.store.timeseries.model import TimeSeriesStore
from backend.store.users import UserStore

__all__ = ["AlarmMoves", "ApiDeps", "NotWired", "StoreMoves", "maintenance_of"]


class NotWired(BackendError, RuntimeError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is not running on this server; ask the administrator")


class AlarmMoves(Protocol):
    """The part of backend.alarms.AlarmService the console uses."""

    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm: ...

    async def add_window(self, subject: str, until_ms: int, author: str, note: str = "") -> int: ...


class StoreMoves:
    """Lifecycle moves written straight to the store, for a server without an AlarmService (the thin slice)."""

    def __init__(self, store: AlarmStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = asyncio.Lock()

    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm:
        m = Move(move)
        async with self._lock:
            stored = await asyncio.to_thread(self.store.get, alarm_id)
            if stored is None:
                raise NoSuchAlarm(alarm_id)
            try:
                new, entry = transition(stored, m, actor, self.clock.now_ms(), note)
            except LifecycleError as exc:
                raise MoveRefused(alarm_id, m.value, str(exc)) from exc
            await asyncio.to_thread(self.store.apply, [Persist(new, (entry,))])
        return new

    async def add_window(self, subject: str, until_ms: int, author: str, note: str = "") -> int:
        raise NotWired("the alarm service (maintenance windows)")


@dataclass(frozen=True)
class ApiDeps:
    alarms: AlarmStore
    users: UserStore
    signer: TokenSigner
    clock: Clock
    ingest_stats: Callable[[], dict[str, Any]]
    timeseries: TimeSeriesStore | None = None  # the series API (backend.api.series) and the readings chart
    sites: SiteDirectory | None = None  # the map, territory by building, places and vulnerable notes
    alarm_service: AlarmMoves | None = None  # backend.alarms.AlarmService: every move on an alarm goes through it
    escalation: EscalationService | None = None  # the ladder: rungs, deadlines, responses, dispatch
    console: LiveConsole | None = None  # the in-process console channel the ladder publishes on (same instance!)
    feed: Any = None  # a running backend.api.feed.LiveFeed; None: create_app makes one in the app's lifespan
    extras: dict[str, Any] | None = None  # for routers other engineers add (series store, response links...)


def maintenance_of(deps: ApiDeps) -> MaintenanceWindows:
    """The stored maintenance windows of the server's alarm service (backend.alarms.maintenance); NotWired when
    the server runs none in this process (the thin slice, or a cluster backend whose rules run on the leader)."""
    windows = getattr(deps.alarm_service, "maintenance", None)
    if not isinstance(windows, MaintenanceWindows):
        raise NotWired("the alarm service (maintenance windows)")
    return windows
