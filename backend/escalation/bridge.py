"""Between the alarm service and the escalation ladder: the ladder follows the alarm's committed changes.

How this works: the alarm service is the only writer of alarm state; `AlarmLadderBridge.on_actions` is its
listener and reads each committed `Persist` (the alarm as it now is and the audit entries just written):

- an entry that makes the alarm live and unacknowledged (its first raise, or a move back to `raised`: a
  maintenance window ended, a suppressed effect was released, the device alarmed again after its clear)
  starts its ladder, or opens the ladder's next round, keyed by that entry's `seq`, so one entry pages
  once (alerting.ladder.reopen);
- a `severity_raised` entry on a live alarm re-enters the ladder at the new severity's entry rungs;
- a field move made by a person (acknowledge, depart, arrive, finish, verify and close; from the console, a
  one-tap link or the responder app) is *observed* by the ladder at once, before the service's `move()`
  returns: the ladder reads the field state the committed entry reached (`to_state`) and the person who made
  it; it never asks for a move back, so nothing is applied twice and nothing is refused;
- an alarm that leaves the open states, or is suppressed or silenced, stops its ladder.

Starts, rounds, severity rises and stops are queued, and the bridge's own task (`alarm-ladder-bridge`) carries
them out, so storing an alarm never waits for its ladder to page people. The queue is a priority queue:
real life-safety alarms first, then other real alarms, then drills (first come, first served within a class,
so one alarm's jobs keep their order): a smoke alarm is paged before a backlog of device-lost ladders. The
queue is in memory: on entry the bridge reconciles from stored state, life safety first: an open, live alarm
with no ladder gets one; a `raised` alarm whose ladder is stopped or from an answered round gets its next
round if its audit shows a newer opening entry; a ladder below the alarm's severity is raised.

The one move the bridge asks the alarm service for is the system's `notify`: after a start or a new round,
a running ladder that paged people means the alarm is notified, asked only while the committed alarm is still
`raised` (a person who acknowledged meanwhile has already moved it on). Everything else the ladder learns
from committed results: the alarm service is the only writer of alarm state.
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

from alerting.ladder.engine import AlarmFacts, EscalationState
from alerting.lifecycle import FIELD_ORDER, SYSTEM_ACTOR, AlarmState, Move
from alerting.model import Alarm, AuditEntry, Persist
from backend.alarms.service import AlarmService, AlarmServiceError, MoveRefused, NoSuchAlarm
from backend.escalation.service import INTAKE_WAIT_S, EscalationService
from backend.escalation.store import UnknownEscalation
from backend.sites.roster import SiteRoster
from backend.stream import Event
from broker.frozen import quick_init

__all__ = ["AlarmLadderBridge", "field_answer", "ladder_rank"]

log = logging.getLogger(__name__)

_HELD = frozenset({AlarmState.SUPPRESSED, AlarmState.SILENCED})
Op = Literal["start", "reopen", "severity", "stop"]
# Ladder starts taken from the queue together: their `notify` moves are one commit. Small enough that the first
# alarm of a storm is marked notified within a few dozen ladder starts of its own.
START_BATCH = 32
# A batch of ladder starts waits for the life-safety intake to go quiet (intake_quiet) at most INTAKE_WAIT_S, as the
# ladder's steps and notices do: a storm of 2,000 smoke alarms is on the console in about half of it; paging
# deadlines are minutes.


def ladder_rank(alarm: Alarm) -> int:
    """Queue class of an alarm's ladder jobs: 0 real life safety, 1 other real, 2 drill life safety, 3 other drill."""
    return (2 if alarm.drill else 0) + (0 if alarm.life_safety else 1)


@quick_init
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


def field_answer(entry: AuditEntry) -> AlarmState | None:
    """The field state a person's committed move reached (what the ladder observes); None for anything else."""
    if entry.actor == SYSTEM_ACTOR or not entry.is_transition or entry.to_state not in FIELD_ORDER:
        return None
    return entry.to_state


def _opening(audit: Sequence[AuditEntry]) -> AuditEntry | None:
    """The last entry that made the alarm raised: its first raise or a move back to raised."""
    return next((e for e in reversed(audit) if e.to_state is AlarmState.RAISED and (e.from_state is None or e.is_transition)), None)


