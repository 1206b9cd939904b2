"""Issue 15 and 22 in the pure core, on a virtual clock: a rising hazard raises its open alarm's severity, a blind
bridge is one gateway-level condition, a drill's uplink cut is the drill's, and clocks are checked (liveness runs
on the centre's receive time, never on a device's or gateway's own clock)."""

from __future__ import annotations

import numpy as np

from alerting.engine import Engine
from alerting.lifecycle import AlarmState
from alerting.model import Alarm, Persist, Severity
from broker.kinds import AvailabilityState, EventKind
from tests.alerting.site import T0, FakeSite, S, alarms, by_type, engine, rules
from tests.alerting.test_rules import R

MIN = 60 * S


def _residual(eng: Engine, value: float, t: int, *, drill: bool = False) -> list[Persist]:
    return [a for a in eng.on_readings([R("box", "residual_current_ma", value, t, drill=drill)], t) if isinstance(a, Persist)]


# -- a rising hazard is heard --------------------------------------------------------------------------------
def test_residual_current_rising_past_the_critical_level_raises_the_open_alarm_with_its_trend_on_the_timeline() -> None:
    eng = engine()
    _residual(eng, 320, T0)
    [raised] = _residual(eng, 330, T0 + MIN)
    assert (raised.alarm.severity, raised.alarm.occurrences) == (Severity.MAJOR, 1)
    [rose] = _residual(eng, 600, T0 + 2 * MIN)  # today: no trace (occurrences 1, detail 330)
    a = rose.alarm
    assert (a.id, a.severity, a.detail, a.state) == (raised.alarm.id, Severity.CRITICAL, "600.0", AlarmState.RAISED)
    [entry] = rose.audit
    assert (entry.move, entry.from_state, entry.to_state) == ("severity_raised", AlarmState.RAISED, AlarmState.RAISED)
    assert entry.note.startswith("major -> critical"), entry.note
    assert "330.0 -> 600.0 (+270.0 in 60 s)" in entry.note, "the previous reading and the trend are on the timeline"
    assert _residual(eng, 620, T0 + 3 * MIN) == [], "already critical: nothing more to say"
    assert _residual(eng, 400, T0 + 4 * MIN) == [], "the severity never falls while the alarm is open"
    assert by_type(eng, "residual_current")[0].severity is Severity.CRITICAL


def test_a_raise_past_the_critical_level_is_critical_at_once_and_drills_rise_apart() -> None:
    eng = engine()
    _residual(eng, 650, T0)
    [a] = _residual(eng, 700, T0 + MIN)
    assert (a.alarm.severity, [e.move for e in a.audit]) == (Severity.CRITICAL, ["raise"])
    _residual(eng, 320, T0, drill=True)
    [d] = _residual(eng, 330, T0 + MIN, drill=True)
    [d2] = _residual(eng, 560, T0 + 2 * MIN, drill=True)
    assert d2.alarm.drill
    assert d2.alarm.id == d.alarm.id
    assert d2.alarm.severity is Severity.CRITICAL


def test_a_building_override_moves_the_critical_level_with_the_alarm_level_unless_it_names_it() -> None:
    r = rules(overrides={"buildings": {"b1": {"residual_current": {"above": 400}}}, "devices": {"e1": {"residual_current": {"critical": 450}}}})
    [rule] = [t for t in r.thresholds if t.name == "residual_current"]
    assert r.threshold_params(rule, "box", "b1").levels == ((600.0, Severity.CRITICAL),), "the band is kept: 400 + (500 - 300)"
    assert r.threshold_params(rule, "e1", "b1").levels == ((450.0, Severity.CRITICAL),)


def test_the_reached_severity_survives_a_restart() -> None:
    eng = engine()
    _residual(eng, 320, T0)
    _residual(eng, 330, T0 + MIN)
    _residual(eng, 600, T0 + 2 * MIN)
    again = Engine(rules(), FakeSite(), T0 + 3 * MIN)
    again.book.load(eng.book.open.values())
    again.restore(eng.snapshot())
    assert [a.severity for a in by_type(again, "residual_current")] == [Severity.CRITICAL]
    assert _residual(again, 650, T0 + 3 * MIN) == []
    fresh = Engine(rules(), FakeSite(), T0 + 3 * MIN)  # no snapshot: the stage comes from the open alarm's severity
    fresh.book.load(eng.book.open.values())
    fresh.reconcile()
    assert _residual(fresh, 650, T0 + 3 * MIN) == []


