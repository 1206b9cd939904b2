"""The escalation ladder as pure functions: (escalation state, event, now) -> (new state, actions).

How this works: `start` picks the policy for an alarm and pages its entry rungs. From then on the state holds
everything that matters (who was paged when, how far each rung got, which deadlines were missed), and the
*timers are not stored*: `timers(state, policies)` re-derives them from the state every time (a repeat is due
`every` after the last page while nobody acknowledged; a deadline is due `seconds` after the rung was paged
while the rung has not reached that field state; the verify window is due `window` after the start while
nobody verified). `advance(state, ..., now)` fires every timer due at `now`, in order, so a process that was
down while deadlines passed fires them all at once on restart.

One lifecycle (alerting.lifecycle): the alarm service owns the alarm's state and the ladder follows it, in the
lifecycle's own words. `observe` takes in the field state (AlarmState) a person's committed move reached (or
a responder's answer the alarm had already passed): it records progress and never asks for a move back. Field
progress is the lifecycle's FIELD_ORDER and `field_rank`; the ladder keeps no order or names of its own. Its
only events that are no lifecycle moves: `decline` (无法前往: the rung passes on at once) and `verify` (核实:
the alarm is real; the verify window is spent). A running, staffed ladder is the alarm's sign that people were
notified: the bridge (backend.escalation.bridge) asks the alarm service for `notify` from that. `reopen` opens a new
*round* when the alarm is live and unacknowledged again (a maintenance window ended, a suppressed effect was
released, the device alarmed again after its clear): the entry rungs of the policy the alarm's facts select
now are paged afresh. A round is keyed by the alarm's audit entry that opened it (`alarm_seq`), so the same
entry never opens two rounds, whether it is seen live or re-derived after a restart. `raise_severity` re-enters
at the entry rungs of the policy the higher severity selects (the fire station joins) without repaging the
rungs already engaged.

What an acknowledgement covers (docs/escalation.md): a rung is answered by the people paged on it. A
responder's 我已收到 stops that rung's repeats and meets its acknowledgement deadline. The duty officer's
acknowledgement on the console is the command room's: it covers the console and duty-officer rungs only; the
field rungs keep waiting for their own answer and climb at their deadlines, unless the officer records their
answer on their behalf (they phoned in: observed as that responder's). `rung_status` says, per rung, who, in
what state, and when it climbs.

The SOS call-back (回访, docs/escalation.md): a policy with a `callback:` rule opens a `Callback` at `start` for
its rung (call the resident, record what came of it). Its deadline is not stored either: `opened_ms` plus the
rule's `answer_within`, a timer like any other. `record_callback` takes the outcome: no answer or needs help
pages the rule's `escalate_to` rungs (the family) and climbs from the call-back's rung at once; the deadline
passing unanswered does the same (`CALLBACK_EXPIRED`). Answered-fine and false press climb nothing: the backend
closes the alarm through the lifecycle (a person's moves), and the ladder stops when it observes that.

Every call that changes the state bumps `state.step`; the actions it returns carry that step number, so the
service can claim a step exactly once and notifications get stable idempotency keys.

Invariants:
- every firing removes its own timer (a repeat counts, a deadline is marked missed, the verify window is
  spent), and every new rung's timers lie strictly in the future: `advance` always terminates;
- an alarm never ends up with nobody: a vacant seat climbs to the next rung, and when the ladder runs out the
  command room's console holds the alarm (`CONSOLE`);
- a stopped ladder has no timers and pages nobody;
- drill notices say so, and may leave the building only if the drill asks (`drill_outside`); a real alarm
  is never held back by a drill.

Exceptions:

    LadderError
     ├── UnknownResponder   a decline from someone the ladder did not page
     ├── CallbackError      an outcome the call-back cannot take
     │    ├── NoCallback          this alarm's policy opens no call-back (not an SOS)
     │    ├── CallbackRecorded    the outcome is already recorded
     │    └── CallbackClosed      the ladder has stopped (the alarm ended)
     └── (PolicyError       from alerting.ladder.policy, for bad policy data)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from alerting.errors import AlertingError
from alerting.ladder.policy import Policy, PolicySet, Rung, Seat
from alerting.ladder.targets import CONSOLE, Contact, Fill, Roster, Where
from alerting.lifecycle import FIELD_MOVES, FIELD_ORDER, SYSTEM_ACTOR, AlarmState, field_rank
from alerting.model import Severity

__all__ = [
    "CONSOLE_RUNG",
    "AlarmFacts",
    "Callback",
    "CallbackClosed",
    "CallbackError",
    "CallbackOutcome",
    "CallbackRecorded",
    "Decision",
    "Engagement",
    "EscalationState",
    "LadderAction",
    "LadderError",
    "NoCallback",
    "Note",
    "NoteKind",
    "Notify",
    "NotifyReason",
    "RungStatus",
    "Timer",
    "TimerKind",
    "UnknownResponder",
    "advance",
    "callback_deadline",
    "decline",
    "next_due",
    "observe",
    "raise_severity",
    "record_callback",
    "reopen",
    "rung_status",
    "start",
    "stop",
    "timers",
    "verify",
]

CONSOLE_RUNG: Final = "console"


class LadderError(AlertingError):
    """Base of the ladder's errors."""


