"""The centre's middle, wired in one place: the one composition root of the alarm side.

How this works: `AlarmCore` takes an alarm service that is built but not yet entered (the single process builds
it on its own store; the cluster's rules leader on the term's fenced store, one decision per queue round) and the
running escalation runtime, and wires, in order:

1. the alarm service, the only writer of alarm state, entered: its open alarms and timers re-derived from
   stored state; it publishes every commit on the centre's stream (backend.stream);
2. the ladder's bridge (backend.escalation.bridge), subscribed to that stream: it starts, re-opens and stops
   ladders from committed changes and re-derives what a restart or a takeover left undone;
3. the archiver (归档, backend.alarms.archive): closed alarms archived through the alarm service after
   `alarms.archive_after_days` of quiet;
4. patrol (巡检, backend.patrol), when enabled and there are gateways: its missed-patrol alarms go through
   the alarm service like any other;
5. the 119 hand-off (转警 119, backend.forward), when `forward.enabled`: subscribed to the same stream, it forwards
   a fire the ladder verified (or treated as real) to the fire brigade's receiving system, once per alarm.

Leaving stops them in reverse. Both `backend.server.Backend` (the single process) and
`backend.relay.leader.RulesSeat` (each term of the cluster's rules leader) enter an `AlarmCore`; neither wires
these parts itself. `fence`, for the leader, is set as the store's in-transaction hook (backend.alarms.store
IN_TRANSACTION) while the service's and the patrol's tasks start, so every write they make checks the term still
holds the rules lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Self

import sqlalchemy as sa

from backend.alarms.archive import ArchiveWatch
from backend.alarms.service import AlarmService
from backend.alarms.store import IN_TRANSACTION
from backend.escalation.bridge import AlarmLadderBridge
from backend.escalation.runtime import EscalationRuntime
from backend.forward.forwarder import Forwarder
from backend.notify.failures import NoticeFailures
from backend.patrol.alarms import PatrolAlarms
from backend.patrol.book import PatrolSettings
from backend.patrol.scheduler import PatrolScheduler
from backend.settings import Settings
from backend.sites.model import SiteDirectory

__all__ = ["AlarmCore"]

Publish = Callable[[str, bytes, int], Awaitable[None]]


class AlarmCore:
    def __init__(self, service: AlarmService, escalation: EscalationRuntime, settings: Settings, sites: SiteDirectory, *,
                 publish: Publish | None, broker: tuple[str, int], fence: Callable[[sa.Connection], None] | None = None) -> None:
        """`publish` sends patrol commands (None: no patrol in this core); `broker` names the broker behind it."""
        self.service = service
        self.escalation = escalation
        self.settings = settings
        self.sites = sites
        self.publish = publish
        self.broker = broker
        self.fence = fence
        self.bridge = AlarmLadderBridge(service, escalation.service, escalation.roster)
        self.patrol: PatrolScheduler | None = None
        self.forwarder: Forwarder | None = None
        self.archiver: ArchiveWatch | None = None
        self._stack = contextlib.AsyncExitStack()

    @contextlib.contextmanager
    def _fenced(self) -> Iterator[None]:
        if self.fence is None:
            yield
            return
        token = IN_TRANSACTION.set(self.fence)  # tasks started now inherit it: their writes are fenced
        try:
            yield
        finally:
            IN_TRANSACTION.reset(token)

    async def __aenter__(self) -> Self:
        try:
            with self._fenced():
                await self._stack.enter_async_context(self.service)
            await self._stack.enter_async_context(self.bridge)
            # issue 17: closed alarms archived after a quiet period (backend/alarms/archive.py: from stored state and the clock, fenced like
            # every alarm write; a restart catches up at once)
            with self._fenced():
                self.archiver = await self._stack.enter_async_context(ArchiveWatch(
                    self.service, after_days=self.settings.alarms.archive_after_days, every_s=self.settings.alarms.archive_check_every_s))
            # issue 18: a person no channel of a notice reached is an alarm of its own (notice_failed, backend.notify.failures)
            await self._stack.enter_async_context(NoticeFailures(self.service, self.escalation.receipts, self.service.stream))
            p = self.settings.patrol
            if p.enabled and self.sites.gateways and self.publish is not None:
                host, port = self.broker
                scheduler = PatrolScheduler(self.sites.gateways, host, port, PatrolAlarms(self.service, self.sites),
                                            settings=PatrolSettings.of(p), clock=self.service.clock, publish=self.publish)
                with self._fenced():
                    self.patrol = await self._stack.enter_async_context(scheduler)
            if self.settings.forward.enabled:  # issue 17: 转警 119 (its own tables; one round per claim, so no fence needed)
                self.forwarder = await self._stack.enter_async_context(Forwarder(
                    self.settings.forward, self.service.store.engine, self.service.store, sites=self.sites, stream=self.service.stream,
                    clock=self.service.clock, time_zone=self.settings.site.time_zone, worker_id=self.escalation.worker_id))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