# -- unknown is a condition, not silence --------------------------------------------------------------------
def _unknown(eng: Engine, device: str, t: int, *, drill: bool = False) -> list[Alarm]:
    return alarms(eng.on_availability(device, AvailabilityState.UNKNOWN, t, reason="zigbee bridge offline", drill=drill))


def test_a_blind_bridge_raises_one_gateway_alarm_counting_its_devices_smoke_first_cleared_when_they_report() -> None:
    eng = engine()
    out = _unknown(eng, "c1", T0) + _unknown(eng, "s1", T0 + S) + _unknown(eng, "s2", T0 + 2 * S) + _unknown(eng, "s2", T0 + 3 * S)
    assert {(a.key.subject, a.alarm_type) for a in out} == {("gateway:g1", "devices_unknown")}, "nothing of the devices' own"
    [a] = by_type(eng, "devices_unknown")
    assert (a.occurrences, a.severity, a.place.gateway, a.place.building) == (1, Severity.MAJOR, "g1", "b1")
    assert a.detail is not None
    assert a.detail.startswith("3 台设备状态未知")
    assert a.detail.index("烟感 2 台") < a.detail.index("摄像机 1 台"), a.detail
    late = T0 + 3 * 86_400 * S  # far past every absence window: the blind devices are unknown, not lost
    lost = {x.key.subject for x in alarms(eng.tick(late)) if x.alarm_type == "comm_lost"}
    assert lost.isdisjoint({"device:c1", "device:s1", "device:s2"})
    assert "device:box" in lost
    eng.on_event("s1", "g1", EventKind.SELF_TEST, late + S)
    [a] = by_type(eng, "devices_unknown")
    assert a.detail is not None
    assert a.detail.startswith("2 台设备状态未知")
    assert a.occurrences == 1
    eng.on_readings([R("c1", "temperature_c", 20, late + 2 * S)], late + 2 * S)
    [gone] = [x for x in alarms(eng.on_availability("s2", AvailabilityState.ONLINE, late + 3 * S)) if x.alarm_type == "devices_unknown"]
    assert not gone.is_open
    assert by_type(eng, "devices_unknown") == []
    assert {x.key.subject for x in alarms(eng.tick(late + 4 * S)) if x.alarm_type == "comm_lost"} == set(), "each got a fresh window"
    eng.on_availability("c2", AvailabilityState.DISABLED, late + 5 * S)
    assert _unknown(eng, "c2", late + 6 * S) == [], "a camera switched back on, its stream not yet seen, is waiting, not blind"


def test_a_drills_unknown_devices_and_uplink_cut_carry_the_drill_mark_and_a_real_cut_still_alarms() -> None:
    eng = engine()
    [u] = _unknown(eng, "s1", T0, drill=True)
    assert u.drill
    assert by_type(eng, "devices_unknown") == []
    [cut] = alarms(eng.on_gateway_status("g2", False, T0, drill=True))
    assert (cut.alarm_type, cut.drill) == ("gateway_offline", True)
    assert by_type(eng, "gateway_offline") == [], "no real gateway_offline from a drill's cut"
    assert not [x for x in alarms(eng.tick(T0 + 30 * 60 * S)) if x.key.subject in ("device:c2", "gateway:g2")], "c2 is unknown, not lost"
    [real] = alarms(eng.on_gateway_status("g2", False, T0 + 31 * 60 * S))
    assert not real.drill, "a real outage during a drill's cut is still heard"
    [back] = alarms(eng.on_gateway_status("g2", True, T0 + 32 * 60 * S, drill=True))
    assert back.drill
    assert not back.is_open
    assert [a.drill for a in by_type(eng, "gateway_offline")] == [False]


# -- clocks ----------------------------------------------------------------------------------------------------
def _camera(eng: Engine, source: int, received: int) -> list[Alarm]:
    return alarms(eng.on_readings([R("c1", "temperature_c", 30, source, received_ms=received)], received))


def test_a_camera_ten_minutes_fast_that_goes_silent_is_declared_lost_and_its_clock_flagged_once() -> None:
    eng = engine()
    [skew] = _camera(eng, T0 + 10 * MIN, T0)
    assert (skew.alarm_type, skew.key.subject, skew.severity) == ("clock_skew", "device:c1", Severity.MINOR)
    assert skew.detail is not None
    assert "快 600 秒" in skew.detail
    assert _camera(eng, T0 + 11 * MIN, T0 + MIN) == [], "one alarm, not one per message"
    # silent from T0 + 1 min: camera window 3 x 60 s, judged on the centre's receive time (today: never lost)
    lost = [a for a in alarms(eng.tick(T0 + 5 * MIN)) if a.key.subject == "device:c1"]
    assert [a.alarm_type for a in lost] == ["comm_lost"]