class UnknownResponder(LadderError):
    def __init__(self, alarm_id: str, responder: str) -> None:
        self.alarm_id, self.responder = alarm_id, responder
        super().__init__(f"{responder!r} was not paged for alarm {alarm_id!r}, so there is nothing to decline")


class CallbackError(LadderError):
    def __init__(self, alarm_id: str, why: str) -> None:
        self.alarm_id, self.why = alarm_id, why
        super().__init__(f"alarm {alarm_id!r}: {why}")


class NoCallback(CallbackError):
    def __init__(self, alarm_id: str) -> None:
        super().__init__(alarm_id, "its policy opens no call-back (not an SOS press)")


class CallbackRecorded(CallbackError):
    def __init__(self, alarm_id: str, outcome: CallbackOutcome) -> None:
        self.outcome = outcome
        super().__init__(alarm_id, f"the call-back outcome is already recorded ({outcome.value})")


class CallbackClosed(CallbackError):
    def __init__(self, alarm_id: str, reason: str) -> None:
        self.reason = reason
        super().__init__(alarm_id, f"the ladder has stopped ({reason}); the call-back is over")


class CallbackOutcome(StrEnum):
    ANSWERED_FINE = "answered_fine"  # 接通·平安
    NEEDS_HELP = "needs_help"  # 接通·需要帮助
    NO_ANSWER = "no_answer"  # 无人接听
    FALSE_PRESS = "false_press"  # 误按

    @property
    def climbs(self) -> bool:
        return self in (CallbackOutcome.NEEDS_HELP, CallbackOutcome.NO_ANSWER)


@dataclass(frozen=True, slots=True)
class Callback:
    """The call-back task (回访) of an SOS press: who calls, since when, and what came of it (all stored facts)."""

    rung: str
    opened_ms: int
    outcome: CallbackOutcome | None = None
    outcome_ms: int | None = None
    actor: str | None = None
    note: str = ""
    expired_ms: int | None = None  # the deadline passed with no outcome: the ladder climbed then
    climbed_ms: int | None = None  # when the call-back climbed (no answer, needs help, or the deadline)

    @property
    def open(self) -> bool:
        return self.outcome is None


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """What the ladder needs to know about an alarm."""

    alarm_id: str
    alarm_type: str
    severity: Severity
    raised_at_ms: int
    where: Where = field(default_factory=Where)
    title: str = ""
    drill: bool = False
    drill_outside: bool = False  # the drill asks for real outside channels (SMS, voice, ...)
    life_safety: bool = False  # smoke, fire, SOS: its notices are never held by a rate limiter (backend.notify)


@dataclass(frozen=True, slots=True)
class Engagement:
    """One rung paged: to whom, since when, and how far they got."""

    rung: str
    engaged_ms: int
    contacts: tuple[Contact, ...]
    via: Fill
    progress: AlarmState | None = None
    repeats: int = 0
    missed: tuple[AlarmState, ...] = ()
    declined: tuple[str, ...] = ()
    offered: tuple[str, ...] = ()  # everyone ever paged on this rung (volunteers are replaced on decline)

    def has(self, contact_id: str) -> bool:
        return any(c.id == contact_id for c in self.contacts)


@dataclass(frozen=True, slots=True)
class EscalationState:
    facts: AlarmFacts
    policy: str
    started_ms: int
    engagements: tuple[Engagement, ...] = ()
    reached: tuple[tuple[AlarmState, int], ...] = ()  # first time the alarm reached each field state
    verified_ms: int | None = None
    treated_real_ms: int | None = None
    exhausted: bool = False
    stopped: str | None = None
    stopped_ms: int | None = None
    step: int = 0
    round: int = 1  # 1 for the first raise; +1 each time the alarm became live and unacknowledged again
    alarm_seq: int = 0  # the alarm's audit entry that opened this round (a later one opens the next)
    entered_ms: int | None = None  # when the current policy was entered after a severity rise (its verify window counts from here)
    callback: Callback | None = None  # the SOS call-back task (回访) of this round, when the policy opens one

    @property
    def alarm_id(self) -> str:
        return self.facts.alarm_id

    def engagement(self, rung: str) -> Engagement | None:
        return next((e for e in self.engagements if e.rung == rung), None)

    def reached_ms(self, state: AlarmState) -> int | None:
        return next((t for s, t in self.reached if s is state), None)

    @property
    def staffed(self) -> bool:
        return any(e.contacts for e in self.engagements)


