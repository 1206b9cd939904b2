"""The alarm book: open alarms by key, and the pure rules of how signals and people's moves change them.

How this works: `transition(alarm, move, actor, now)` is the one way an alarm's state changes: it checks the
actor, looks the move up in the lifecycle table, and returns the new alarm and its audit entry (or raises,
leaving everything as it was). `AlarmBook` holds the open alarms in memory (no I/O, no clock: `now_ms` is
always an argument) and turns each `Signal` or move into `Persist` actions for the service to store.

Invariants:
- at most one open alarm per `AlarmKey`; a raise while one is open is a repeat (occurrences + 1, last seen);
- severity only rises on a repeat, with an audit annotation; nothing here ever lowers it;
- a life-safety alarm never closes on a device clear or silence: a clear moves it to AWAITING_VERIFICATION,
  and only a person's VERIFY_CLOSE / MARK_FALSE ends it;
- a key that changes raise/clear `flap_changes` times within `flap_window_s` is flapping: the alarm says
  so, and a flapping technical alarm is not resolved on a clear until the key has been quiet a full window;
- an alarm raised while its cause is open starts SUPPRESSED; once the cause has closed and stayed closed
  for `unsuppress_grace_s`, a still-open effect is unsuppressed (it was a real problem after all);
- maintenance windows (`windows`, one per subject, put and dropped by backend/alarms/maintenance.py) silence
  the subject's alarms; a life-safety alarm only under a window with `life_safety` (an explicit override).
  When a window ends (on time, early, or found over at a restart) each alarm it held is re-evaluated: a
  life-safety alarm whose device cleared during the window (`cleared_in_window`, kept in the audit log as
  annotations so a restart re-derives it) goes to AWAITING_VERIFICATION, every other one back to RAISED, live.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alerting.lifecycle import (
    CLOSED_STATES,
    SYSTEM_ACTOR,
    TRANSITIONS,
    AlarmState,
    IllegalMove,
    LifecycleError,
    Move,
    check_actor,
    next_state,
)
from alerting.model import Alarm, AlarmKey, AuditEntry, Persist, Severity, Signal, SignalKind, evolve

__all__ = ["IN_WINDOW_AGAIN", "IN_WINDOW_CLEARED", "AlarmBook", "BookSettings", "MaintenanceWindow", "UnknownAlarm", "replay", "transition"]

# Audit annotations (alerting.model.ANNOTATIONS) of a silenced life-safety alarm's device during its window.
IN_WINDOW_CLEARED = "cleared_in_window"
IN_WINDOW_AGAIN = "alarm_in_window"


class UnknownAlarm(LifecycleError):
    def __init__(self, alarm_id: str) -> None:
        self.alarm_id = alarm_id
        super().__init__(f"no open alarm with id {alarm_id!r}")


@dataclass(frozen=True, slots=True)
class BookSettings:
    flap_changes: int = 4  # raise/clear changes of one key within the window that make it flapping
    flap_window_s: float = 600.0
    unsuppress_grace_s: float = 300.0  # a camera needs a few minutes to boot after the power comes back


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    subject: str
    until_ms: int
    author: str
    note: str = ""
    life_safety: bool = False  # an explicit override: this window may silence life-safety alarms too

    def holds(self, alarm: Alarm) -> bool:
        return self.life_safety or not alarm.life_safety


def _device_subject(subject: str) -> str:
    """The subject a maintenance window names: a device's channel alarms (`device:x@2`) fall under `device:x`."""
    return subject.partition("@")[0]


def transition(alarm: Alarm, move: Move, actor: str, now_ms: int, note: str = "", **changes: object) -> tuple[Alarm, AuditEntry]:
    """The alarm after `move` and the audit entry that records it; raises and changes nothing if illegal."""
    check_actor(move, actor, life_safety=alarm.life_safety)
    new_state = next_state(alarm.state, move)
    entry = AuditEntry(alarm.id, alarm.audit_seq, now_ms, actor, move.value, alarm.state, new_state, note, alarm.drill)
    updated = evolve(alarm, state=new_state, updated_ms=now_ms, audit_seq=alarm.audit_seq + 1, **changes)
    return updated, entry


