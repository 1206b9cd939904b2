"""Between the alarm service and the escalation ladder: which alarm changes start and stop a ladder, and
how the ladder's lifecycle moves reach the alarm.

How this works: `AlarmLadderBridge.on_actions` is an AlarmService listener. An alarm that is new and open
(not raised suppressed or silenced) starts its escalation, with its place resolved through the roster; an
alarm that leaves the open states, or is suppressed or silenced, stops it. The listener only queues these;
the bridge's own task (`alarm-ladder-bridge`) carries them out in order, so deciding and storing an alarm
never waits for its ladder to page people (a storm of 200 alarms is on the console before the notices are
out). The queue is in memory: on entry the bridge reconciles, starting the ladder of every open alarm that
has none, so an alarm stored just before a crash still gets its ladder after the restart. The lifecycle
moves the ladder asks for (raised → notified, acknowledged ...) go through a second queue and task
(`alarm-ladder-moves`) for the same reason; one lost in a crash is still in the ladder's step log. `apply_move` is the ladder's
`on_advance`: it asks the alarm service for the move, and a refused move (the alarm is already further
along, or a person already closed it) is only logged. Acts of people on the console reach the ladder
through the console's own routes (backend/api/console_alarms.py), not through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from alerting.ladder.engine import AdvanceAlarm, AlarmFacts
from alerting.lifecycle import AlarmState
from alerting.model import Action, Alarm, Persist
from backend.alarms.service import AlarmService, MoveRefused, NoSuchAlarm
from backend.escalation.service import EscalationService
from backend.sites.roster import SiteRoster

__all__ = ["AlarmLadderBridge"]

log = logging.getLogger(__name__)

_HELD = frozenset({AlarmState.SUPPRESSED, AlarmState.SILENCED})


class AlarmLadderBridge:
    """Made before the escalation runtime (which needs `apply_move`), attached to its service after."""

    def __init__(self, alarms: AlarmService) -> None:
        self.alarms = alarms
        self._ladder: tuple[EscalationService, SiteRoster] | None = None
        self._queue: asyncio.Queue[tuple[str, Alarm]] = asyncio.Queue()
        self._moves: asyncio.Queue[AdvanceAlarm] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = 0
        self.stopped = 0
        self.failures = 0

    def attach(self, ladder: EscalationService, roster: SiteRoster) -> None:
        self._ladder = (ladder, roster)
        self.alarms.add_listener(self.on_actions)

    @property
    def ladder(self) -> EscalationService:
        assert self._ladder is not None, "attach the escalation service first"
        return self._ladder[0]

    async def __aenter__(self) -> Self:
        assert self._ladder is not None, "attach the escalation service first"
        await self._reconcile()
        self._tasks = [asyncio.create_task(self._work(), name="alarm-ladder-bridge"),
                       asyncio.create_task(self._apply_moves(), name="alarm-ladder-moves")]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reconcile(self) -> None:
        for alarm in await asyncio.to_thread(self.alarms.store.open_alarms):
            if alarm.state not in _HELD and await self.ladder.get(alarm.id) is None:
                await self._start(alarm)

    async def on_actions(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if not isinstance(action, Persist):
                continue
            alarm = action.alarm
            raised = any(entry.from_state is None for entry in action.audit)
            if raised and alarm.is_open and alarm.state not in _HELD:
                self._queue.put_nowait(("start", alarm))
            elif action.audit and (not alarm.is_open or alarm.state in _HELD):
                self._queue.put_nowait(("stop", alarm))

    async def _work(self) -> None:
        while True:
            op, alarm = await self._queue.get()
            try:
                await (self._start(alarm) if op == "start" else self._stop(alarm))
            except Exception:  # one alarm's ladder failing must not stop the others'
                self.failures += 1
                log.exception("could not %s the ladder of alarm %s", op, alarm.id)

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._moves.qsize()

    async def _start(self, alarm: Alarm) -> None:
        place = alarm.place
        assert self._ladder is not None
        where = self._ladder[1].where(device=place.device, building=place.building, household=place.household, unit=place.unit)
        facts = AlarmFacts(alarm.id, alarm.alarm_type, alarm.severity, alarm.raised_at_ms, where, alarm.title, alarm.drill)
        await self.ladder.start(facts)
        self.started += 1

    async def _stop(self, alarm: Alarm) -> None:
        if await self.ladder.get(alarm.id) is None:
            return
        try:
            await self.ladder.stop(alarm.id, alarm.state.value)
        except Exception:  # already stopped, or stopped by another process: nothing left to do
            log.debug("ladder of %s was already stopped", alarm.id, exc_info=True)
            return
        self.stopped += 1

    async def apply_move(self, advance: AdvanceAlarm) -> None:
        """The ladder's `on_advance`: queued, so paging the next alarm never waits for this one's bookkeeping."""
        self._moves.put_nowait(advance)

    async def _apply_moves(self) -> None:
        while True:
            advance = await self._moves.get()
            try:
                await self.alarms.move(advance.alarm_id, advance.move, advance.actor)
            except (MoveRefused, NoSuchAlarm) as exc:
                log.info("ladder move %s on %s not applied: %s", advance.move.value, advance.alarm_id, exc)
            except Exception:
                self.failures += 1
                log.exception("could not apply ladder move %s on %s", advance.move.value, advance.alarm_id)
