"""The SOS call-back (回访) in the pure ladder, on a virtual clock: time is an argument, nothing sleeps.

An SOS press opens a call-back for the grid worker; the deadline passing, no answer or needs help pages the
family and climbs at once; answered-fine and false press climb nothing (the backend closes the alarm).
"""

from __future__ import annotations

import copy

import pytest

from alerting.ladder import (
    AlarmFacts,
    CallbackClosed,
    CallbackOutcome,
    CallbackRecorded,
    EscalationState,
    LadderAction,
    NoCallback,
    Note,
    NoteKind,
    Notify,
    NotifyReason,
    PolicyError,
    Where,
    advance,
    callback_deadline,
    next_due,
    parse_policies,
    record_callback,
    start,
    stop,
)
from alerting.ladder.engine import timers
from alerting.model import Severity
from tests.ladder.fakes import POLICIES, T0, FakeRoster


def _policies(answer_within: float = 60) -> dict[str, object]:
    data = copy.deepcopy(POLICIES)
    for p in data["policies"]:  # type: ignore[attr-defined]
        if p["name"] in ("sos", "sos_vulnerable"):
            p["entry"] = ["grid_worker"]
            p["callback"] = {"rung": "grid_worker", "answer_within": answer_within, "escalate_to": ["family"]}
    return data


PS = parse_policies(_policies())


def sos(vulnerable: bool = True) -> AlarmFacts:
    return AlarmFacts("a-sos", "sos", Severity.CRITICAL, T0, Where("c01", "c01-g1", "c01-b01", 1, "h1", vulnerable), "一键呼救")


def paged(actions: list[LadderAction]) -> list[tuple[str, str, NotifyReason]]:
    return [(a.rung, a.contact.id, a.reason) for a in actions if isinstance(a, Notify)]


def opened(roster: FakeRoster | None = None, facts: AlarmFacts | None = None) -> EscalationState:
    state, actions = start(facts or sos(), PS, roster or FakeRoster(), T0)
    assert paged(actions) == [("grid_worker", "gw1", NotifyReason.PAGE)]  # the family is not woken for a button that may have fired by itself
    return state


def test_an_sos_press_opens_a_call_back_with_a_60_s_deadline() -> None:
    state, actions = start(sos(), PS, FakeRoster(), T0)
    assert state.callback is not None
    assert state.callback.open
    assert (state.callback.rung, state.callback.opened_ms) == ("grid_worker", T0)
    assert callback_deadline(state, PS) == T0 + 60_000
    assert next_due(state, PS) == T0 + 30_000  # the grid worker's repeat comes first; the call-back timer is there too
    assert any(t.kind == "callback" and t.due_ms == T0 + 60_000 for t in timers(state, PS))
    note = next(a for a in actions if isinstance(a, Note) and a.kind is NoteKind.CALLBACK_OPENED)
    assert note.due_ms == T0 + 60_000


def test_the_deadline_is_configuration() -> None:
    ps = parse_policies(_policies(answer_within=45))
    state, _ = start(sos(), ps, FakeRoster(), T0)
    assert callback_deadline(state, ps) == T0 + 45_000


def test_a_fire_alarm_opens_no_call_back_and_refuses_an_outcome() -> None:
    state, _ = start(AlarmFacts("a-fire", "smoke", Severity.CRITICAL, T0), PS, FakeRoster(), T0)
    assert state.callback is None
    with pytest.raises(NoCallback):
        record_callback(state, CallbackOutcome.NO_ANSWER, "gw1", PS, FakeRoster(), T0 + 1_000)


def test_the_deadline_passing_climbs_at_once_and_adds_the_family() -> None:
    roster = FakeRoster()
    state = opened(roster)
    state, early = advance(state, PS, roster, T0 + 59_999)
    assert [p for p in paged(early) if p[2] is not NotifyReason.REPEAT] == []  # only the grid worker's repeat before the deadline
    state, acts = advance(state, PS, roster, T0 + 60_000)
    assert state.callback is not None
    assert state.callback.expired_ms == T0 + 60_000
    assert state.callback.climbed_ms == T0 + 60_000
    got = paged(acts)
    assert ("family", "family:h1:0", NotifyReason.CALLBACK) in got
    assert ("family", "neighbour:h1:0", NotifyReason.CALLBACK) in got
    assert ("building_leader", "bl1", NotifyReason.CALLBACK) in got
    assert got.index(("family", "family:h1:0", NotifyReason.CALLBACK)) < got.index(("building_leader", "bl1", NotifyReason.CALLBACK))
    assert any(isinstance(a, Note) and a.kind is NoteKind.CALLBACK_EXPIRED for a in acts)
    assert state.callback.open  # a person can still record what the call found
    assert not any(t.kind == "callback" for t in timers(state, PS))  # fired once


