"""Hypothesis drives random signals, moves and time through the alarm book; the invariants must hold throughout.

- never two open alarms for one key (checked on what a store would hold after applying every action);
- a life-safety alarm never closes without a person as actor;
- every alarm's audit log replays through the table to its current state, with contiguous sequence numbers.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from alerting.book import AlarmBook, BookSettings, MaintenanceWindow, UnknownAlarm, replay
from alerting.lifecycle import CLOSED_STATES, SYSTEM_ACTOR, LifecycleError, Move
from alerting.model import Alarm, AuditEntry, Persist, Severity, Signal, SignalKind

T0 = 1_767_225_600_000
SUBJECTS = ["device:s1", "device:s2", "building:b1"]
TYPES = {"smoke": True, "comm_lost": False, "low_battery": False, "sos": True}
ACTORS = [SYSTEM_ACTOR, "officer:li", "grid:wang"]


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = AlarmBook(BookSettings(flap_changes=3, flap_window_s=60, unsuppress_grace_s=30))
        self.now = T0
        self.stored: dict[str, Alarm] = {}
        self.audit: dict[str, list[AuditEntry]] = {}

    def apply(self, actions: list[Persist]) -> None:
        for p in actions:
            self.stored[p.alarm.id] = p.alarm
            self.audit.setdefault(p.alarm.id, []).extend(p.audit)

    @rule(dt=st.integers(0, 120_000))
    def time_passes(self, dt: int) -> None:
        self.now += dt
        self.apply(self.book.tick(self.now))

    @rule(subject=st.sampled_from(SUBJECTS), alarm_type=st.sampled_from(sorted(TYPES)), drill=st.booleans(),
          severity=st.sampled_from(list(Severity)), caused=st.booleans())
    def raise_signal(self, subject: str, alarm_type: str, drill: bool, severity: Severity, caused: bool) -> None:
        cause = "building:b1|power_outage" if caused else None
        sig = Signal(SignalKind.RAISE, alarm_type, subject, self.now, severity, TYPES[alarm_type], drill, cause=cause)
        before = self.book.open.get(sig.key)
        self.apply(self.book.signal(sig, self.now))
        after = self.book.open[sig.key]
        if before is not None:
            assert after.id == before.id
            assert after.occurrences == before.occurrences + 1
            assert after.severity.rank >= before.severity.rank, "severity never falls silently"

    @rule(drill=st.booleans())
    def power_outage(self, drill: bool) -> None:
        self.apply(self.book.signal(Signal(SignalKind.RAISE, "power_outage", "building:b1", self.now, Severity.MAJOR, drill=False), self.now))

    @rule()
    def power_restored(self) -> None:
        self.apply(self.book.signal(Signal(SignalKind.CLEAR, "power_outage", "building:b1", self.now), self.now))

    @rule(subject=st.sampled_from(SUBJECTS), alarm_type=st.sampled_from(sorted(TYPES)), drill=st.booleans())
    def clear_signal(self, subject: str, alarm_type: str, drill: bool) -> None:
        self.apply(self.book.signal(Signal(SignalKind.CLEAR, alarm_type, subject, self.now, drill=drill), self.now))

    @rule(pick=st.integers(0, 50), move=st.sampled_from(list(Move)), actor=st.sampled_from(ACTORS), until=st.integers(-1000, 100_000))
    def person_moves(self, pick: int, move: Move, actor: str, until: int) -> None:
        if not self.book.open:
            return
        alarm = list(self.book.open.values())[pick % len(self.book.open)]
        try:
            self.apply(self.book.move(alarm.id, move, actor, self.now, note="by hypothesis", until_ms=self.now + until))
        except (LifecycleError, UnknownAlarm):
            assert self.book.get(alarm.id) == alarm, "an illegal move changed the alarm"

    @rule(subject=st.sampled_from(SUBJECTS), length=st.integers(1, 200_000))
    def maintenance_window(self, subject: str, length: int) -> None:
        self.apply(self.book.add_window(MaintenanceWindow(subject, self.now + length, "officer:li", "test"), self.now))

    @invariant()
    def one_open_alarm_per_key(self) -> None:
        open_keys = Counter(a.key for a in self.stored.values() if a.is_open)
        assert all(n == 1 for n in open_keys.values()), open_keys
        assert {a.key for a in self.stored.values() if a.is_open} == set(self.book.open)

    @invariant()
    def life_safety_never_closes_without_a_person(self) -> None:
        for a in self.stored.values():
            if a.life_safety and a.state in CLOSED_STATES:
                closing = [e for e in self.audit[a.id] if e.to_state in CLOSED_STATES and e.from_state not in CLOSED_STATES]
                assert closing, a
                assert all(e.actor != SYSTEM_ACTOR for e in closing), closing

    @invariant()
    def audit_replays_to_the_current_state(self) -> None:
        for alarm_id, entries in self.audit.items():
            assert [e.seq for e in entries] == list(range(len(entries))), "audit sequence has gaps"
            assert replay(entries) is self.stored[alarm_id].state
            assert self.stored[alarm_id].audit_seq == len(entries)

    @invariant()
    def drills_never_mix(self) -> None:
        for a in self.stored.values():
            assert all(e.drill == a.drill for e in self.audit[a.id])


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