class NotifyReason(StrEnum):
    PAGE = "page"  # the rung's first notice
    REPEAT = "repeat"  # nobody acknowledged yet
    ESCALATE = "escalate"  # a deadline below was missed
    VACANCY = "vacancy"  # the seat below was empty
    DECLINED = "declined"  # the previous volunteer declined
    UNVERIFIED = "unverified"  # nobody verified in time: treated as real
    EXHAUSTED = "exhausted"  # the ladder ran out: the console holds it
    REOPENED = "reopened"  # the alarm is live again (a window ended, a suppressed effect remains, it alarmed again)
    SEVERITY = "severity_raised"  # the hazard rose: this rung joins at the higher severity's entry
    CALLBACK = "callback_failed"  # the call-back found no answer, or the resident needs help


@dataclass(frozen=True, slots=True)
class Notify:
    alarm_id: str
    step: int
    rung: str
    contact: Contact
    reason: NotifyReason
    channels: tuple[str, ...]
    drill: bool
    outside_allowed: bool  # False: console and in-app only (a drill that did not ask for outside channels)
    attempt: int = 0  # 0 for the first notice, n for the n-th repeat
    rung_label: str = ""

    @property
    def key(self) -> str:
        """Stable idempotency key of this notice (one per step and contact)."""
        return f"{self.alarm_id}/{self.step}/{self.contact.id}"


class NoteKind(StrEnum):
    PAGED = "paged"
    DEPUTY = "deputy"  # the holder was away; the deputy was paged
    VACANCY = "vacancy"  # nobody in the seat
    NOT_APPLICABLE = "not_applicable"  # an optional rung with nobody (no family on record)
    REPEATED = "repeated"
    DEADLINE_MISSED = "deadline_missed"
    TREATED_REAL = "treated_real"
    VERIFIED = "verified"
    RESPONSE = "response"
    DECLINED = "declined"
    EXHAUSTED = "exhausted"
    STOPPED = "stopped"
    REOPENED = "reopened"  # a new round: the alarm is live and unacknowledged again
    SEVERITY_RAISED = "severity_raised"
    OBSERVED = "observed"  # a move the alarm service committed (the console), recorded by the ladder
    CALLBACK_OPENED = "callback_opened"  # 回访 task opened (due_ms: its deadline)
    CALLBACK_OUTCOME = "callback_outcome"  # detail: "<actor>: <outcome>[ (note)]"
    CALLBACK_EXPIRED = "callback_expired"  # nobody recorded an outcome in time: the ladder climbed


@dataclass(frozen=True, slots=True)
class Note:
    """Something for the record (the audit trail and the statistics), not a message to anyone."""

    alarm_id: str
    step: int
    kind: NoteKind
    at_ms: int
    rung: str | None = None
    field_state: AlarmState | None = None
    detail: str = ""
    due_ms: int | None = None  # for timer firings: when it was due (at_ms - due_ms is how late)


LadderAction = Notify | Note
Decision = tuple[EscalationState, list[LadderAction]]


class TimerKind(StrEnum):
    CALLBACK = "callback"
    DEADLINE = "deadline"
    VERIFY = "verify"
    REPEAT = "repeat"


# a call-back due with the caller's own deadline fires first: the family is paged with the first climb
_KIND_ORDER: Final = {TimerKind.CALLBACK: 0, TimerKind.DEADLINE: 1, TimerKind.VERIFY: 2, TimerKind.REPEAT: 3}


@dataclass(frozen=True, slots=True)
class Timer:
    due_ms: int
    kind: TimerKind
    rung: str | None = None
    field_state: AlarmState | None = None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# -- timers, derived --------------------------------------------------------------------------------------