def test_a_camera_ten_minutes_slow_is_not_lost_while_it_reports_and_its_clock_is_flagged_after_the_confirm_window() -> None:
    eng = engine()
    raised: list[Alarm] = []
    for k in range(20):  # a report a minute, each stamped ten minutes behind
        t = T0 + k * MIN
        raised += _camera(eng, t - 10 * MIN, t)
        raised += [a for a in alarms(eng.tick(t + 30 * S)) if a.key.subject == "device:c1"]
    assert [a.alarm_type for a in raised] == ["clock_skew"], "never lost (today: lost again and again), skew flagged once"
    assert raised[0].first_seen_ms == T0 + 10 * MIN, "behind for clock_skew_confirm_s (600 s) of receive time"
    [back] = _camera(eng, T0 + 20 * MIN, T0 + 20 * MIN)
    assert (back.alarm_type, back.is_open) == ("clock_skew", False), "closed when back in range"


def test_a_gateway_uplink_backlog_is_not_a_slow_clock_nor_a_lost_device() -> None:
    eng = engine()
    burst = T0 + 30 * MIN
    for k in range(10):  # held at the gateway for half an hour, delivered in a burst, then live again
        assert _camera(eng, T0 + k * MIN, burst + k * 100) == []
    assert [a for a in alarms(eng.tick(burst + 2 * S)) if a.key.subject == "device:c1"] == [], "heard at burst time (today: lost)"
    assert _camera(eng, burst + 3 * S, burst + 3 * S) == []
    assert by_type(eng, "clock_skew") == []


def test_no_gateway_can_push_a_devices_last_seen_into_the_future() -> None:
    eng = engine()
    eng.on_readings([R("c2", "temperature_c", 30, T0 + 86_400 * S)], T0)  # its own gateway, stamped a day ahead
    assert eng.presence.last_seen[eng.dev_index["c2"]] == T0
    eng.on_event("c2", "g1", EventKind.FAULT_CLEAR, T0 + 3 * MIN, seen_ms=T0 + 86_400 * S)  # g1 speaks for g2's camera
    assert "device:c2" in {a.key.subject for a in alarms(eng.tick(T0 + 4 * MIN)) if a.alarm_type == "comm_lost"}


def test_a_gateway_clock_is_checked_on_its_patrol_heartbeat_and_drill_messages_are_not_checked() -> None:
    eng = engine()
    [g] = alarms(eng.on_patrol("g1", 3600, T0, source_ms=T0 + 30 * S))
    assert (g.key.subject, g.alarm_type) == ("gateway:g1", "clock_skew")
    [back] = alarms(eng.on_patrol("g1", 3600, T0 + 3600 * S, source_ms=T0 + 3600 * S + 1 * S))
    assert not back.is_open
    drill = eng.on_readings([R("c1", "temperature_c", 30, T0 + 10 * MIN, drill=True, received_ms=T0)], T0)
    assert alarms(drill) == []
    assert not np.any(eng.presence.skewed)


def test_drill_traffic_never_keeps_a_real_device_alive_nor_clears_its_real_alarms() -> None:
    """A drill may speak for a real device id; only real messages say the real device is alive (and only they clear
    its real comm_lost), so a detector that really died during a drill is reported, and stays reported."""
    eng = engine()
    for k in range(1, 30):  # the drill's messages for c1 keep coming, every minute, for half an hour
        eng.on_readings([R("c1", "temperature_c", 30, T0 + k * MIN, drill=True)], T0 + k * MIN)
    lost = [a for a in alarms(eng.tick(T0 + 30 * MIN)) if a.key.subject == "device:c1"]
    assert [(a.alarm_type, a.drill) for a in lost] == [("comm_lost", False)], "the real camera is silent: lost"
    eng.on_readings([R("c1", "temperature_c", 30, T0 + 31 * MIN, drill=True)], T0 + 31 * MIN)
    assert "device:c1" in [a.key.subject for a in by_type(eng, "comm_lost")], "a drill message does not clear it"
    eng.on_readings([R("c1", "temperature_c", 30, T0 + 32 * MIN)], T0 + 32 * MIN)
    assert "device:c1" not in [a.key.subject for a in by_type(eng, "comm_lost")], "a real one does"
