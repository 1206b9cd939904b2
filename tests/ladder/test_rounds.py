"""The ladder follows the alarm: a new round when it is live again, re-entry on a severity rise, committed moves
observed without a move going back, and what each rung waits for (pure, on a virtual clock)."""

from __future__ import annotations

from typing import Any, cast

import alerting.ladder
from alerting.ladder import (
    Note,
    NoteKind,
    Notify,
    NotifyReason,
    PolicySet,
    advance,
    observe,
    parse_policies,
    raise_severity,
    reopen,
    rung_status,
    start,
    stop,
)
from alerting.lifecycle import FIELD_MOVES, FIELD_ORDER, SYSTEM_ACTOR, TRANSITIONS, AlarmState, Move, field_state_of
from alerting.model import Severity
from tests.ladder.fakes import POLICIES, T0, FakeRoster, policies
from tests.ladder.test_engine import facts

PS = policies()


def ms(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def test_field_states_come_from_the_lifecycle_table() -> None:
    assert field_state_of(Move.ACKNOWLEDGE) is AlarmState.ACKNOWLEDGED
    assert field_state_of("arrive") is AlarmState.ON_SCENE
    assert field_state_of(Move.VERIFY_CLOSE) is AlarmState.CLOSED
    assert field_state_of(Move.UNSILENCE) is None
    assert field_state_of("severity_raised") is None
    assert {TRANSITIONS[(src, m)] for (src, m) in TRANSITIONS if m in FIELD_MOVES} == set(FIELD_ORDER)


def test_the_ladders_field_progress_is_the_committed_lifecycle_state() -> None:
    """Pure data: every person's move of the lifecycle table, committed and observed, sets the progress of the mover's
    rung to the state the table reached, and only field states count. The ladder keeps no words of its own for
    field progress (no Response, no moves it asks for)."""
    roster = FakeRoster()
    fresh, _ = start(facts(), PS, roster, T0)
    for (src, move), dst in TRANSITIONS.items():
        s, _ = observe(fresh, dst, "mfs-head", PS, roster, ms(5))
        e = s.engagement("fire_station")
        assert e is not None
        if dst in FIELD_ORDER:
            assert e.progress is dst, f"{src} --{move}--> {dst}"
            assert [x for x, _ in s.reached] == list(FIELD_ORDER[: FIELD_ORDER.index(dst) + 1])
        else:
            assert s == fresh, f"{dst} is no field state: nothing to observe"
        assert observe(fresh, dst, SYSTEM_ACTOR, PS, roster, ms(5)) == (fresh, []), "the system's moves answer for nobody"
    for gone in ("Response", "AdvanceAlarm", "respond", "field_state_of"):
        assert not hasattr(alerting.ladder, gone), f"the ladder keeps its own {gone}"


def test_reopen_pages_the_entry_rungs_again_once_per_opening_entry() -> None:
    roster = FakeRoster()
    s, _ = start(facts(), PS, roster, T0)
    s, _ = observe(s, AlarmState.ACKNOWLEDGED, "gw1", PS, roster, ms(5))
    s, _ = stop(s, "silenced", ms(10))
    assert s.stopped == "silenced"
    s2, acts = reopen(s, s.facts, PS, roster, ms(600), alarm_seq=3, why="maintenance window ended")
    assert s2.stopped is None
    assert s2.round == 2
    assert s2.alarm_seq == 3
    assert s2.reached == ()
    assert [(a.rung, a.contact.id, a.reason) for a in acts if isinstance(a, Notify)] == [
        ("grid_worker", "gw1", NotifyReason.REOPENED), ("fire_station", "mfs-head", NotifyReason.REOPENED),
        ("fire_station", "mfs-m1", NotifyReason.REOPENED)]
    assert s2.staffed  # running and staffed: the bridge asks the alarm service for `notify`
    assert all(a.step > s.step for a in acts)  # new notice keys: never mistaken for the first round's
    assert reopen(s2, s.facts, PS, roster, ms(601), alarm_seq=3) == (s2, [])  # the same entry again: nothing
    assert reopen(s2, s.facts, PS, roster, ms(601), alarm_seq=2) == (s2, [])
    # the new round has its own clock: the grid worker is repeated 30 s after the reopen, not after the raise
    _, due = advance(s2, PS, roster, ms(629))
    assert not [a for a in due if isinstance(a, Notify)]
    _, due = advance(s2, PS, roster, ms(630))
    assert [(a.rung, a.reason) for a in due if isinstance(a, Notify)] == [("grid_worker", NotifyReason.REPEAT)]


def test_a_severity_rise_joins_the_new_entry_rungs_without_repaging_the_others() -> None:
    roster = FakeRoster()
    pre = facts("residual_current", Severity.MAJOR)
    ps = policies_with_electrical_critical()
    s, _ = start(pre, ps, roster, T0)
    assert s.policy == "electrical"
    assert [e.rung for e in s.engagements] == ["grid_worker"]
    s2, acts = raise_severity(s, Severity.CRITICAL, ps, roster, ms(40))
    assert s2.policy == "electrical_critical"
    assert s2.facts.severity is Severity.CRITICAL
    assert [(a.rung, a.contact.id, a.reason) for a in acts if isinstance(a, Notify)] == [
        ("fire_station", "mfs-head", NotifyReason.SEVERITY), ("fire_station", "mfs-m1", NotifyReason.SEVERITY)]
    assert [n.detail for n in acts if isinstance(n, Note) and n.kind is NoteKind.SEVERITY_RAISED] == [
        "major -> critical; policy electrical -> electrical_critical"]
    assert s2.engagement("grid_worker") == s.engagement("grid_worker")  # its clock goes on
    assert raise_severity(s2, Severity.CRITICAL, ps, roster, ms(50)) == (s2, [])
    assert raise_severity(s2, Severity.MAJOR, ps, roster, ms(50)) == (s2, [])
    stopped, _ = stop(s, "handled", ms(41))
    assert raise_severity(stopped, Severity.CRITICAL, ps, roster, ms(42)) == (stopped, [])


def policies_with_electrical_critical() -> PolicySet:
    """The test policies route electrical alike at every severity; a critical one first, as the defaults do."""
    pols = list(cast("list[dict[str, Any]]", POLICIES["policies"]))
    at = next(i for i, p in enumerate(pols) if p["name"] == "electrical")
    pols.insert(at, {"name": "electrical_critical", "match": {"alarm_types": ["residual_current"], "severities": ["critical"]},
                     "entry": ["grid_worker", "fire_station"], "ladder": ["building_leader"]})
    return parse_policies({**POLICIES, "policies": pols})


def test_the_duty_officers_acknowledgement_covers_the_command_room_not_the_field_rungs() -> None:
    roster = FakeRoster()
    s, _ = start(facts("communication_lost", Severity.MINOR), PS, roster, T0)  # default policy: the duty officer's rung
    s, acts = observe(s, AlarmState.ACKNOWLEDGED, "officer.li", PS, roster, ms(5))
    assert s.engagement("duty_officer").progress is AlarmState.ACKNOWLEDGED  # type: ignore[union-attr]
    assert not [a for a in acts if isinstance(a, Notify)]

    fire, _ = start(facts(), PS, roster, T0)
    seen, acts = observe(fire, AlarmState.ACKNOWLEDGED, "officer.li", PS, roster, ms(5))
    assert dict(seen.reached) == {AlarmState.ACKNOWLEDGED: ms(5)}
    assert [e.progress for e in seen.engagements] == [None, None]  # grid worker and fire station still wait
    status = {r.rung: r for r in rung_status(seen, PS)}
    assert status["fire_station"].state == "waiting"
    assert status["fire_station"].waits_for is AlarmState.ACKNOWLEDGED
    assert status["fire_station"].climbs_at_ms == ms(60)
    assert status["grid_worker"].repeats_at_ms == ms(30)
    assert not status["grid_worker"].command_room
    # the fire station's own answer (the alarm is already acknowledged: observed as theirs); seen twice, no step at all
    answered, acts = observe(seen, AlarmState.ACKNOWLEDGED, "mfs-head", PS, roster, ms(8))
    assert answered.step == seen.step + 1
    assert observe(answered, AlarmState.ACKNOWLEDGED, "mfs-head", PS, roster, ms(9)) == (answered, [])
    status = {r.rung: r for r in rung_status(answered, PS)}
    assert status["fire_station"].state == "acknowledged"
    assert status["fire_station"].repeats_at_ms is None
    assert status["fire_station"].waits_for is AlarmState.ON_SCENE
    assert status["fire_station"].climbs_at_ms == ms(180)


def test_a_round_still_waiting_for_its_first_answer_goes_on_instead_of_paging_again() -> None:
    roster = FakeRoster()
    s, _ = start(facts(), PS, roster, T0)
    s2, acts = reopen(s, s.facts, PS, roster, ms(20), alarm_seq=2, why="recur")  # it flapped before anyone answered
    assert not [a for a in acts if isinstance(a, Notify)]
    assert (s2.round, s2.alarm_seq, s2.engagements) == (1, 2, s.engagements)  # the same round, its clocks untouched
    answered, _ = observe(s2, AlarmState.ACKNOWLEDGED, "gw1", PS, roster, ms(25))
    s3, acts = reopen(answered, answered.facts, PS, roster, ms(40), alarm_seq=4, why="recur")  # alarmed again after an answer
    assert s3.round == 2
    assert [a.contact.id for a in acts if isinstance(a, Notify)] == ["gw1", "mfs-head", "mfs-m1"]


def test_the_field_order_is_the_lifecycle_tables() -> None:
    for (src, move), dst in TRANSITIONS.items():
        if src in FIELD_ORDER and dst in FIELD_ORDER:
            assert FIELD_ORDER.index(src) < FIELD_ORDER.index(dst), f"{src} --{move}--> {dst} goes backwards"
    assert [field_state_of(m) for m in (Move.ACKNOWLEDGE, Move.DEPART, Move.ARRIVE, Move.FINISH, Move.VERIFY_CLOSE)] == list(FIELD_ORDER)


def test_an_alarm_live_again_after_its_unanswered_round_ran_out_pages_again() -> None:
    """Nobody answered and the round climbed to its last rung; hours later the detector alarms again:
    a new round pages the entry rungs (before, the spent round was taken for one still chasing: nobody was paged)."""
    roster = FakeRoster()
    s, _ = start(facts(), PS, roster, T0)
    s, _ = advance(s, PS, roster, ms(6 * 3600))  # six hours on: the ladder climbed to its end, nobody answered
    assert s.exhausted
    assert s.stopped is None
    assert not s.reached
    s2, acts = reopen(s, s.facts, PS, roster, ms(6 * 3600 + 60), alarm_seq=5, why="device alarms again")
    assert s2.round == 2
    assert [a.reason for a in acts if isinstance(a, Notify)], "the new round pages"
    assert all(a.reason is NotifyReason.REOPENED for a in acts if isinstance(a, Notify))