def _annotate(alarm: Alarm, what: str, now_ms: int, note: str, **changes: object) -> tuple[Alarm, AuditEntry]:
    entry = AuditEntry(alarm.id, alarm.audit_seq, now_ms, SYSTEM_ACTOR, what, alarm.state, alarm.state, note, alarm.drill)
    return evolve(alarm, audit_seq=alarm.audit_seq + 1, updated_ms=now_ms, **changes), entry


def replay(entries: Sequence[AuditEntry]) -> AlarmState:
    """Re-run an alarm's audit log through the table; the result must equal the stored state."""
    state: AlarmState | None = None
    for e in sorted(entries, key=lambda e: e.seq):
        if e.move == "raise":
            if state is not None:
                raise IllegalMove(state, Move.RECUR, "a second 'raise' entry in one alarm's log")
            state = e.to_state
        elif not e.is_transition:
            continue
        else:
            if state is None or e.from_state != state:
                raise IllegalMove(state or AlarmState.RAISED, Move(e.move), f"entry {e.seq} starts from {e.from_state}, log is at {state}")
            state = next_state(state, Move(e.move))
    if state is None:
        raise ValueError("an empty audit log replays to nothing")
    return state


class AlarmBook:
    def __init__(self, settings: BookSettings | None = None, id_prefix: str = "A") -> None:
        self.settings = settings or BookSettings()
        self.id_prefix = id_prefix
        self.open: dict[AlarmKey, Alarm] = {}
        self.windows: dict[str, MaintenanceWindow] = {}
        self.cleared_in_window: set[AlarmKey] = set()  # silenced life-safety alarms whose device has cleared since
        self._by_id: dict[str, AlarmKey] = {}
        self._seq = 0
        self._changes: dict[AlarmKey, tuple[int, ...]] = {}
        self._pending_clear: dict[AlarmKey, int] = {}  # flapping technical alarms waiting to be quiet

    # -- reading ------------------------------------------------------------------------------------
    def get(self, alarm_id: str) -> Alarm | None:
        key = self._by_id.get(alarm_id)
        return self.open.get(key) if key is not None else None

    def is_open(self, key: AlarmKey) -> bool:
        return key in self.open

    def load(self, alarms: Iterable[Alarm]) -> None:
        """Take the open alarms back from the store after a restart."""
        for a in alarms:
            if a.is_open:
                self._put(a)

    # -- signals from rules -------------------------------------------------------------------------
    def signal(self, sig: Signal, now_ms: int) -> list[Persist]:
        if sig.kind is SignalKind.RAISE:
            return self._raise(sig, now_ms)
        return self._clear(sig, now_ms)

    def _raise(self, sig: Signal, now_ms: int) -> list[Persist]:
        key = sig.key
        current = self.open.get(key)
        if current is None:
            return self._create(sig, key, now_ms)
        audit: list[AuditEntry] = []
        a = evolve(
            current, occurrences=current.occurrences + (0 if sig.refresh_detail else 1), last_seen_ms=max(current.last_seen_ms, sig.seen_ms),
            updated_ms=now_ms, needs_callback=current.needs_callback or sig.needs_callback,
        )
        self._pending_clear.pop(key, None)
        if sig.refresh_detail and sig.detail is not None:
            a = evolve(a, detail=sig.detail)
        if sig.severity.rank > a.severity.rank:
            # The ladder bridge re-enters the ladder at the new severity's entry point on this entry (docs/alerting.md).
            note = f"{a.severity.value} -> {sig.severity.value}" + (f"; {sig.trend}" if sig.trend else "")
            a, e = _annotate(a, "severity_raised", now_ms, note, severity=sig.severity, detail=sig.detail or a.detail)
            audit.append(e)
        if a.state is AlarmState.SILENCED and key in self.cleared_in_window:
            self.cleared_in_window.discard(key)
            a, e = _annotate(a, IN_WINDOW_AGAIN, now_ms, "the device alarms again during the maintenance window")
            audit.append(e)
        if a.state is AlarmState.AWAITING_VERIFICATION:
            a, e = transition(a, Move.RECUR, SYSTEM_ACTOR, now_ms, "the device alarms again")
            audit.append(e)
            a, more = self._note_change(a, now_ms)
            audit += more
        self._put(a)
        return [Persist(a, tuple(audit))]

    def _create(self, sig: Signal, key: AlarmKey, now_ms: int) -> list[Persist]:
        self._seq += 1
        changes = self._record_change(key, now_ms)  # into the new alarm as it is built: not copied once more for it
        a = Alarm(
            id=f"{self.id_prefix}{self._seq}", key=key, state=AlarmState.RAISED, severity=sig.severity,
            life_safety=sig.life_safety, title=sig.title or sig.alarm_type, place=sig.place, occurrences=1,
            first_seen_ms=sig.seen_ms, last_seen_ms=sig.seen_ms, raised_at_ms=now_ms, updated_ms=now_ms, audit_seq=1,
            needs_callback=sig.needs_callback, recent_changes_ms=changes[-self.settings.flap_changes :], detail=sig.detail,
            source_msg_id=sig.source_msg_id,
        )
        audit = [AuditEntry(a.id, 0, now_ms, SYSTEM_ACTOR, "raise", None, AlarmState.RAISED, sig.detail or "", a.drill)]
        if sig.cause is not None and AlarmKey.parse(sig.cause) in self.open:
            a, e = transition(a, Move.SUPPRESS, SYSTEM_ACTOR, now_ms, f"caused by {sig.cause}", cause=sig.cause)
            audit.append(e)
        else:
            window = self.windows.get(_device_subject(key.subject))
            if window is not None and window.until_ms > now_ms and window.holds(a):
                a, e = transition(a, Move.SILENCE, window.author, now_ms, f"maintenance window: {window.note}",
                                  silenced_until_ms=window.until_ms, silenced_by=window.author)
                audit.append(e)
        a, more = self._flap_check(a, changes, now_ms)
        audit += more
        self._put(a)
        return [Persist(a, tuple(audit))]

    def _clear(self, sig: Signal, now_ms: int) -> list[Persist]:
        key = sig.key
        a = self.open.get(key)
        if a is None:
            return []
        a = evolve(a, last_seen_ms=max(a.last_seen_ms, sig.seen_ms), updated_ms=now_ms)
        audit: list[AuditEntry] = []
        if a.life_safety and a.state is AlarmState.SILENCED:
            if key in self.cleared_in_window:
                self._put(a)
                return [Persist(a)]
            self.cleared_in_window.add(key)  # re-evaluated when the window ends
            a, e = _annotate(a, IN_WINDOW_CLEARED, now_ms, sig.detail or "the device cleared during the maintenance window")
            self._put(a)
            return [Persist(a, (e,))]
        if not a.life_safety and (a.state, Move.RESOLVE) in TRANSITIONS:
            a, more = self._note_change(a, now_ms)
            audit += more
            if a.flapping:
                self._pending_clear[key] = now_ms  # resolve once quiet for a window (tick)
                self._put(a)
                return [Persist(a, tuple(audit))]
            a, e = transition(a, Move.RESOLVE, SYSTEM_ACTOR, now_ms, sig.detail or "the device recovered")
            audit.append(e)
        elif (a.state, Move.DEVICE_CLEAR) in TRANSITIONS:
            a, e = transition(a, Move.DEVICE_CLEAR, SYSTEM_ACTOR, now_ms, sig.detail or "the device cleared; verify on site")
            audit.append(e)
            a, more = self._note_change(a, now_ms)
            audit += more
        else:
            return []  # silenced, suppressed, handled or already awaiting: a clear changes nothing
        return [Persist(a, tuple(audit)), *self._put(a, now_ms)]

    def _note_change(self, a: Alarm, now_ms: int) -> tuple[Alarm, list[AuditEntry]]:
        changes = self._record_change(a.key, now_ms)
        a = evolve(a, recent_changes_ms=changes[-self.settings.flap_changes :])
        return self._flap_check(a, changes, now_ms)

    def _record_change(self, key: AlarmKey, now_ms: int) -> tuple[int, ...]:
        """A change of `key`'s alarm now: the changes within the flap window, this one last (kept for the next)."""
        window_ms = round(self.settings.flap_window_s * 1000)
        changes = (*[t for t in self._changes.get(key, ()) if now_ms - t < window_ms], now_ms)
        self._changes[key] = changes[-self.settings.flap_changes * 2 :]
        return changes

    def _flap_check(self, a: Alarm, changes: tuple[int, ...], now_ms: int) -> tuple[Alarm, list[AuditEntry]]:
        if len(changes) >= self.settings.flap_changes and not a.flapping:
            a, e = _annotate(a, "flapping", now_ms, f"{len(changes)} changes within {self.settings.flap_window_s:.0f} s", flapping=True)
            return a, [e]
        return a, []

    # -- people's moves -----------------------------------------------------------------------------
    def move(self, alarm_id: str, move: Move, actor: str, now_ms: int, *, note: str = "", until_ms: int | None = None) -> list[Persist]:
        a = self.get(alarm_id)
        if a is None:
            raise UnknownAlarm(alarm_id)
        changes: dict[str, object] = {}
        if move is Move.SILENCE:
            if until_ms is None or until_ms <= now_ms:
                raise IllegalMove(a.state, move, "a silence needs an expiry in the future")
            if actor == SYSTEM_ACTOR:
                raise IllegalMove(a.state, move, "a silence needs a person as its author")
            changes = {"silenced_until_ms": until_ms, "silenced_by": actor}
        elif move is Move.UNSILENCE:
            changes = {"silenced_until_ms": None, "silenced_by": None}
        a, e = transition(a, move, actor, now_ms, note, **changes)
        return [Persist(a, (e,)), *self._put(a, now_ms)]

    def suppress(self, alarm_id: str, cause: str, now_ms: int) -> list[Persist]:
        """Suppress an open alarm because `cause` (an open alarm's key) explains it."""
        a = self.get(alarm_id)
        if a is None:
            raise UnknownAlarm(alarm_id)
        a, e = transition(a, Move.SUPPRESS, SYSTEM_ACTOR, now_ms, f"caused by {cause}", cause=cause, cause_closed_ms=None)
        self._put(a)
        return [Persist(a, (e,))]

    def add_window(self, window: MaintenanceWindow, now_ms: int) -> list[Persist]:
        """Open (or change the end of) a maintenance window on a subject: its open alarms and new ones are
        silenced until it ends; a life-safety alarm only when the window carries the override."""
        if window.until_ms <= now_ms or window.author == SYSTEM_ACTOR:
            raise LifecycleError("a maintenance window needs a person as author and an end in the future")
        self.windows[window.subject] = window
        out: list[Persist] = []
        for a in [a for k, a in self.open.items() if _device_subject(k.subject) == window.subject]:
            if not window.holds(a):
                if a.state is AlarmState.SILENCED:  # the override that held it is gone
                    out += self._release(a, now_ms, "the life-safety override of the maintenance window ended")
            elif a.state is AlarmState.SILENCED and a.silenced_until_ms != window.until_ms:
                changed = evolve(a, silenced_until_ms=window.until_ms, updated_ms=now_ms)  # extended or shortened
                self._put(changed)
                out.append(Persist(changed))
            elif (a.state, Move.SILENCE) in TRANSITIONS:
                out += self.move(a.id, Move.SILENCE, window.author, now_ms, note=f"maintenance window: {window.note}", until_ms=window.until_ms)
        return out

    def end_window(self, subject: str, now_ms: int, note: str = "maintenance window ended") -> list[Persist]:
        """The window on `subject` is over (on time or early): re-evaluate every alarm it held."""
        self.windows.pop(subject, None)
        out: list[Persist] = []
        for a in [a for k, a in self.open.items() if _device_subject(k.subject) == subject and a.state is AlarmState.SILENCED]:
            out += self._release(a, now_ms, note)
        return out

    def _release(self, a: Alarm, now_ms: int, note: str) -> list[Persist]:
        """A silence is over: a life-safety device that cleared meanwhile awaits verification; anything else is live."""
        if a.life_safety and a.key in self.cleared_in_window:
            self.cleared_in_window.discard(a.key)
            a, e = transition(a, Move.DEVICE_CLEAR, SYSTEM_ACTOR, now_ms, f"{note}; the device cleared during it: verify on site",
                              silenced_until_ms=None, silenced_by=None)
            return [Persist(a, (e,)), *self._put(a, now_ms)]
        return self.move(a.id, Move.UNSILENCE, SYSTEM_ACTOR, now_ms, note=f"{note}; the device is still in alarm" if a.life_safety else note)

    # -- time -----------------------------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Persist]:
        out: list[Persist] = []
        window_ms = round(self.settings.flap_window_s * 1000)
        grace_ms = round(self.settings.unsuppress_grace_s * 1000)
        for subject in [s for s, w in self.windows.items() if w.until_ms <= now_ms]:
            out += self.end_window(subject, now_ms)
        for a in list(self.open.values()):
            if (a.state is AlarmState.SILENCED and a.silenced_until_ms is not None and a.silenced_until_ms <= now_ms
                    and _device_subject(a.key.subject) not in self.windows):
                out += self._release(a, now_ms, "maintenance window ended")
            elif a.state is AlarmState.SUPPRESSED and a.cause_closed_ms is not None and now_ms - a.cause_closed_ms >= grace_ms:
                out += self.move(a.id, Move.UNSUPPRESS, SYSTEM_ACTOR, now_ms, note=f"cause {a.cause} is over; this alarm remains")
            elif (cleared := self._pending_clear.get(a.key)) is not None and now_ms - cleared >= window_ms:
                del self._pending_clear[a.key]
                if (a.state, Move.RESOLVE) in TRANSITIONS:
                    a2, e = transition(a, Move.RESOLVE, SYSTEM_ACTOR, now_ms, "stable again after flapping")
                    out += [Persist(a2, (e,)), *self._put(a2, now_ms)]
        return out

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _put(self, a: Alarm, now_ms: int | None = None) -> list[Persist]:
        """Keep `a` (or drop it once closed); when a cause closes, its suppressed effects learn when."""
        if a.state in CLOSED_STATES:
            self.open.pop(a.key, None)
            self.cleared_in_window.discard(a.key)
            self._by_id.pop(a.id, None)
            self._pending_clear.pop(a.key, None)
            out: list[Persist] = []
            cause = str(a.key)
            for effect in [e for e in self.open.values() if e.cause == cause and e.cause_closed_ms is None]:
                when = now_ms if now_ms is not None else a.updated_ms
                changed = evolve(effect, cause_closed_ms=when, updated_ms=when)
                self.open[effect.key] = changed
                out.append(Persist(changed))
            return out
        self.open[a.key] = a
        self._by_id[a.id] = a.key
        return []

    def counts(self, *, drill: bool) -> dict[str, int]:
        """Open alarms per type, real and drill apart (they never mix)."""
        out: dict[str, int] = {}
        for k in self.open:
            if k.drill == drill:
                out[k.alarm_type] = out.get(k.alarm_type, 0) + 1
        return out

    @staticmethod
    def severity_of(alarms: Iterable[Alarm]) -> Severity:
        return max((a.severity for a in alarms), key=lambda s: s.rank, default=Severity.INFO)
