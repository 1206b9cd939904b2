"""What the HTTP API needs from the rest of the backend, handed in by backend/server.py.

How this works: `ApiDeps` names every collaborator; only the thin-slice ones are required, so a server that
has not wired the alarm service, the escalation service or the live console yet still serves the board.
What is missing degrades visibly: the alarm service is the only writer of alarm state, so without one (in the
process, or reached through the relay to the rules leader: backend.relay.moves) actions on alarms answer 503
(`Unowned`: no move is written beside the owner), silencing answers 503, the
ladder part of an alarm's detail is empty, and the live feed answers 503 unless `feed` is given or the app's
lifespan runs (then create_app starts one itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from alerting.lifecycle import Move
from alerting.model import Alarm
from backend.alarms.maintenance import MaintenanceWindows
from backend.api.tokens import TokenSigner
from backend.errors import BackendError
from backend.escalation.service import EscalationService
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmStore
from backend.store.timeseries.model import TimeSeriesStore
from backend.store.users import UserStore
from backend.stream import CentreStream
from broker.clock import Clock

__all__ = ["AlarmMoves", "ApiDeps", "NotWired", "Unowned", "maintenance_of"]


class NotWired(BackendError, RuntimeError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is not running on this server; ask the administrator")


class AlarmMoves(Protocol):
    """The part of backend.alarms.AlarmService the console uses."""

    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm: ...

    async def add_window(self, subject: str, until_ms: int, author: str, note: str = "") -> int: ...


class Unowned:
    """The moves of a server that has no alarm service to ask (the thin slice): every move answers NotWired
    (HTTP 503). Nothing writes alarm state beside its one owner."""

    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm:
        raise NotWired("the alarm service (the one writer of alarm state)")

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
    stream: CentreStream | None = None  # the centre's stream of committed changes (backend.stream): the feed reads it
    feed: Any = None  # a running backend.feed.LiveFeed; None: create_app makes one in the app's lifespan
    extras: dict[str, Any] | None = None  # for routers other engineers add (series store, response links...)


def maintenance_of(deps: ApiDeps) -> MaintenanceWindows:
    """The stored maintenance windows of the server's alarm service (backend.alarms.maintenance); NotWired when
    the server runs none in this process (the thin slice, or a cluster backend whose rules run on the leader)."""
    windows = getattr(deps.alarm_service, "maintenance", None)
    if not isinstance(windows, MaintenanceWindows):
        raise NotWired("the alarm service (maintenance windows)")
    return windows
