"""The escalation service: feeds the pure ladder, persists what it decides, and carries its notices out.

How this works: `EscalationService` is an async context manager owning a TaskGroup with two named tasks.
`escalation-timers` asks the store for the earliest `due_ms`, sleeps until then (at most `poll_interval_s`, so
escalations started by another process are seen soon) and fires every due step through `EscalationStore.
step_due_many` (rounds of `STEP_BATCH` in one transaction each; exactly once across processes). On entry it fires
everything that fell due while the process was down *before* it reports ready, so a restart fires a passed deadline
at once and a future one on time: nothing about timers is kept in memory that the store cannot re-derive.
`escalation-outbox` claims queued notices and hands them to the `Dispatcher` (console, MQTT, webhooks; retries,
drill gate, rate limits, receipts), marking each done afterwards (those done at the same time in one transaction).

Life safety first in a storm (issue 19): while the alarm service has a round of life-safety messages queued or
being decided (`intake`, set by the bridge: the `IntakeGate` of backend.alarms.service), the timer loop waits
before its next step and the outbox loop before its next claim, for at most `INTAKE_WAIT_S` per busy spell
(`_Deference`), so a storm's alarms reach the console before the ladder's older work (repeats, notices) takes the
event loop, the GIL and the alarm file's write lock from them. Paging deadlines are minutes; the wait is about a second.

`start(facts)` (`start_many` for a storm's batch, stored in one transaction), `reopen` (the alarm is live again: a new
round), `raise_severity`, `observe` (a field state a person's committed move reached) and `stop(alarm_id, reason)`
are the bridge's (backend.escalation.bridge): the ladder learns of every lifecycle move from the alarm service's committed result and never asks for one. The
ladder's own events are `decline` (a responder cannot come), `verify` (the console's 核实) and `record_callback` (an SOS
call-back's outcome, 回访). Each notice's
one-tap link is made for the ladder's round (`LinkMaker(alarm_id, round, contact)`).
All times come from the injected clock; tests drive `run_due()` and `deliver_pending()` on a VirtualClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self

import msgspec

from alerting.ladder import (
    AlarmFacts,
    CallbackOutcome,
    Contact,
    ContactKind,
    EscalationState,
    LadderAction,
    Note,
    Notify,
    PolicySet,
    Roster,
    Where,
    advance,
    decline,
    observe,
    raise_severity,
    record_callback,
    reopen,
    rung_status,
    start,
    stop,
    verify,
)
from alerting.lifecycle import AlarmState
from alerting.model import Severity
from backend.escalation.settings import EscalationSettings
from backend.escalation.store import EscalationStore, StepOutcome, UnknownEscalation
from backend.notify.channel import Message
from backend.notify.dispatch import Dispatcher
from backend.notify.receipts import GroupCommit
from backend.notify.templates import notice_text
from backend.stream import LadderStep
from broker.clock import Clock

__all__ = ["EscalationService", "IntakeGate", "LinkMaker", "StepReport", "Timeline", "UnknownEscalation", "rungs_json"]

log = logging.getLogger(__name__)

LinkMaker = Callable[[str, int, Contact], "str | None"]  # (alarm id, ladder round, contact) -> one-tap link
_message_decoder = msgspec.json.Decoder(Message)
# At most this long, per spell of a busy intake, the ladder's work (a due step, a claim of the outbox, a batch of
# finished notices) waits for the alarm service's life-safety intake to go quiet (`IntakeGate`, `_Deference`).
INTAKE_WAIT_S: Final = 1.0
# Due steps written per transaction (`EscalationStore.step_due_many`): a storm's repeats fall due together; one
# transaction each held the timer loop at ~50 steps a second (issue 19). The ladder's work for a round is done before
# SQLite's write lock is taken, so the lock is held for the round's writes only (a few ms).
STEP_BATCH: Final = 16


class IntakeGate(Protocol):
    """The alarm service's life-safety intake, as the ladder sees it (backend.alarms.service.AlarmService)."""

    def intake_busy(self) -> bool:
        """A round of life-safety messages waits for the alarm service or is being decided and committed."""
        ...

    async def intake_quiet(self, max_wait_s: float) -> None:
        """Return once the intake is quiet, or after `max_wait_s` (wall time)."""
        ...