def timers(state: EscalationState, policies: PolicySet) -> list[Timer]:
    """Every pending timer of this escalation, earliest first (none once stopped)."""
    if state.stopped is not None:
        return []
    out: list[Timer] = []
    policy = policies.by_name.get(state.policy)
    for e in state.engagements:
        rung = policies.rungs.get(e.rung)
        if rung is None or not e.contacts:
            continue
        for fs, seconds in rung.deadlines:
            if fs not in e.missed and field_rank(e.progress) < field_rank(fs):
                out.append(Timer(e.engaged_ms + _ms(seconds), TimerKind.DEADLINE, e.rung, fs))
        if rung.repeat is not None and e.progress is None and e.repeats < rung.repeat.times:
            out.append(Timer(e.engaged_ms + (e.repeats + 1) * _ms(rung.repeat.every_s), TimerKind.REPEAT, e.rung))
    if policy is not None and policy.verify_window_s is not None and state.verified_ms is None and state.treated_real_ms is None:
        since = state.started_ms if state.entered_ms is None else state.entered_ms
        out.append(Timer(since + _ms(policy.verify_window_s), TimerKind.VERIFY))
    cb = state.callback
    if cb is not None and cb.open and cb.expired_ms is None and (due := callback_deadline(state, policies)) is not None:
        out.append(Timer(due, TimerKind.CALLBACK, cb.rung))
    out.sort(key=lambda t: (t.due_ms, _KIND_ORDER[t.kind], t.rung or ""))
    return out


def callback_deadline(state: EscalationState, policies: PolicySet) -> int | None:
    """When the call-back must have an outcome: re-derived from the stored opening and the policy's rule."""
    policy = policies.by_name.get(state.policy)
    if state.callback is None or policy is None or policy.callback is None:
        return None
    return state.callback.opened_ms + _ms(policy.callback.answer_within_s)


def next_due(state: EscalationState, policies: PolicySet) -> int | None:
    pending = timers(state, policies)
    return pending[0].due_ms if pending else None


# -- paging ---------------------------------------------------------------------------------------------


class _Step:
    """Collects the actions of one step while the state is rebuilt."""

    def __init__(self, state: EscalationState, policies: PolicySet, roster: Roster, now_ms: int) -> None:
        self.state = state
        self.policies = policies
        self.policy: Policy = policies.by_name[state.policy]
        self.roster = roster
        self.now = now_ms
        self.actions: list[LadderAction] = []

    def note(self, kind: NoteKind, rung: str | None = None, detail: str = "", field_state: AlarmState | None = None, due_ms: int | None = None) -> None:
        self.actions.append(Note(self.state.alarm_id, self.state.step, kind, self.now, rung, field_state, detail, due_ms))

    def notify(self, rung: str, contact: Contact, reason: NotifyReason, attempt: int = 0) -> None:
        facts = self.state.facts
        r = self.policies.rungs.get(rung)
        channels = r.channels if r is not None else ("console",)
        label = r.label if r is not None else "值班控制台"
        outside = (not facts.drill) or facts.drill_outside
        self.actions.append(Notify(facts.alarm_id, self.state.step, rung, contact, reason, channels, facts.drill, outside, attempt, label))

    def put(self, e: Engagement) -> None:
        others = tuple(x for x in self.state.engagements if x.rung != e.rung)
        self.state = dataclasses.replace(self.state, engagements=(*others, e) if self.state.engagement(e.rung) is None else
                                         tuple(e if x.rung == e.rung else x for x in self.state.engagements))

    def engage(self, name: str, reason: NotifyReason) -> None:
        if self.state.engagement(name) is not None:
            return
        rung = self.policies.rung(name)
        fill = self.roster.fill(rung.seat, self.state.facts.where, self.now, skill=rung.skill)
        contacts = fill.contacts[: rung.count] if rung.seat is Seat.VOLUNTEERS else fill.contacts
        if not contacts:
            self.put(Engagement(name, self.now, (), Fill.VACANT))
            if rung.optional:
                self.note(NoteKind.NOT_APPLICABLE, name, fill.note or "nobody on record")
                return
            self.note(NoteKind.VACANCY, name, fill.note or f"{rung.label or name}: nobody on duty")
            self.climb(name, NotifyReason.VACANCY)
            return
        self.put(Engagement(name, self.now, contacts, fill.via, offered=tuple(c.id for c in contacts)))
        if fill.via is Fill.DEPUTY:
            self.note(NoteKind.DEPUTY, name, fill.note)
        self.note(NoteKind.PAGED, name, ", ".join(c.id for c in contacts))
        for c in contacts:
            self.notify(name, c, reason)

    def climb(self, from_rung: str, reason: NotifyReason) -> None:
        """Page the next rung up: the rung's on_miss, else the first ladder rung not yet paged."""
        target = _climb_target(self.state, self.policies, from_rung)
        if target is not None:
            self.engage(target, reason)
        else:
            self.exhaust()

    def exhaust(self) -> None:
        if self.state.exhausted:
            return
        self.state = dataclasses.replace(self.state, exhausted=True)
        self.note(NoteKind.EXHAUSTED, CONSOLE_RUNG, "every rung has been paged; the duty console holds the alarm")
        self.put(Engagement(CONSOLE_RUNG, self.now, (CONSOLE,), Fill.HOLDER, offered=(CONSOLE.id,)))
        self.notify(CONSOLE_RUNG, CONSOLE, NotifyReason.EXHAUSTED)

    def ensure_staffed(self) -> None:
        if self.state.staffed:
            return
        if not self.state.exhausted:
            self.exhaust()
            return
        self.put(Engagement(CONSOLE_RUNG, self.now, (CONSOLE,), Fill.HOLDER, offered=(CONSOLE.id,)))
        self.notify(CONSOLE_RUNG, CONSOLE, NotifyReason.EXHAUSTED)