class AlarmLadderBridge:
    """Between one alarm service and the ladder (its escalation service and the roster it resolves places with); it
    hears the alarm service's stream while entered (backend.centre.AlarmCore wires it)."""

    def __init__(self, alarms: AlarmService, ladder: EscalationService, roster: SiteRoster) -> None:
        self.alarms = alarms
        self.ladder = ladder
        self.roster = roster
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._numbers = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = 0
        self.reopened = 0
        self.stopped = 0
        self.failures = 0

    async def __aenter__(self) -> Self:
        # Hear committed changes first, then re-derive from stored state: nothing committed in between is missed
        # (a change heard and also found in the stores is one ladder: starts and rounds are keyed by audit entry).
        self.alarms.stream.subscribe(self.on_actions, name="ladder")
        self.ladder.intake = self.alarms  # the ladder's steps and notices let a storm's intake go first (issue 19)
        await self._reconcile()
        self._tasks = [asyncio.create_task(self._work(), name="alarm-ladder-bridge")]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.alarms.stream.unsubscribe(self.on_actions)  # a rules term's bridge leaves with its term
        if self.ladder.intake is self.alarms:
            self.ladder.intake = None
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

    async def on_actions(self, actions: Sequence[Event]) -> None:
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
                if field_answer(e) is not None:
                    await self._observe(alarm, e)

    async def _observe(self, alarm: Alarm, entry: AuditEntry) -> None:
        """At once, not queued: whoever made the move finds the ladder already knowing it when `move()` returns."""
        reached = field_answer(entry)
        assert reached is not None
        try:
            await self.ladder.observe(alarm.id, reached, entry.actor)
        except UnknownEscalation:
            return  # no ladder (yet): its start reads the alarm as it is then
        except Exception:
            self.failures += 1
            log.exception("the ladder of %s could not take in %s by %s", alarm.id, entry.move, entry.actor)

    async def _work(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            # A storm's starts go together (issue 19): their ladders are stored in one transaction (`start_many`; one
            # by one if that fails), and the alarms' `notify` is one move of them all, one commit, instead of one
            # commit (and one copy of the book) each.
            while jobs[0].op == "start" and len(jobs) < START_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt.op != "start":
                    self._queue.put_nowait(nxt)  # back in its own place (rank, number)
                    self._queue.task_done()
                    break
                jobs.append(nxt)
            try:
                if jobs[0].op == "start":
                    # Life safety first in a storm: the alarms' own intake (on the console within a second) goes
                    # before their ladders' work on the same event loop; bounded, so paging waits ~a round at most.
                    await self.alarms.intake_quiet(INTAKE_WAIT_S)
                if len(jobs) == 1:
                    await self._do(jobs[0])
                else:
                    await self._start_all(jobs)
            finally:
                for _ in jobs:
                    self._queue.task_done()

    async def _start_all(self, jobs: Sequence[_Job]) -> None:
        started: list[tuple[str, EscalationState]] = []
        try:
            states = await self.ladder.start_many([self._facts(job.alarm) for job in jobs], alarm_seqs=[job.seq for job in jobs])
        except Exception:  # the batch's transaction failed (nothing of it stored): one by one, so one bad alarm stops no other's ladder
            log.warning("could not start %d ladders together; starting them one by one", len(jobs), exc_info=True)
            states = None
        for k, job in enumerate(jobs):
            try:
                state = states[k] if states is not None else await self.ladder.start(self._facts(job.alarm), alarm_seq=job.seq)
                self.started += 1
                await self._catch_up(job.alarm.id)
                started.append((job.alarm.id, state))
            except Exception:  # one alarm's ladder failing must not stop the others'
                self.failures += 1
                log.exception("could not start the ladder of alarm %s", job.alarm.id)
        try:
            await self._notified_all(started)
        except Exception:
            self.failures += 1
            log.exception("could not notify %d alarms whose ladders started", len(started))

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
        return self._queue.qsize()

    async def settle(self) -> None:
        """Wait until every queued job is carried out (a job's `notify` may queue more)."""
        while True:
            await self._queue.join()
            if self._queue.empty():
                return

    # -- the jobs ------------------------------------------------------------------------------------------
    def _facts(self, alarm: Alarm) -> AlarmFacts:
        place = alarm.place
        where = self.roster.where(device=place.device, building=place.building, household=place.household, unit=place.unit)
        return AlarmFacts(alarm.id, alarm.alarm_type, alarm.severity, alarm.raised_at_ms, where, alarm.title, alarm.drill,
                          life_safety=alarm.life_safety)

    async def _start(self, alarm: Alarm, seq: int = 0) -> None:
        state = await self.ladder.start(self._facts(alarm), alarm_seq=seq)
        self.started += 1
        await self._catch_up(alarm.id)
        await self._notified(alarm.id, state)

    async def _notified(self, alarm_id: str, state: EscalationState) -> None:
        await self._notified_all([(alarm_id, state)])

    async def _notified_all(self, started: Sequence[tuple[str, EscalationState]]) -> None:
        """Running ladders that paged people: their alarms are notified (raised → notified), asked of the alarm
        service only while the committed alarm is still `raised`, in one move of them all."""
        owed: list[str] = []
        for alarm_id, state in started:
            if state.stopped is not None or not state.staffed:
                continue
            try:
                current = self.alarms.engine.book.get(alarm_id)
            except AlarmServiceError:
                current = await asyncio.to_thread(self.alarms.store.get, alarm_id)
            if current is not None and current.state is AlarmState.RAISED:
                owed.append(alarm_id)  # else a person already moved it on (or it closed): nothing to ask
        if len(owed) == 1:
            try:
                await self.alarms.move(owed[0], Move.NOTIFY, SYSTEM_ACTOR)
            except (MoveRefused, NoSuchAlarm) as exc:  # moved on between the look and the move: the move is not owed
                log.debug("notify on %s not needed any more: %s", owed[0], exc)
        elif owed:
            await self.alarms.move_each(owed, Move.NOTIFY, SYSTEM_ACTOR)  # those moved on meanwhile are left out

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
            if field_answer(entry) is not None:
                await self._observe(current, entry)

    async def _reopen(self, alarm: Alarm, seq: int, why: str) -> None:
        state = await self.ladder.reopen(self._facts(alarm), seq, why)
        if state.alarm_seq == seq:
            self.reopened += 1
        await self._notified(alarm.id, state)

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