class _Deference:
    """The ladder's wait for a busy life-safety intake, shared by one round's calls (its steps, its notices).

    Each call waits while the intake is busy, for at most `budget_s` (wall time) per spell of it: a storm's alarms go
    first, and the ladder's work waits at most that long behind them. A spell that outlasts the budget (a flood that
    does not end) is then let through for the next `budget_s` without waiting, and waited for again after that, so
    in an endless flood the ladder still runs at least half the time. A call that finds the intake quiet ends the
    spell: the next storm gets the whole budget again.

    The budget used to run from the round's start. A timer round that had been stepping for a second when a storm
    came (hundreds of due repeats of the alarms before it) no longer waited at all, and its steps' commits, one every
    ~100 ms in a thread, took the GIL and the alarm file from the storm's rounds (issue 19: seen by timing each
    round and each step of the e2e benchmark's storms)."""

    __slots__ = ("_budget", "_free_until", "_gate", "_spell_ends")

    def __init__(self, gate: IntakeGate | None, budget_s: float) -> None:
        self._gate = gate
        self._budget = budget_s
        self._spell_ends: float | None = None  # when the current spell's wait gives way
        self._free_until = -math.inf  # a spell that outlasted the budget: calls go ahead until then

    async def __call__(self) -> None:
        gate = self._gate
        if gate is None or not gate.intake_busy():
            self._spell_ends = None
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._free_until:
            return
        if self._spell_ends is None:
            self._spell_ends = now + self._budget
        left = self._spell_ends - now
        if left > 0:
            await gate.intake_quiet(left)
        if not gate.intake_busy():
            self._spell_ends = None
        elif self._spell_ends is not None and loop.time() >= self._spell_ends:
            self._spell_ends = None
            self._free_until = loop.time() + self._budget


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one committed step did (for logs, tests and the live feed)."""

    alarm_id: str
    worker: str
    committed_ms: int
    actions: tuple[LadderAction, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per alarm: time from raise to each field state, and the deadlines missed per rung."""

    alarm_id: str
    policy: str
    raised_ms: int
    reached: dict[str, int]  # field state -> ms after the raise
    missed: dict[str, list[str]]  # rung -> field states whose deadline it missed
    engaged: dict[str, dict[str, Any]]  # rung -> who, since when, filled how
    verified_after_ms: int | None
    treated_real_after_ms: int | None
    stopped: str | None
    drill: bool
    rungs: list[dict[str, Any]]  # rungs_json: each rung's who, state and when it climbs

    def as_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


_STATE_ZH: Final = {"waiting": "等待本人确认", "acknowledged": "已确认", "en_route": "已出发", "on_scene": "已到场", "handled": "处置完成",
                    "closed": "已复核关闭", "vacant": "无人在岗，已升级", "not_applicable": "无登记联系人", "declined": "均无法前往，已升级",
                    "stopped": "已停止"}
_WAIT_ZH: Final = {"acknowledged": "未确认", "en_route": "未出发", "on_scene": "未到场", "handled": "未处置完成", "closed": "未复核"}