def _climb_target(state: EscalationState, policies: PolicySet, from_rung: str) -> str | None:
    """The rung a miss on `from_rung` climbs to: its on_miss, else the first ladder rung not yet paged (None: the console)."""
    policy = policies.by_name[state.policy]
    rung = policies.rungs.get(from_rung)
    engaged = {e.rung for e in state.engagements}
    candidates = [rung.on_miss] if rung is not None and rung.on_miss is not None else []
    candidates += [n for n in (*policy.ladder, *policy.verify_escalate_to) if n not in policy.entry]
    return next((n for n in candidates if n not in engaged), None)


def _bump(state: EscalationState) -> EscalationState:
    return dataclasses.replace(state, step=state.step + 1)


def start(facts: AlarmFacts, policies: PolicySet, roster: Roster, now_ms: int, *, alarm_seq: int = 0) -> Decision:
    """Open an escalation for a new alarm: page every entry rung at once."""
    policy = policies.select(facts.alarm_type, facts.severity, vulnerable=facts.where.vulnerable, drill=facts.drill)
    s = _Step(EscalationState(facts, policy.name, now_ms, step=1, alarm_seq=alarm_seq), policies, roster, now_ms)
    _page_entry(s, policy, NotifyReason.PAGE)
    _open_callback(s, policy)
    return s.state, s.actions


def _open_callback(s: _Step, policy: Policy) -> None:
    if policy.callback is None:
        return
    s.state = dataclasses.replace(s.state, callback=Callback(policy.callback.rung, s.now))
    s.note(NoteKind.CALLBACK_OPENED, policy.callback.rung, "call the resident back and record the outcome",
           due_ms=callback_deadline(s.state, s.policies))


def _page_entry(s: _Step, policy: Policy, reason: NotifyReason) -> None:
    for name in policy.entry:
        s.engage(name, reason)
    s.ensure_staffed()


def reopen(  # noqa: PLR0917 (the (state, event, now) shape, spelt out)
    state: EscalationState, facts: AlarmFacts, policies: PolicySet, roster: Roster, now_ms: int, alarm_seq: int, why: str = "",
) -> Decision:
    """The alarm is live and unacknowledged again: a new round from the entry rungs, once per opening entry.

    `alarm_seq` is the alarm's audit entry that made it live again; a round already opened at that entry or a
    later one makes this a no-op, so a live notice and the restart's re-derivation never page twice. A round
    still chasing its first answer (not stopped, nobody answered) goes on as it is: at most one new round per
    answered round, so a flapping detector does not page everyone at every flap; a round that climbed to its end
    unanswered is over, and a new one starts."""
    if alarm_seq <= state.alarm_seq:
        return state, []
    if state.stopped is None and not state.reached and not state.exhausted:
        # the round is still chasing its first answer (a flapping detector alarms again before anyone answered):
        # those pages, repeats and deadlines stand; a new round now would only page the same people again. A round
        # that has climbed to its end unanswered (`exhausted`) is not "chasing": an alarm live again after it (a
        # detector alarming hours later) opens a new round and pages the entry rungs again.
        s = _Step(dataclasses.replace(_bump(state), alarm_seq=alarm_seq), policies, roster, now_ms)
        s.note(NoteKind.REOPENED, None, "live again while this round still waits for its first answer: no new round" + (f" ({why})" if why else ""))
        return s.state, s.actions
    policy = policies.select(facts.alarm_type, facts.severity, vulnerable=facts.where.vulnerable, drill=facts.drill)
    fresh = EscalationState(facts, policy.name, now_ms, step=state.step + 1, round=state.round + 1, alarm_seq=alarm_seq)
    s = _Step(fresh, policies, roster, now_ms)
    s.note(NoteKind.REOPENED, None, f"round {fresh.round}" + (f": {why}" if why else ""))
    _page_entry(s, policy, NotifyReason.REOPENED)
    _open_callback(s, policy)  # pressed again after the round ended: a new call-back
    return s.state, s.actions


