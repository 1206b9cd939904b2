"""The ladder core on a virtual clock: every rung, deadline, repeat, vacancy, decline and verify path.

Time is an argument: `Sim.at(s)` calls `advance` with T0 + s seconds, exactly as the service does when its
timer wakes up. Nothing here sleeps or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from alerting.ladder import (
    AlarmFacts,
    EscalationState,
    Fill,
    LadderAction,
    Note,
    NoteKind,
    Notify,
    NotifyReason,
    Seat,
    SeatFill,
    Where,
    advance,
    decline,
    next_due,
    observe,
    start,
    stop,
    verify,
)
from alerting.ladder.engine import UnknownResponder
from alerting.lifecycle import AlarmState
from alerting.model import Severity
from tests.ladder.fakes import T0, FakeRoster, person, policies

PS = policies()


def facts(alarm_type: str = "smoke", severity: Severity = Severity.CRITICAL, *, vulnerable: bool = False, drill: bool = False,
          drill_outside: bool = False, alarm_id: str = "A1") -> AlarmFacts:
    return AlarmFacts(alarm_id, alarm_type, severity, T0, Where("c01", "g1", "b01", 1, "h1", vulnerable), "烟感报警", drill, drill_outside)


@dataclass
class Sim:
    f: AlarmFacts = field(default_factory=facts)
    roster: FakeRoster = field(default_factory=FakeRoster)
    state: EscalationState | None = None
    log: list[LadderAction] = field(default_factory=list)

    def start(self) -> list[LadderAction]:
        self.state, acts = start(self.f, PS, self.roster, T0)
        self.log += acts
        return acts

    def at(self, seconds: float) -> list[LadderAction]:
        assert self.state is not None
        self.state, acts = advance(self.state, PS, self.roster, T0 + round(seconds * 1000))
        self.log += acts
        return acts

    def answer(self, seconds: float, who: str, what: AlarmState | Literal["decline", "verify"]) -> list[LadderAction]:
        """`who` brought the alarm to a field state (a committed move, observed), declined, or verified it."""
        self.at(seconds)
        assert self.state is not None
        now = T0 + round(seconds * 1000)
        if what == "decline":
            self.state, acts = decline(self.state, who, PS, self.roster, now)
        elif what == "verify":
            self.state, acts = verify(self.state, who, PS, self.roster, now)
        else:
            self.state, acts = observe(self.state, AlarmState(what), who, PS, self.roster, now)
        self.log += acts
        return acts

    @property
    def s(self) -> EscalationState:
        assert self.state is not None
        return self.state


def paged(acts: list[LadderAction]) -> list[tuple[str, str, NotifyReason]]:
    return [(a.rung, a.contact.id, a.reason) for a in acts if isinstance(a, Notify)]


def notes(acts: list[LadderAction], kind: NoteKind) -> list[Note]:
    return [a for a in acts if isinstance(a, Note) and a.kind is kind]


# -- entry rungs ------------------------------------------------------------------------------------------


def test_fire_pages_grid_worker_and_micro_fire_station_at_once() -> None:
    sim = Sim()
    acts = sim.start()
    assert paged(acts) == [("grid_worker", "gw1", NotifyReason.PAGE), ("fire_station", "mfs-head", NotifyReason.PAGE),
                           ("fire_station", "mfs-m1", NotifyReason.PAGE)]
    assert {a.step for a in acts if isinstance(a, Notify)} == {1}
    assert all(isinstance(a, Notify | Note) for a in acts), "the ladder pages and notes; it asks the alarm for no move"
    assert sim.s.policy == "fire"


def test_electrical_prewarning_pages_the_grid_worker_alone() -> None:
    sim = Sim(f=facts("residual_current", Severity.MAJOR))
    assert paged(sim.start()) == [("grid_worker", "gw1", NotifyReason.PAGE)]
    assert sim.s.policy == "electrical"


def test_unknown_alarm_type_falls_to_the_catch_all_policy() -> None:
    sim = Sim(f=facts("communication_lost", Severity.MINOR))
    assert paged(sim.start()) == [("duty_officer", "duty1", NotifyReason.PAGE)]


# -- deadlines and climbing ----------------------------------------------------------------------------------


def test_grid_worker_missing_ack_deadline_climbs_to_building_leader_at_exactly_60s() -> None:
    sim = Sim(f=facts("residual_current", Severity.MAJOR))
    sim.start()
    assert not notes(sim.at(59.999), NoteKind.DEADLINE_MISSED)
    acts = sim.at(60)
    missed = notes(acts, NoteKind.DEADLINE_MISSED)
    assert [(n.rung, n.field_state) for n in missed] == [("grid_worker", AlarmState.ACKNOWLEDGED)]
    assert missed[0].due_ms == T0 + 60_000
    assert ("building_leader", "bl1", NotifyReason.ESCALATE) in paged(acts)


def test_acknowledging_in_time_does_not_climb() -> None:
    sim = Sim(f=facts("residual_current", Severity.MAJOR))
    sim.start()
    sim.answer(59, "gw1", AlarmState.ACKNOWLEDGED)
    assert not paged(sim.at(599))
    # ... but on scene within 600 s is its own deadline
    acts = sim.at(600)
    assert [(n.rung, n.field_state) for n in notes(acts, NoteKind.DEADLINE_MISSED)] == [("grid_worker", AlarmState.ON_SCENE)]
    assert paged(acts) == [("building_leader", "bl1", NotifyReason.ESCALATE)]


def test_micro_fire_station_must_be_on_scene_within_180s() -> None:
    sim = Sim()
    sim.start()
    sim.answer(20, "mfs-head", AlarmState.ACKNOWLEDGED)
    sim.answer(25, "gw1", AlarmState.ACKNOWLEDGED)
    sim.answer(26, "gw1", "verify")  # verified: the verify window does not fire
    assert not notes(sim.at(179.9), NoteKind.DEADLINE_MISSED)
    acts = sim.at(180)
    assert [(n.rung, n.field_state) for n in notes(acts, NoteKind.DEADLINE_MISSED)] == [("fire_station", AlarmState.ON_SCENE)]
    assert paged(acts) == [("building_leader", "bl1", NotifyReason.ESCALATE)]


def test_on_scene_in_time_meets_the_deadline_and_verifies() -> None:
    sim = Sim()
    sim.start()
    sim.answer(30, "mfs-m1", AlarmState.ACKNOWLEDGED)
    sim.answer(40, "gw1", AlarmState.ACKNOWLEDGED)
    sim.answer(110, "mfs-m1", AlarmState.ON_SCENE)  # inside the 120 s verify window
    assert sim.s.verified_ms == T0 + 110_000
    assert not notes(sim.at(599), NoteKind.DEADLINE_MISSED)
    assert not notes(sim.log, NoteKind.TREATED_REAL)


def test_each_missed_deadline_climbs_one_more_rung_then_the_console_holds_it() -> None:
    sim = Sim(f=facts("sos", Severity.CRITICAL))
    sim.start()  # grid worker
    assert ("building_leader", "bl1", NotifyReason.ESCALATE) in paged(sim.at(60))  # gw ack missed
    assert ("duty_officer", "duty1", NotifyReason.ESCALATE) in paged(sim.at(150))  # bl ack missed at 60+90
    acts = sim.at(210)  # duty officer ack missed at 150+60: nothing left
    assert notes(acts, NoteKind.EXHAUSTED)
    assert ("console", "console", NotifyReason.EXHAUSTED) in paged(acts)
    assert sim.s.exhausted
    # the grid worker's on-scene deadline at 600 s still counts a miss, but the console is not paged twice
    acts = sim.at(600)
    assert notes(acts, NoteKind.DEADLINE_MISSED)
    assert not paged(acts)


def test_misses_are_counted_per_rung() -> None:
    sim = Sim(f=facts("sos", Severity.CRITICAL))
    sim.start()
    for second in range(1001):  # a live service wakes at each due time; stepping by 1 s is the same here
        sim.at(second)
    missed = [(n.rung, n.field_state) for n in notes(sim.log, NoteKind.DEADLINE_MISSED)]
    assert missed == [
        ("grid_worker", AlarmState.ACKNOWLEDGED),
        ("building_leader", AlarmState.ACKNOWLEDGED),
        ("duty_officer", AlarmState.ACKNOWLEDGED),
        ("grid_worker", AlarmState.ON_SCENE),
    ]


# -- repeats ------------------------------------------------------------------------------------------------


def test_repeats_every_30s_twice_while_nobody_acknowledges() -> None:
    sim = Sim(f=facts("residual_current", Severity.MAJOR))
    sim.start()
    assert not paged(sim.at(29.999))
    assert paged(sim.at(30)) == [("grid_worker", "gw1", NotifyReason.REPEAT)]
    acts = sim.at(60)  # deadline and second repeat are both due: the deadline fires first
    kinds = [a.kind for a in acts if isinstance(a, Note)]
    assert kinds.index(NoteKind.DEADLINE_MISSED) < kinds.index(NoteKind.REPEATED)
    assert [a.attempt for a in acts if isinstance(a, Notify) and a.reason is NotifyReason.REPEAT] == [2]
    assert not [a for a in sim.at(120) if isinstance(a, Notify) and a.rung == "grid_worker"]  # only two repeats


def test_acknowledge_stops_repeats() -> None:
    sim = Sim(f=facts("residual_current", Severity.MAJOR))
    sim.start()
    sim.answer(10, "gw1", AlarmState.ACKNOWLEDGED)
    assert not paged(sim.at(100))


# -- vacancies and deputies -------------------------------------------------------------------------------------


def test_vacant_grid_worker_falls_to_the_next_rung_at_once_and_is_recorded() -> None:
    roster = FakeRoster()
    roster.vacate(Seat.GRID_WORKER)
    sim = Sim(f=facts("residual_current", Severity.MAJOR), roster=roster)
    acts = sim.start()
    assert [n.rung for n in notes(acts, NoteKind.VACANCY)] == ["grid_worker"]
    assert paged(acts) == [("building_leader", "bl1", NotifyReason.VACANCY)]
    gw = sim.s.engagement("grid_worker")
    assert gw is not None
    assert gw.via is Fill.VACANT


def test_deputy_stands_in_and_that_is_recorded() -> None:
    roster = FakeRoster()
    roster.seats[Seat.GRID_WORKER] = SeatFill((person("gw2"),), Fill.DEPUTY, "gw1 on leave; deputy gw2 stands in")
    sim = Sim(f=facts("residual_current", Severity.MAJOR), roster=roster)
    acts = sim.start()
    assert [n.detail for n in notes(acts, NoteKind.DEPUTY)] == ["gw1 on leave; deputy gw2 stands in"]
    assert paged(acts) == [("grid_worker", "gw2", NotifyReason.PAGE)]


def test_every_seat_vacant_still_leaves_someone_the_console() -> None:
    roster = FakeRoster(volunteers=[])
    for seat in list(roster.seats):
        roster.vacate(seat)
    sim = Sim(roster=roster)
    acts = sim.start()
    assert paged(acts) == [("console", "console", NotifyReason.EXHAUSTED)]
    assert sim.s.staffed
    assert len(notes(acts, NoteKind.VACANCY)) == 5  # gw, mfs, bl, volunteers, duty officer


def test_a_vacant_seat_found_on_escalation_climbs_further() -> None:
    roster = FakeRoster()
    roster.vacate(Seat.BUILDING_LEADER)
    sim = Sim(f=facts("sos", Severity.CRITICAL), roster=roster)
    sim.start()
    acts = sim.at(60)
    assert [n.rung for n in notes(acts, NoteKind.VACANCY)] == ["building_leader"]
    assert ("duty_officer", "duty1", NotifyReason.VACANCY) in paged(acts)


# -- verify or escalate --------------------------------------------------------------------------------------------


def test_fire_nobody_verifies_within_window_is_treated_as_real_and_climbs() -> None:
    sim = Sim()
    sim.start()
    sim.answer(10, "gw1", AlarmState.ACKNOWLEDGED)
    sim.answer(12, "mfs-head", AlarmState.ACKNOWLEDGED)
    assert not notes(sim.at(119.999), NoteKind.TREATED_REAL)
    acts = sim.at(120)
    assert notes(acts, NoteKind.TREATED_REAL)[0].due_ms == T0 + 120_000
    assert paged(acts) == [
        ("building_leader", "bl1", NotifyReason.UNVERIFIED),
        ("volunteers", "v1", NotifyReason.UNVERIFIED),
        ("volunteers", "v2", NotifyReason.UNVERIFIED),
        ("console", "console", NotifyReason.UNVERIFIED),
    ]
    assert sim.s.treated_real_ms == T0 + 120_000


def test_fire_verified_in_time_is_not_treated_as_real() -> None:
    sim = Sim()
    sim.start()
    sim.answer(10, "gw1", AlarmState.ACKNOWLEDGED)
    sim.answer(11, "mfs-head", AlarmState.ACKNOWLEDGED)
    sim.answer(90, "gw1", "verify")
    assert not notes(sim.at(170), NoteKind.TREATED_REAL)


def test_false_alarm_stops_the_ladder() -> None:
    sim = Sim()
    sim.start()
    assert sim.answer(50, "gw1", AlarmState.FALSE_ALARM) == [], "off the field path: the ladder does not observe it"
    sim.state, _ = stop(sim.s, "false_alarm", T0 + 50_000)  # the bridge stops it: the alarm left the open states
    assert sim.s.stopped == "false_alarm"
    assert next_due(sim.s, PS) is None
    assert not paged(sim.at(10_000))


def test_handled_stops_the_ladder_and_the_times_to_each_field_state_are_kept() -> None:
    sim = Sim()
    sim.start()
    sim.answer(15, "mfs-head", AlarmState.ACKNOWLEDGED)
    sim.answer(20, "mfs-head", AlarmState.EN_ROUTE)
    sim.answer(140, "mfs-head", AlarmState.ON_SCENE)
    sim.answer(400, "mfs-head", AlarmState.HANDLED)
    assert sim.s.stopped == "handled"
    assert dict(sim.s.reached) == {AlarmState.ACKNOWLEDGED: T0 + 15_000, AlarmState.EN_ROUTE: T0 + 20_000,
                                   AlarmState.ON_SCENE: T0 + 140_000, AlarmState.HANDLED: T0 + 400_000}
    assert not paged(sim.at(5000))


def test_a_later_field_state_implies_the_earlier_ones() -> None:
    sim = Sim()
    sim.start()
    sim.answer(30, "mfs-m1", AlarmState.ON_SCENE)
    assert dict(sim.s.reached) == {AlarmState.ACKNOWLEDGED: T0 + 30_000, AlarmState.EN_ROUTE: T0 + 30_000, AlarmState.ON_SCENE: T0 + 30_000}


def test_stop_from_outside_ends_the_timers() -> None:
    sim = Sim()
    sim.start()
    state, _acts = stop(sim.s, "closed by duty officer", T0 + 5_000)
    assert state.stopped == "closed by duty officer"
    assert next_due(state, PS) is None
    assert stop(state, "again", T0 + 6_000) == (state, [])


# -- volunteers ------------------------------------------------------------------------------------------------------


def test_volunteer_decline_passes_to_the_next_volunteer_at_once() -> None:
    sim = Sim()
    sim.start()
    sim.at(120)  # treated as real: volunteers v1, v2 paged
    acts = sim.answer(125, "v1", "decline")
    assert paged(acts) == [("volunteers", "v3", NotifyReason.DECLINED)]
    e = sim.s.engagement("volunteers")
    assert e is not None
    assert [c.id for c in e.contacts] == ["v2", "v3"]
    assert e.declined == ("v1",)
    assert e.engaged_ms == T0 + 125_000  # the new volunteer gets the rung's full time
    acts = sim.answer(126, "v2", "decline")
    assert paged(acts) == [("volunteers", "v4", NotifyReason.DECLINED)]


def test_when_every_volunteer_declined_the_ladder_climbs() -> None:
    roster = FakeRoster(volunteers=["v1", "v2"])
    sim = Sim(roster=roster)
    sim.start()
    sim.at(120)  # building leader + v1, v2
    sim.answer(121, "v1", "decline")
    acts = sim.answer(122, "v2", "decline")
    assert paged(acts) == [("duty_officer", "duty1", NotifyReason.DECLINED)]


def test_decline_from_someone_not_paged_is_refused() -> None:
    sim = Sim()
    sim.start()
    with pytest.raises(UnknownResponder):
        decline(sim.s, "stranger", PS, sim.roster, T0 + 1_000)


# -- vulnerable residents, drills ---------------------------------------------------------------------------------------


def test_vulnerable_residents_sos_pages_family_and_neighbours() -> None:
    sim = Sim(f=facts("sos", Severity.CRITICAL, vulnerable=True))
    acts = sim.start()
    assert paged(acts) == [("grid_worker", "gw1", NotifyReason.PAGE), ("family", "family:h1:0", NotifyReason.PAGE),
                           ("family", "neighbour:h1:0", NotifyReason.PAGE)]
    assert all(a.channels == ("sms",) for a in acts if isinstance(a, Notify) and a.rung == "family")


def test_ordinary_sos_does_not_page_family() -> None:
    sim = Sim(f=facts("sos", Severity.CRITICAL, vulnerable=False))
    assert [r for r, _, _ in paged(sim.start())] == ["grid_worker"]


def test_drill_notices_stay_inside_unless_the_drill_asks() -> None:
    quiet = Sim(f=facts(drill=True))
    assert all(a.drill and not a.outside_allowed for a in quiet.start() if isinstance(a, Notify))
    loud = Sim(f=facts(drill=True, drill_outside=True))
    assert all(a.drill and a.outside_allowed for a in loud.start() if isinstance(a, Notify))


def test_a_real_alarm_during_a_drill_always_goes_out() -> None:
    drill = Sim(f=facts(drill=True, alarm_id="D1"))
    drill.start()
    real = Sim(f=facts(alarm_id="R1"))
    acts = real.start()
    assert acts
    assert all(not a.drill and a.outside_allowed for a in acts if isinstance(a, Notify))


# -- restart: timers re-derived from the state ----------------------------------------------------------------------------


def test_after_downtime_every_passed_step_fires_at_once_in_order() -> None:
    sim = Sim(f=facts("sos", Severity.CRITICAL))
    sim.start()
    acts = sim.at(400)  # the process was down from 0 to 400 s
    missed = [(n.rung, n.due_ms) for n in notes(acts, NoteKind.DEADLINE_MISSED)]
    assert missed == [("grid_worker", T0 + 60_000)]  # building leader was paged at 400 s, its deadline lies ahead
    assert ("building_leader", "bl1", NotifyReason.ESCALATE) in paged(acts)
    # the two repeats that fell due while down collapse into one notice
    assert [(a.rung, a.attempt) for a in acts if isinstance(a, Notify) and a.reason is NotifyReason.REPEAT] == [("grid_worker", 2)]
    steps = [a.step for a in acts]
    assert steps == sorted(steps)
    assert next_due(sim.s, PS) == T0 + 400_000 + 90_000  # the building leader's deadline counts from when it was paged
