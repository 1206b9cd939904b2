"""Between the alarm service and the escalation ladder: the ladder follows the alarm's committed changes.

How this works: the alarm service is the only writer of alarm state; `AlarmLadderBridge.on_actions` is its
listener and reads each committed `Persist` (the alarm as it now is and the audit entries just written):

- an entry that makes the alarm live and unacknowledged (its first raise, or a move back to `raised`: a
  maintenance window ended, a suppressed effect was released, the device alarmed again after its clear)
  starts its ladder, or opens the ladder's next round, keyed by that entry's `seq`, so one entry pages
  once (alerting.ladder.reopen);
- a `severity_raised` entry on a live alarm re-enters the ladder at the new severity's entry rungs;
- a field move made by a person (acknowledge, depart, arrive, finish, verify and close) is *observed* by the
  ladder at once, before the service's `move()` returns: the ladder learns of the move from the committed
  result and sends no move back (no refused duplicates); an answer the ladder itself passed on comes back
  here as a no-op;
- an alarm that leaves the open states, or is suppressed or silenced, stops its ladder.

Starts, rounds, severity rises and stops are queued, and the bridge's own task (`alarm-ladder-bridge`) carries
them out, so storing an alarm never waits for its ladder to page people. The queue is a priority queue:
real life-safety alarms first, then other real alarms, then drills (first come, first served within a class,
so one alarm's jobs keep their order): a smoke alarm is paged before a backlog of device-lost ladders. The
queue is in memory: on entry the bridge reconciles from stored state, life safety first: an open, live alarm
with no ladder gets one; a `raised` alarm whose ladder is stopped or from an answered round gets its next
round if its audit shows a newer opening entry; a ladder below the alarm's severity is raised.

The lifecycle moves the ladder asks for (raised → notified; a responder's answer given by one-tap link) go
through a second queue and task (`alarm-ladder-moves`); a move the alarm has already taken or passed is
dropped without asking (the alarm service's book says so), and a refusal is only logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from alerting.ladder.engine import AdvanceAlarm, AlarmFacts, field_state_of
from alerting.lifecycle import FIELD_ORDER, SYSTEM_ACTOR, TRANSITIONS, AlarmState
from alerting.model import Action, Alarm, AuditEntry, Persist
from backend.alarms.service import AlarmService, AlarmServiceError, MoveRefused, NoSuchAlarm
from backend.escalation.service import EscalationService
from backend.escalation.store import UnknownEscalation
from backend.sites.roster import SiteRoster

__all__ = ["AlarmLadderBridge", "ladder_rank"]

log = logging.getLogger(__name__)

_HELD = frozenset({AlarmState.SUPPRESSED, AlarmState.SILENCED})
Op = Literal["start", "reopen", "severity", "stop"]


def ladder_rank(alarm: Alarm) -> int:
    """Queue class of an alarm's ladder jobs: 0 real life safety, 1 other real, 2 drill life safety, 3 other drill."""
    return (2 if alarm.drill else 0) + (0 if alarm.life_safety else 1)


@dataclass(frozen=True, order=True, slots=True)
class _Job:
    rank: int
    n: int  # first come, first served within a class
    op: Op = field(compare=False)
    alarm: Alarm = field(compare=False)
    seq: int = field(compare=False, default=0)  # the audit entry that opened the round
    why: str = field(compare=False, default="")


def _live(alarm: Alarm) -> bool:
    return alarm.is_open and alarm.state not in _HELD


def _opening(audit: Sequence[AuditEntry]) -> AuditEntry | None:
    """The last entry that made the alarm raised: its first raise or a move back to raised."""
    return next((e for e in reversed(audit) if e.to_state is AlarmState.RAISED and (e.from_state is None or e.is_transition)), None)