def raise_severity(state: EscalationState, severity: Severity, policies: PolicySet, roster: Roster, now_ms: int) -> Decision:
    """The open alarm's severity rose: re-enter at the entry rungs of the policy it now selects.

    Rungs already engaged keep their clock (nobody is paged twice for it); a rung the new entry adds is paged
    now, and the new policy's ladder and verify window (counted from now) apply. A stopped ladder, or a severity
    that is not higher, changes nothing."""
    old = state.facts.severity
    if state.stopped is not None or severity.rank <= old.rank:
        return state, []
    facts = dataclasses.replace(state.facts, severity=severity)
    policy = policies.select(facts.alarm_type, severity, vulnerable=facts.where.vulnerable, drill=facts.drill)
    moved = policy.name != state.policy
    s = _Step(dataclasses.replace(_bump(state), facts=facts, policy=policy.name, entered_ms=now_ms if moved else state.entered_ms),
              policies, roster, now_ms)
    s.note(NoteKind.SEVERITY_RAISED, None, f"{old.value} -> {severity.value}" + (f"; policy {state.policy} -> {policy.name}" if moved else ""))
    for name in policy.entry:
        s.engage(name, NotifyReason.SEVERITY)
    s.ensure_staffed()
    return s.state, s.actions


def _command_room(e: Engagement, policies: PolicySet) -> bool:
    rung = policies.rungs.get(e.rung)
    return e.rung == CONSOLE_RUNG or (rung is not None and rung.seat is Seat.DUTY_OFFICER)


def observe(  # noqa: PLR0917 (the (state, event, now) shape, spelt out)
    state: EscalationState, reached: AlarmState, actor: str, policies: PolicySet, roster: Roster, now_ms: int,
) -> Decision:
    """`actor` brought the alarm to the field state `reached`: a person's move the alarm service committed (the
    console, a one-tap link), or a responder's answer the alarm had already passed (another rung got there
    first). Record the field state and the progress of the rungs it covers; never asks for a move back. Nothing
    new (the same answer seen twice): no step at all. A state off the field path, or the system: nothing.

    Covered rungs: the rungs `actor` was paged on; a person paged on none (the duty officer on the console)
    answers for the command room's rungs (console, duty officer), not for the field rungs."""
    fs = reached
    if fs not in FIELD_ORDER or actor == SYSTEM_ACTOR:
        return state, []
    mine = [e for e in state.engagements if e.has(actor)]
    own = bool(mine) or any(actor in e.offered for e in state.engagements)
    if not own:
        mine = [e for e in state.engagements if _command_room(e, policies)]
    engagements = tuple(dataclasses.replace(e, progress=fs) if e in mine and field_rank(fs) > field_rank(e.progress) else e
                        for e in state.engagements)
    first = dict(state.reached)
    for x in FIELD_ORDER[: field_rank(fs)]:
        first.setdefault(x, now_ms)
    if engagements == state.engagements and len(first) == len(state.reached):
        return state, []
    s = _Step(dataclasses.replace(_bump(state), engagements=engagements,
                                  reached=tuple(sorted(first.items(), key=lambda kv: field_rank(kv[0])))), policies, roster, now_ms)
    move = next(m for m, reached_by in FIELD_MOVES.items() if reached_by is fs)  # the lifecycle's name of the step
    # a paged person answers for their own rungs (the note's rung names the first); anyone else for the command room's
    covered = "" if own else f" (covers {', '.join(e.rung for e in mine) or '-'})"
    s.note(NoteKind.OBSERVED, mine[0].rung if mine else None, f"{actor}: {move.value}{covered}", fs)
    if field_rank(fs) >= field_rank(AlarmState.ON_SCENE):
        _verify(s, f"{actor} is on scene")
    if fs in s.policy.stop_on and s.state.stopped is None:
        _stop(s, fs.value)
    return s.state, s.actions


@dataclass(frozen=True, slots=True)
class RungStatus:
    """One rung as the console shows it: who, how far, and when it climbs if nobody answers."""

    rung: str
    label: str
    contacts: tuple[Contact, ...]
    state: str  # waiting | acknowledged | en_route | on_scene | handled | closed | vacant | not_applicable | declined | stopped
    engaged_ms: int
    waits_for: AlarmState | None  # the field state whose deadline runs next on this rung
    climbs_at_ms: int | None  # that deadline: missed, the ladder climbs to the next rung
    repeats_at_ms: int | None  # the next repeat notice to this rung (only while nobody on it acknowledged)
    missed: tuple[AlarmState, ...]
    command_room: bool  # answered by the duty officer's acknowledgement on the console
    climbs_to: str | None  # the rung paged if that deadline is missed (None: the duty console holds the alarm)


