"""Archiving closed alarms (归档): by hand through the lifecycle's `archive` move, and by the system after a quiet period.

How this works: `due_for_archive(engine, cutoff_ms)` reads, from stored state only, the closed and false alarms
whose row has not changed since `cutoff_ms` and which had no comment or assignment since then either
(backend/alarms/collab.py): a closed alarm people are still talking about is not filed away. `ArchiveWatch`
(started by the composition root, backend/centre.py) runs that check at once when it starts (a restart catches up
with whatever fell due while the centre was down) and then every `every_s` of the injected clock, and moves each
alarm found through the alarm service (`AlarmService.move(..., ARCHIVE, "system")`), the one writer of alarm
state: one move, one audit entry, published on the stream like any other. An alarm someone archived by hand in
the meantime is refused by the lifecycle and skipped. Nothing is kept in memory, so doing it twice finds nothing.

`after_days` 0 turns the automatic archive off (by hand only). Settings: `alarms.archive_after_days`,
`alarms.archive_check_every_s` (backend/settings.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Final, Self

import sqlalchemy as sa

from alerting.lifecycle import SYSTEM_ACTOR, AlarmState, Move
from backend.alarms.schema import alarm_assignments, alarm_comments, alarms
from backend.alarms.service import AlarmService, AlarmServiceError
from backend.alarms.store import StoreError, translated

__all__ = ["ArchiveWatch", "due_for_archive"]

log = logging.getLogger(__name__)
DAY_MS: Final = 86_400_000
BATCH: Final = 500  # alarms archived per round; the next round takes the rest (a first start after months down)


def due_for_archive(engine: sa.Engine, cutoff_ms: int, limit: int = BATCH) -> list[str]:
    """Closed and false alarms with no change, comment or assignment after `cutoff_ms`, oldest first."""
    quiet_comments = ~sa.exists().where(alarm_comments.c.alarm_id == alarms.c.id, alarm_comments.c.at_ms > cutoff_ms)
    quiet_assignments = ~sa.exists().where(alarm_assignments.c.alarm_id == alarms.c.id, alarm_assignments.c.at_ms > cutoff_ms)
    q = (sa.select(alarms.c.id)
         .where(alarms.c.state.in_([AlarmState.CLOSED.value, AlarmState.FALSE_ALARM.value]), alarms.c.updated_ms <= cutoff_ms,
                quiet_comments, quiet_assignments)
         .order_by(alarms.c.updated_ms).limit(limit))
    with translated("could not read the alarm store"), engine.connect() as conn:
        return [r.id for r in conn.execute(q)]


class ArchiveWatch:
    """Archives closed alarms after `after_days` of quiet, checking at start and every `every_s` (the service's clock)."""

    def __init__(self, service: AlarmService, *, after_days: float, every_s: float = 600.0) -> None:
        if every_s <= 0:
            raise ValueError("the archive check needs a positive period")
        self.service = service
        self.after_days = after_days
        self.every_s = every_s
        self.started = asyncio.Event()
        self.checks = 0  # checks finished so far
        self.archived = 0  # alarms this watch archived
        self._checked = asyncio.Condition()
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    @property
    def note(self) -> str:
        return f"自动归档：关闭后 {self.after_days:g} 天无新动态 / archived automatically after {self.after_days:g} quiet days"

    async def __aenter__(self) -> Self:
        if self.after_days <= 0:  # by hand only
            self.started.set()
            return self
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.callback(self._halt)  # runs before the TaskGroup waits for the task
        self._task = tg.create_task(self._run(), name="alarm-archiver")
        await self.started.wait()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    def _halt(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def archive_due(self) -> list[str]:
        """Archive every alarm due now (in rounds of BATCH); the ids archived."""
        done: list[str] = []
        while True:
            cutoff = self.service.clock.now_ms() - round(self.after_days * DAY_MS)
            due = await asyncio.to_thread(due_for_archive, self.service.store.engine, cutoff)
            moved = 0
            for alarm_id in due:
                try:
                    await self.service.move(alarm_id, Move.ARCHIVE, SYSTEM_ACTOR, note=self.note)
                except AlarmServiceError as exc:  # archived by hand meanwhile, or gone: nothing to do
                    log.info("archive: %s skipped: %s", alarm_id, exc)
                    continue
                moved += 1
                done.append(alarm_id)
            if len(due) < BATCH or moved == 0:
                break
        if done:
            self.archived += len(done)
            log.info("archive: %d closed alarms archived after %g quiet days", len(done), self.after_days)
        return done

    async def _run(self) -> None:
        every_ms = round(self.every_s * 1000)
        while True:
            try:
                await self.archive_due()
            except StoreError as exc:
                log.warning("archive: the check failed (%s); trying again in %.0f s", exc, self.every_s)
            self.started.set()
            async with self._checked:
                self.checks += 1
                self._checked.notify_all()
            await self.service.clock.sleep_ms(every_ms)

    async def checked_after(self, count: int) -> int:
        """Wait until more than `count` checks have finished (tests move a virtual clock, then wait for the check)."""
        async with self._checked:
            await self._checked.wait_for(lambda: self.checks > count)
            return self.checks