def test_no_answer_climbs_at_once_with_the_family_and_the_deadline_adds_nothing() -> None:
    roster = FakeRoster()
    state = opened(roster)
    state, acts = record_callback(state, CallbackOutcome.NO_ANSWER, "gw1", PS, roster, T0 + 20_000)
    assert {(r, c) for r, c, _ in paged(acts)} == {("family", "family:h1:0"), ("family", "neighbour:h1:0"), ("building_leader", "bl1")}
    assert state.callback is not None
    assert (state.callback.outcome, state.callback.outcome_ms, state.callback.actor) == (CallbackOutcome.NO_ANSWER, T0 + 20_000, "gw1")
    note = next(a for a in acts if isinstance(a, Note) and a.kind is NoteKind.CALLBACK_OUTCOME)
    assert note.detail == "gw1: no_answer"
    assert note.at_ms == T0 + 20_000
    state, later = advance(state, PS, roster, T0 + 60_000)
    assert not any(r == "family" for r, _, _ in paged(later))


def test_needs_help_climbs_at_once() -> None:
    roster = FakeRoster()
    state = opened(roster)
    state, acts = record_callback(state, CallbackOutcome.NEEDS_HELP, "gw1", PS, roster, T0 + 5_000, note="摔倒了")
    assert ("family", "family:h1:0", NotifyReason.CALLBACK) in paged(acts)
    assert state.callback is not None
    assert state.callback.climbed_ms == T0 + 5_000
    assert state.callback.note == "摔倒了"


@pytest.mark.parametrize("outcome", [CallbackOutcome.ANSWERED_FINE, CallbackOutcome.FALSE_PRESS])
def test_answered_fine_or_a_false_press_climbs_nothing_and_the_stop_ends_every_timer(outcome: CallbackOutcome) -> None:
    roster = FakeRoster()
    state = opened(roster)
    state, acts = record_callback(state, outcome, "gw1", PS, roster, T0 + 15_000)
    assert paged(acts) == []
    assert not any(t.kind == "callback" for t in timers(state, PS))
    state, _ = stop(state, "closed", T0 + 16_000)  # the backend closed the alarm; the bridge stops the ladder
    state, later = advance(state, PS, roster, T0 + 600_000)
    assert later == []
    assert next_due(state, PS) is None


def test_an_outcome_twice_or_after_the_alarm_ended_is_refused() -> None:
    roster = FakeRoster()
    state = opened(roster)
    done, _ = record_callback(state, CallbackOutcome.ANSWERED_FINE, "gw1", PS, roster, T0 + 1_000)
    with pytest.raises(CallbackRecorded):
        record_callback(done, CallbackOutcome.NO_ANSWER, "gw1", PS, roster, T0 + 2_000)
    ended, _ = stop(state, "closed", T0 + 1_000)
    with pytest.raises(CallbackClosed):
        record_callback(ended, CallbackOutcome.NO_ANSWER, "gw1", PS, roster, T0 + 2_000)


def test_a_household_without_family_on_record_still_climbs() -> None:
    roster = FakeRoster()
    state = opened(roster, sos(vulnerable=False))
    state, acts = advance(state, PS, roster, T0 + 60_000)
    assert ("building_leader", "bl1", NotifyReason.CALLBACK) in paged(acts)
    assert any(isinstance(a, Note) and a.kind is NoteKind.NOT_APPLICABLE and a.rung == "family" for a in acts)


def test_a_call_back_rung_outside_the_entry_is_a_policy_error() -> None:
    data = _policies()
    data["policies"][2]["callback"]["rung"] = "building_leader"  # type: ignore[index]
    with pytest.raises(PolicyError, match="entry rung"):
        parse_policies(data)