def rung_status(state: EscalationState, policies: PolicySet) -> list[RungStatus]:
    """Every engaged rung, in the order they were engaged, with its pending deadline and repeat."""
    pending = timers(state, policies)
    out: list[RungStatus] = []
    for e in state.engagements:
        rung = policies.rungs.get(e.rung)
        deadline = next((t for t in pending if t.rung == e.rung and t.kind is TimerKind.DEADLINE), None)
        repeat = next((t for t in pending if t.rung == e.rung and t.kind is TimerKind.REPEAT), None)
        if not e.contacts:
            what = "declined" if e.declined else ("not_applicable" if rung is not None and rung.optional else "vacant")
        elif state.stopped is not None and e.progress is None:
            what = "stopped"
        else:
            what = e.progress.value if e.progress is not None else "waiting"
        out.append(RungStatus(e.rung, rung.label if rung is not None else "值班控制台", e.contacts, what, e.engaged_ms,
                              deadline.field_state if deadline else None, deadline.due_ms if deadline else None,
                              repeat.due_ms if repeat else None, e.missed, _command_room(e, policies),
                              _climb_target(state, policies, e.rung) if deadline else None))
    return out


def advance(state: EscalationState, policies: PolicySet, roster: Roster, now_ms: int) -> Decision:
    """Fire every timer due at `now_ms`, earliest first; each firing is its own step."""
    actions: list[LadderAction] = []
    while True:
        due = [t for t in timers(state, policies) if t.due_ms <= now_ms]
        if not due:
            return state, actions
        state, more = _fire(_bump(state), due[0], policies, roster, now_ms)
        actions += more