class AlarmLadderBridge:
    """Made before the escalation runtime (which needs `apply_move`), attached to its service after."""

    def __init__(self, alarms: AlarmService) -> None:
        self.alarms = alarms
        self._ladder: tuple[EscalationService, SiteRoster] | None = None
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._numbers = itertools.count()
        self._moves: asyncio.Queue[AdvanceAlarm] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = 0
        self.reopened = 0
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

    # -- re-derived from stored state ----------------------------------------------------------------------
    async def _reconcile(self) -> None:
        alarms = sorted(await asyncio.to_thread(self.alarms.store.open_alarms), key=lambda a: (ladder_rank(a), a.raised_at_ms))
        for alarm in alarms:
            if not _live(alarm):
                continue
            try:
                await self._reconcile_one(alarm)
            except Exception:  # one alarm's ladder failing must not stop the others'
                self.failures += 1
                log.exception("could not reconcile the ladder of alarm %s", alarm.id)

    async def _reconcile_one(self, alarm: Alarm) -> None:
        state = await self.ladder.get(alarm.id)
        if state is None:
            opening = _opening(await asyncio.to_thread(self.alarms.store.audit, alarm.id))
            await self._start(alarm, opening.seq if opening is not None else 0)
        elif alarm.state is AlarmState.RAISED and (state.stopped is not None or state.reached):
            # raised again, but the ladder is stopped (held) or from a round someone answered: a round may be owed
            opening = _opening(await asyncio.to_thread(self.alarms.store.audit, alarm.id))
            if opening is not None and opening.seq > state.alarm_seq:
                await self._reopen(alarm, opening.seq, f"after a restart: {opening.move} at {opening.at_ms}")
        elif state.stopped is None and alarm.severity.rank > state.facts.severity.rank:
            await self.ladder.raise_severity(alarm.id, alarm.severity)

    async def rederive(self, alarm_id: str) -> None:
        """Bring one alarm's ladder in line with the alarm as stored (what the restart does for every alarm). Not
        needed after a move made through the alarm service (the listener sees it); for code that changed the
        alarm some other way."""
        alarm = await asyncio.to_thread(self.alarms.store.get, alarm_id)
        if alarm is not None and _live(alarm):
            await self._reconcile_one(alarm)
        elif alarm is not None:
            await self._stop(alarm)

    # -- the listener --------------------------------------------------------------------------------------
    def _put(self, op: Op, alarm: Alarm, seq: int = 0, why: str = "") -> None:
        self._queue.put_nowait(_Job(ladder_rank(alarm), next(self._numbers), op, alarm, seq, why))

    async def on_actions(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if not isinstance(action, Persist) or not action.audit:
                continue
            alarm = action.alarm
            opening = _opening(action.audit)
            if _live(alarm) and opening is not None:
                if opening.from_state is None:
                    self._put("start", alarm, opening.seq)
                else:
                    self._put("reopen", alarm, opening.seq, f"{opening.move}: {opening.note}".rstrip(": "))
            elif _live(alarm) and any(e.move == "severity_raised" for e in action.audit):
                self._put("severity", alarm)
            elif not _live(alarm):
                self._put("stop", alarm)
            for e in action.audit:
                if e.actor != SYSTEM_ACTOR and field_state_of(e.move) is not None:
                    await self._observe(alarm, e)

    async def _observe(self, alarm: Alarm, entry: AuditEntry) -> None:
        """At once, not queued: the console's next call to the ladder must find the move already known."""
        try:
            await self.ladder.observe(alarm.id, entry.move, entry.actor)
        except UnknownEscalation:
            return  # no ladder (yet): its start reads the alarm as it is then
        except Exception:
            self.failures += 1
            log.exception("the ladder of %s could not take in %s by %s", alarm.id, entry.move, entry.actor)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._do(job)
            finally:
                self._queue.task_done()

    async def _do(self, job: _Job) -> None:
        try:
            if job.op == "start":
                await self._start(job.alarm, job.seq)
            elif job.op == "reopen":
                await self._reopen(job.alarm, job.seq, job.why)
            elif job.op == "severity":
                await self._raise_severity(job.alarm)
            else:
                await self._stop(job.alarm)
        except Exception:  # one alarm's ladder failing must not stop the others'
            self.failures += 1
            log.exception("could not %s the ladder of alarm %s", job.op, job.alarm.id)

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._moves.qsize()

    async def settle(self) -> None:
        """Wait until every queued job and move is carried out (a move may queue jobs, and a job moves)."""
        while True:
            await self._queue.join()
            await self._moves.join()
            if self._queue.empty() and self._moves.empty():
                return

    # -- the jobs ------------------------------------------------------------------------------------------
    def _facts(self, alarm: Alarm) -> AlarmFacts:
        place = alarm.place
        assert self._ladder is not None
        where = self._ladder[1].where(device=place.device, building=place.building, household=place.household, unit=place.unit)
        return AlarmFacts(alarm.id, alarm.alarm_type, alarm.severity, alarm.raised_at_ms, where, alarm.title, alarm.drill,
                          life_safety=alarm.life_safety)

    async def _start(self, alarm: Alarm, seq: int = 0) -> None:
        await self.ladder.start(self._facts(alarm), alarm_seq=seq)
        self.started += 1
        await self._catch_up(alarm.id)

    async def _catch_up(self, alarm_id: str) -> None:
        """A person moved the alarm before its ladder existed (the start waited in a backlog, or a restart): the
        new ladder takes in those moves too, so it does not chase a rung the command room already answered for."""
        try:
            current = self.alarms.engine.book.get(alarm_id)
        except AlarmServiceError:
            return
        if current is None or current.state not in FIELD_ORDER:
            return
        for entry in await asyncio.to_thread(self.alarms.store.audit, alarm_id):
            if entry.actor != SYSTEM_ACTOR and field_state_of(entry.move) is not None:
                await self._observe(current, entry)

    async def _reopen(self, alarm: Alarm, seq: int, why: str) -> None:
        state = await self.ladder.reopen(self._facts(alarm), seq, why)
        if state.alarm_seq == seq:
            self.reopened += 1

    async def _raise_severity(self, alarm: Alarm) -> None:
        with contextlib.suppress(UnknownEscalation):  # no ladder yet: its start takes the severity as it is
            await self.ladder.raise_severity(alarm.id, alarm.severity)

    async def _stop(self, alarm: Alarm) -> None:
        if await self.ladder.get(alarm.id) is None:
            return
        try:
            await self.ladder.stop(alarm.id, alarm.state.value)
        except Exception:  # already stopped, or stopped by another process: nothing left to do
            log.debug("ladder of %s was already stopped", alarm.id, exc_info=True)
            return
        self.stopped += 1

    # -- moves the ladder asks for ---------------------------------------------------------------------------
    async def apply_move(self, advance: AdvanceAlarm) -> None:
        """The ladder's `on_advance`: queued, so paging the next alarm never waits for this one's bookkeeping."""
        self._moves.put_nowait(advance)

    def _taken(self, advance: AdvanceAlarm) -> bool:
        """True when the alarm has already taken this move or passed it (or closed): nothing to ask."""
        try:
            current = self.alarms.engine.book.get(advance.alarm_id)
        except AlarmServiceError:
            return False  # the service is not running here: ask, and let it answer
        return current is None or (current.state, advance.move) not in TRANSITIONS

    async def _apply_moves(self) -> None:
        while True:
            advance = await self._moves.get()
            try:
                await self._apply(advance)
            finally:
                self._moves.task_done()

    async def _apply(self, advance: AdvanceAlarm) -> None:
        if self._taken(advance):
            log.debug("ladder move %s on %s: the alarm is already past it", advance.move.value, advance.alarm_id)
            return
        try:
            await self.alarms.move(advance.alarm_id, advance.move, advance.actor)
        except (MoveRefused, NoSuchAlarm) as exc:
            log.info("ladder move %s on %s not applied: %s", advance.move.value, advance.alarm_id, exc)
        except Exception:
            self.failures += 1
            log.exception("could not apply ladder move %s on %s", advance.move.value, advance.alarm_id)
