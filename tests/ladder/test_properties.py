"""Hypothesis: any mix of waiting, answers and vacancies keeps the ladder's invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.ladder import AlarmFacts, Notify, Seat, Where, advance, decline, observe, raise_severity, reopen, start, timers, verify
from alerting.ladder.engine import UnknownResponder
from alerting.lifecycle import AlarmState
from alerting.model import Severity
from tests.ladder.fakes import T0, FakeRoster, policies

PS = policies()
PEOPLE = ["gw1", "mfs-head", "mfs-m1", "bl1", "v1", "v2", "v3", "duty1", "family:h1:0", "console", "nobody"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=400_000)),
        st.tuples(st.sampled_from(["decline", "verify"]), st.sampled_from(PEOPLE)),  # the ladder's own events
        st.tuples(st.sampled_from(list(AlarmState)), st.sampled_from([*PEOPLE, "officer.li", "system"])),  # a committed state, observed
        st.tuples(st.just("reopen"), st.integers(min_value=0, max_value=6)),  # the alarm is live again (audit seq)
        st.tuples(st.just("severity"), st.sampled_from(list(Severity))),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(
    alarm_type=st.sampled_from(["smoke", "sos", "residual_current", "communication_lost"]),
    severity=st.sampled_from(list(Severity)),
    vulnerable=st.booleans(),
    vacant=st.sets(st.sampled_from([Seat.GRID_WORKER, Seat.FIRE_STATION, Seat.BUILDING_LEADER, Seat.DUTY_OFFICER])),
    steps=ops,
)
def test_invariants(alarm_type: str, severity: Severity, vulnerable: bool, vacant: set[Seat], steps: list[tuple[object, object]]) -> None:
    roster = FakeRoster()
    for seat in vacant:
        roster.vacate(seat)
    facts = AlarmFacts("A1", alarm_type, severity, T0, Where("c01", "g1", "b01", 1, "h1", vulnerable))
    state, _ = start(facts, PS, roster, T0)
    now = T0
    assert state.staffed, "an alarm never ends up with nobody"
    for op, arg in steps:
        before = state.step
        if op == "wait":
            assert isinstance(arg, int)
            now += arg
            state, acts = advance(state, PS, roster, now)
            assert all(t.due_ms > now for t in timers(state, PS)), "advance leaves nothing due behind"
        elif isinstance(op, AlarmState):
            assert isinstance(arg, str)
            state, acts = observe(state, op, arg, PS, roster, now)
            assert not [a for a in acts if isinstance(a, Notify)], "an observed move pages nobody"
        elif op == "reopen":
            assert isinstance(arg, int)
            seen = state.alarm_seq
            state, acts = reopen(state, state.facts, PS, roster, now, arg)
            assert (state.step > before) == (arg > seen), "one round per opening entry"
        elif op == "severity":
            assert isinstance(arg, Severity)
            state, acts = raise_severity(state, arg, PS, roster, now)
        elif op == "verify":
            assert isinstance(arg, str)
            state, acts = verify(state, arg, PS, roster, now)
        else:
            assert op == "decline"
            assert isinstance(arg, str)
            try:
                state, acts = decline(state, arg, PS, roster, now)
            except UnknownResponder:
                continue
        assert state.staffed
        assert all(before < a.step <= state.step for a in acts if isinstance(a, Notify))
        if state.stopped is not None:
            assert not timers(state, PS)
            assert not [a for a in advance(state, PS, roster, now + 10**9)[1] if isinstance(a, Notify)]