def _fire(state: EscalationState, t: Timer, policies: PolicySet, roster: Roster, now_ms: int) -> Decision:
    s = _Step(state, policies, roster, now_ms)
    if t.kind is TimerKind.REPEAT:
        assert t.rung is not None
        e = state.engagement(t.rung)
        assert e is not None
        rung = policies.rung(e.rung)
        assert rung.repeat is not None
        # repeats that fell due while the process was down collapse into one notice (no burst of stale pages)
        owed = min(rung.repeat.times, (now_ms - e.engaged_ms) // _ms(rung.repeat.every_s))
        e = dataclasses.replace(e, repeats=max(e.repeats + 1, owed))
        s.put(e)
        s.note(NoteKind.REPEATED, e.rung, f"repeat {e.repeats}", due_ms=t.due_ms)
        for c in e.contacts:
            s.notify(e.rung, c, NotifyReason.REPEAT, attempt=e.repeats)
    elif t.kind is TimerKind.CALLBACK:
        assert state.callback is not None
        s.state = dataclasses.replace(s.state, callback=dataclasses.replace(state.callback, expired_ms=now_ms))
        s.note(NoteKind.CALLBACK_EXPIRED, t.rung, "no call-back outcome in time: treated as no answer", due_ms=t.due_ms)
        _callback_climb(s)
    elif t.kind is TimerKind.DEADLINE:
        assert t.rung is not None
        assert t.field_state is not None
        e = state.engagement(t.rung)
        assert e is not None
        s.put(dataclasses.replace(e, missed=(*e.missed, t.field_state)))
        s.note(NoteKind.DEADLINE_MISSED, t.rung, f"{t.field_state.value} not reached in time", t.field_state, t.due_ms)
        s.climb(t.rung, NotifyReason.ESCALATE)
    else:
        s.state = dataclasses.replace(s.state, treated_real_ms=now_ms)
        s.note(NoteKind.TREATED_REAL, None, "nobody verified in time: treated as real", due_ms=t.due_ms)
        for name in s.policy.verify_escalate_to:
            s.engage(name, NotifyReason.UNVERIFIED)
        s.notify(CONSOLE_RUNG, CONSOLE, NotifyReason.UNVERIFIED)
    s.ensure_staffed()
    return s.state, s.actions


# -- answers ------------------------------------------------------------------------------------------------


def decline(  # noqa: PLR0917 (the (state, event, now) shape, spelt out)
    state: EscalationState, actor: str, policies: PolicySet, roster: Roster, now_ms: int, note: str = "",
) -> Decision:
    """无法前往: `actor` (a contact the ladder paged) cannot come. No lifecycle move: the rung passes on at once
    (a volunteer rung pages the next volunteer, any other climbs once nobody is left on it)."""
    mine = [e for e in state.engagements if e.has(actor)]
    if not mine or actor == CONSOLE.id:
        raise UnknownResponder(state.alarm_id, actor)  # the console is the last resort: it cannot decline
    s = _Step(_bump(state), policies, roster, now_ms)
    s.note(NoteKind.RESPONSE, mine[0].rung, f"{actor}: decline" + (f" ({note})" if note else ""))
    if state.stopped is None:
        for e in mine:
            _decline(s, e, actor)
        s.ensure_staffed()
    return s.state, s.actions


def record_callback(  # noqa: PLR0917 (the (state, event, now) shape, spelt out)
    state: EscalationState, outcome: CallbackOutcome, actor: str, policies: PolicySet, roster: Roster, now_ms: int, note: str = "",
) -> Decision:
    """回访结果: `actor` called the resident back and records `outcome` (once). No answer or needs help pages the
    family (the rule's `escalate_to`) and climbs from the call-back's rung at once, unless the deadline already
    did; answered-fine and false press climb nothing (the backend closes the alarm through the lifecycle)."""
    cb = state.callback
    if cb is None:
        raise NoCallback(state.alarm_id)
    if cb.outcome is not None:
        raise CallbackRecorded(state.alarm_id, cb.outcome)
    if state.stopped is not None:
        raise CallbackClosed(state.alarm_id, state.stopped)
    s = _Step(_bump(state), policies, roster, now_ms)
    s.state = dataclasses.replace(s.state, callback=dataclasses.replace(cb, outcome=outcome, outcome_ms=now_ms, actor=actor, note=note))
    s.note(NoteKind.CALLBACK_OUTCOME, cb.rung, f"{actor}: {outcome.value}" + (f" ({note})" if note else ""))
    if outcome.climbs:
        _callback_climb(s)
    return s.state, s.actions


def _callback_climb(s: _Step) -> None:
    """Page the family (the rule's escalate_to) and climb one rung from the caller's: once per call-back."""
    cb, rule = s.state.callback, s.policy.callback
    if cb is None or cb.climbed_ms is not None:
        return
    s.state = dataclasses.replace(s.state, callback=dataclasses.replace(cb, climbed_ms=s.now))
    for name in rule.escalate_to if rule is not None else ():
        s.engage(name, NotifyReason.CALLBACK)
    s.climb(cb.rung, NotifyReason.CALLBACK)
    s.ensure_staffed()


def verify(  # noqa: PLR0917 (the (state, event, now) shape, spelt out)
    state: EscalationState, actor: str, policies: PolicySet, roster: Roster, now_ms: int, note: str = "",
) -> Decision:
    """核实属实: `actor` verified the alarm as real without being on scene. No lifecycle move: the verify window
    is spent (the ladder stops waiting to treat it as real). Already verified: nothing."""
    if state.verified_ms is not None:
        return state, []
    s = _Step(_bump(state), policies, roster, now_ms)
    _verify(s, f"confirmed by {actor}")
    return s.state, s.actions


def _verify(s: _Step, why: str) -> None:
    if s.state.verified_ms is None:
        s.state = dataclasses.replace(s.state, verified_ms=s.now)
        s.note(NoteKind.VERIFIED, None, why)


def _decline(s: _Step, e: Engagement, actor: str) -> None:
    rung: Rung | None = s.policies.rungs.get(e.rung)
    left = tuple(c for c in e.contacts if c.id != actor)
    e = dataclasses.replace(e, contacts=left, declined=(*e.declined, actor))
    s.note(NoteKind.DECLINED, e.rung, actor)
    if rung is not None and rung.seat is Seat.VOLUNTEERS:
        fill = s.roster.fill(rung.seat, s.state.facts.where, s.now, skill=rung.skill, exclude=frozenset(e.offered))
        fresh = tuple(c for c in fill.contacts if c.id not in e.offered)[: rung.count - len(left)]
        if fresh:
            # the next volunteer gets the rung's full time, from now
            e = dataclasses.replace(e, contacts=(*left, *fresh), offered=(*e.offered, *(c.id for c in fresh)), engaged_ms=s.now, repeats=0)
            s.put(e)
            s.note(NoteKind.PAGED, e.rung, ", ".join(c.id for c in fresh))
            for c in fresh:
                s.notify(e.rung, c, NotifyReason.DECLINED)
            return
    s.put(e)
    if not e.contacts:
        s.climb(e.rung, NotifyReason.DECLINED)


def _stop(s: _Step, reason: str) -> None:
    s.state = dataclasses.replace(s.state, stopped=reason, stopped_ms=s.now)
    s.note(NoteKind.STOPPED, None, reason)


def stop(state: EscalationState, reason: str, now_ms: int) -> Decision:
    """The alarm ended elsewhere (closed, resolved, silenced): the ladder stops."""
    if state.stopped is not None:
        return state, []
    state = _bump(state)
    s_state = dataclasses.replace(state, stopped=reason, stopped_ms=now_ms)
    return s_state, [Note(state.alarm_id, state.step, NoteKind.STOPPED, now_ms, None, None, reason)]