def _clock_text(at_ms: int, utc_offset_min: int) -> str:
    local_s = (at_ms // 1000 + utc_offset_min * 60) % 86_400
    return f"{local_s // 3600:02d}:{local_s // 60 % 60:02d}:{local_s % 60:02d}"


def rungs_json(state: EscalationState, policies: PolicySet, utc_offset_min: int = 480) -> list[dict[str, Any]]:
    """Per rung, for the console's detail pane and GET /api/escalation/{id}: who was paged, how far they got, what
    the rung waits for and when it climbs (ms since the epoch; `text`: one Chinese line, times in the site's zone).

    An acknowledgement covers the rung of the person who gave it; the duty officer's on the console covers the
    rungs with `command_room` true. Every other rung waits for its own answer (docs/escalation.md)."""
    out: list[dict[str, Any]] = []
    for r in rung_status(state, policies):
        to = policies.rungs[r.climbs_to].label if r.climbs_to and r.climbs_to in policies.rungs else "值班台"
        text = f"{r.label}：{_STATE_ZH.get(r.state, r.state)}"
        if r.climbs_at_ms is not None and r.waits_for is not None:
            text += f"，{_clock_text(r.climbs_at_ms, utc_offset_min)} 前{_WAIT_ZH.get(r.waits_for.value, '未响应')}将升级至{to}"
        if r.repeats_at_ms is not None:
            text += f"，{_clock_text(r.repeats_at_ms, utc_offset_min)} 再次提醒"
        out.append({
            "rung": r.rung, "label": r.label, "who": [{"id": c.id, "name": c.name} for c in r.contacts], "state": r.state,
            "command_room": r.command_room, "engaged_ms": r.engaged_ms, "waits_for": r.waits_for.value if r.waits_for else None,
            "climbs_at_ms": r.climbs_at_ms, "climbs_to": r.climbs_to, "repeats_at_ms": r.repeats_at_ms,
            "missed": [m.value for m in r.missed], "text": text,
        })
    return out


def _default_place(where: Where) -> str:
    parts = [where.building or "", f"{where.unit}单元" if where.unit is not None else "", where.household or ""]
    return " ".join(p for p in parts if p) or "位置未知"


class EscalationService:
    def __init__(
        self, store: EscalationStore, policies: PolicySet, roster: Roster, dispatcher: Dispatcher, clock: Clock, *,
        settings: EscalationSettings | None = None, worker_id: str = "backend", links: LinkMaker | None = None,
        place_name: Callable[[Where], str] = _default_place, on_step: Callable[[StepReport], None] | None = None,
    ) -> None:
        self.store = store
        self.policies = policies
        self.roster = roster
        self.dispatcher = dispatcher
        self.clock = clock
        self.settings = settings or EscalationSettings()
        self.worker_id = worker_id
        self.links = links
        self.place_name = place_name
        self.on_step = on_step
        self.intake: IntakeGate | None = None  # the alarm service's life-safety intake, which the ladder's work lets go first
        self.intake_wait_s = INTAKE_WAIT_S
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._closing = False
        self._tg: asyncio.TaskGroup | None = None
        # Notices delivered at the same time are marked done in one transaction, not one each (issue 19).
        self._finish: GroupCommit[str] = GroupCommit(self._finish_all)

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.run_due()  # whatever fell due while we were down fires now, before we say ready
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tg.create_task(self._timer_loop(), name="escalation-timers")
        self._tg.create_task(self._outbox_loop(), name="escalation-outbox")
        self.ready.set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closing = True
        self._wake.set()
        self._outbox_wake.set()
        if self._tg is not None:
            await self._tg.__aexit__(exc_type, exc, tb)

    async def _sleep_until(self, event: asyncio.Event, seconds: float) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when it is cancelled just as the event is
        # set, and a worker loop that lost its cancellation so waits for ever at shutdown (issue 19, found by a test)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await event.wait()
        event.clear()

    async def _timer_loop(self) -> None:
        poll = self.settings.poll_interval_s
        while not self._closing:
            try:
                await self.run_due()
                due = await asyncio.to_thread(self.store.next_due_ms)
            except Exception:  # a database hiccup must not end the ladder: log, wait, try again
                log.exception("escalation timer round failed")
                due = None
            wait = poll if due is None else min(poll, self.clock.real_seconds(due - self.clock.now_ms()))
            await self._sleep_until(self._wake, wait)

    async def _outbox_loop(self) -> None:
        poll = self.settings.poll_interval_s
        while not self._closing:
            try:
                n = await self.deliver_pending()
                await self.dispatcher.flush_storms()
            except Exception:
                log.exception("notice delivery round failed")
                n = 0
            if n == 0:
                await self._sleep_until(self._outbox_wake, poll)

    # -- the ways in ------------------------------------------------------------------------------------------
    async def start(self, facts: AlarmFacts, *, alarm_seq: int = 0) -> EscalationState:
        """Open the alarm's escalation and page its entry rungs (idempotent: a second start changes nothing)."""
        now = self.clock.now_ms()
        state, actions = start(facts, self.policies, self.roster, now, alarm_seq=alarm_seq)
        outcome = StepOutcome(state, actions, self._messages(state, actions, now))
        created = await asyncio.to_thread(self.store.create, outcome, self.worker_id, now)
        if not created:
            existing = await asyncio.to_thread(self.store.get, facts.alarm_id)
            assert existing is not None
            return existing
        await self._after(outcome, now)
        return state

    async def start_many(self, facts_list: Sequence[AlarmFacts], *, alarm_seqs: Sequence[int] | None = None) -> list[EscalationState]:
        """`start` for many alarms at once (a storm's ladders, issue 19): their escalations are stored in one transaction
        (`EscalationStore.create_many`), then each new one's steps and notices go out as `start`'s do, in order. Per
        alarm, its state: an alarm that already had an escalation keeps it (read back, as `start` does). If the
        transaction fails, nothing of it was stored and the error is raised: the caller retries one by one."""
        seqs = list(alarm_seqs) if alarm_seqs is not None else [0] * len(facts_list)
        now = self.clock.now_ms()
        outcomes: list[StepOutcome] = []
        for facts, seq in zip(facts_list, seqs, strict=True):
            state, actions = start(facts, self.policies, self.roster, now, alarm_seq=seq)
            outcomes.append(StepOutcome(state, actions, self._messages(state, actions, now)))
            await asyncio.sleep(0)  # ~1 ms of ladder each: the alarm service's next round, ready meanwhile, goes first
        created = await asyncio.to_thread(self.store.create_many, outcomes, self.worker_id, now)
        states: list[EscalationState] = []
        for outcome, made in zip(outcomes, created, strict=True):
            if made:
                try:
                    await self._after(outcome, now)
                except Exception:  # stored and its notices queued: one alarm's live-feed step failing stops no other's
                    log.exception("the first step of %s was stored but not published", outcome.state.alarm_id)
                states.append(outcome.state)
                await asyncio.sleep(0)  # as above: the feed's work for each start does not hold the alarm service back
            else:
                existing = await asyncio.to_thread(self.store.get, outcome.state.alarm_id)
                assert existing is not None
                states.append(existing)
        return states

    async def decline(self, alarm_id: str, actor: str, note: str = "") -> EscalationState:
        """无法前往 from `actor`: the rung passes on at once (timers due by now fire first)."""
        return await self._event(alarm_id, lambda s, now: decline(s, actor, self.policies, self.roster, now, note))

    async def record_callback(self, alarm_id: str, outcome: CallbackOutcome, actor: str, note: str = "") -> EscalationState:
        """回访结果 from `actor`, once (CallbackError otherwise): no answer or needs help pages the family and climbs at
        once; answered-fine and false press climb nothing (backend.callbacks closes the alarm through the lifecycle)."""
        return await self._event(alarm_id, lambda s, now: record_callback(s, outcome, actor, self.policies, self.roster, now, note))

    async def open_callbacks(self) -> list[EscalationState]:
        """Every call-back still waiting for its outcome (the policies with a `callback:` rule), oldest first."""
        names = [p.name for p in self.policies.policies if p.callback is not None]
        return await asyncio.to_thread(self.store.open_callbacks, names)

    async def verify(self, alarm_id: str, actor: str, note: str = "") -> EscalationState:
        """核实 by `actor` (the console): the alarm is real; the verify window is spent."""
        return await self._event(alarm_id, lambda s, now: verify(s, actor, self.policies, self.roster, now, note))

    async def _event(self, alarm_id: str, event: Callable[[EscalationState, int], tuple[EscalationState, list[LadderAction]]]) -> EscalationState:
        now = self.clock.now_ms()

        def step(s: EscalationState) -> StepOutcome:
            s, due_actions = advance(s, self.policies, self.roster, now)  # timers due by now fire first
            s, actions = event(s, now)
            actions = due_actions + actions
            return StepOutcome(s, actions, self._messages(s, actions, now))

        outcome = await asyncio.to_thread(self.store.apply, alarm_id, step, self.worker_id, now)
        await self._after(outcome, now)
        return outcome.state

    async def reopen(self, facts: AlarmFacts, alarm_seq: int, why: str = "") -> EscalationState:
        """The alarm is live and unacknowledged again (its audit entry `alarm_seq` made it so): a new round of its
        ladder, or its first if it never had one (raised suppressed or silenced). Once per entry, across processes."""
        if await self.get(facts.alarm_id) is None:
            state = await self.start(facts, alarm_seq=alarm_seq)
            if state.alarm_seq >= alarm_seq:
                return state
        now = self.clock.now_ms()

        def step(s: EscalationState) -> StepOutcome:
            s, actions = reopen(s, facts, self.policies, self.roster, now, alarm_seq, why)
            return StepOutcome(s, actions, self._messages(s, actions, now))

        outcome = await asyncio.to_thread(self.store.apply, facts.alarm_id, step, self.worker_id, now)
        await self._after(outcome, now)
        return outcome.state

    async def raise_severity(self, alarm_id: str, severity: Severity) -> EscalationState:
        """The alarm's severity rose: its ladder re-enters at the entry rungs the new severity selects."""
        now = self.clock.now_ms()

        def step(s: EscalationState) -> StepOutcome:
            s, due_actions = advance(s, self.policies, self.roster, now)
            s, actions = raise_severity(s, severity, self.policies, self.roster, now)
            actions = due_actions + actions
            return StepOutcome(s, actions, self._messages(s, actions, now))

        outcome = await asyncio.to_thread(self.store.apply, alarm_id, step, self.worker_id, now)
        await self._after(outcome, now)
        return outcome.state

    async def observe(self, alarm_id: str, reached: AlarmState, actor: str) -> EscalationState:
        """`actor` brought the alarm to the field state `reached` (a committed move, or an answer the alarm had already
        passed): the ladder records what it covers; no move goes back."""
        now = self.clock.now_ms()

        def step(s: EscalationState) -> StepOutcome:
            s, actions = observe(s, reached, actor, self.policies, self.roster, now)
            return StepOutcome(s, actions, [])

        outcome = await asyncio.to_thread(self.store.apply, alarm_id, step, self.worker_id, now)
        await self._after(outcome, now)
        return outcome.state

    async def stop(self, alarm_id: str, reason: str) -> EscalationState:
        now = self.clock.now_ms()

        def step(s: EscalationState) -> StepOutcome:
            s, actions = stop(s, reason, now)
            return StepOutcome(s, list(actions), [])

        outcome = await asyncio.to_thread(self.store.apply, alarm_id, step, self.worker_id, now)
        await self._after(outcome, now)
        return outcome.state

    async def run_due(self) -> int:
        """Fire every step due now; returns how many escalations this process stepped."""
        now = self.clock.now_ms()

        def step(s: EscalationState) -> StepOutcome:
            s, actions = advance(s, self.policies, self.roster, now)
            return StepOutcome(s, actions, self._messages(s, actions, now))

        fired = 0
        defer = _Deference(self.intake, self.intake_wait_s)
        due = await asyncio.to_thread(self.store.due_ids, now, self.settings.batch)
        for i in range(0, len(due), STEP_BATCH):
            await defer()
            for outcome in await asyncio.to_thread(self.store.step_due_many, due[i:i + STEP_BATCH], step, self.worker_id, now):
                if outcome is not None and outcome.actions:
                    fired += 1
                    await self._after(outcome, now)
        return fired

    async def deliver_pending(self) -> int:
        defer = _Deference(self.intake, self.intake_wait_s)
        await defer()
        now = self.clock.now_ms()
        rows = await asyncio.to_thread(self.store.claim_outbox, now, self.settings.batch, round(self.settings.outbox_lease_s * 1000), self.worker_id)
        if not rows:
            return 0
        async with asyncio.TaskGroup() as tg:
            for key, text in rows:
                tg.create_task(self._deliver(key, _message_decoder.decode(text), defer), name=f"deliver-{key}")
        return len(rows)

    async def _deliver(self, key: str, message: Message, defer: _Deference) -> None:
        await defer()  # a storm that began after the claim: its alarms still go first (within the spell's bound)
        await self.dispatcher.deliver(message)
        await defer()  # and one that began while it went out: marking it done (a write in a thread) waits for the storm too
        await self._finish([key])

    async def _finish_all(self, keys: list[str]) -> None:
        await asyncio.to_thread(self.store.finish_outbox_many, keys, self.worker_id)

    # -- reading ------------------------------------------------------------------------------------------------
    async def get(self, alarm_id: str) -> EscalationState | None:
        return await asyncio.to_thread(self.store.get, alarm_id)

    async def timeline(self, alarm_id: str) -> Timeline:
        s = await self.get(alarm_id)
        if s is None:
            raise UnknownEscalation(alarm_id)
        t0 = s.facts.raised_at_ms
        return Timeline(
            alarm_id=alarm_id, policy=s.policy, raised_ms=t0, reached={st.value: t - t0 for st, t in s.reached},
            missed={e.rung: [m.value for m in e.missed] for e in s.engagements if e.missed},
            engaged={e.rung: {"contacts": [c.id for c in e.contacts], "since_ms": e.engaged_ms - t0, "via": e.via.value,
                              "progress": e.progress.value if e.progress else None, "declined": list(e.declined)} for e in s.engagements},
            verified_after_ms=None if s.verified_ms is None else s.verified_ms - t0,
            treated_real_after_ms=None if s.treated_real_ms is None else s.treated_real_ms - t0,
            stopped=s.stopped, drill=s.facts.drill, rungs=rungs_json(s, self.policies, self.settings.utc_offset_min),
        )

    async def misses(self, *, drill: bool = False) -> dict[str, int]:
        return await asyncio.to_thread(self.store.misses_by_rung, drill=drill)

    # -- helpers --------------------------------------------------------------------------------------------------
    def _messages(self, state: EscalationState, actions: list[LadderAction], now_ms: int) -> list[Message]:
        f = state.facts
        out: list[Message] = []
        for a in actions:
            if not isinstance(a, Notify):
                continue
            link = self.links(a.alarm_id, state.round, a.contact) if self.links is not None and a.contact.kind is not ContactKind.CONSOLE else None
            title = f.title or f.alarm_type
            text = notice_text(title=title, place=self.place_name(f.where), reason=a.reason.value, severity=f.severity.value,
                               rung_label=a.rung_label, attempt=a.attempt, drill=a.drill, link=link)
            out.append(Message(key=a.key, alarm_id=a.alarm_id, contact=a.contact, channels=a.channels, text=text, title=title, link=link,
                               drill=a.drill, outside_allowed=a.outside_allowed, reason=a.reason.value, rung=a.rung,
                               building=f.where.building, severity=f.severity.value, created_ms=now_ms, life_safety=f.life_safety,
                               place=self.place_name(f.where)))
        return out

    async def _after(self, outcome: StepOutcome, now_ms: int) -> None:
        if outcome.messages:
            self._outbox_wake.set()
        self._wake.set()
        steps = [LadderStep(a.alarm_id, a.step, a.kind.value, a.rung, a.detail, a.at_ms, outcome.state.facts.drill)
                 for a in outcome.actions if isinstance(a, Note)]
        if steps:  # one publication of the step's notes, in order (each was one: a storm's starts woke every subscriber ~5 times each)
            await self.dispatcher.console.publish(steps)
        if self.on_step is not None and outcome.actions:
            self.on_step(StepReport(outcome.state.alarm_id, self.worker_id, now_ms, tuple(outcome.actions)))

