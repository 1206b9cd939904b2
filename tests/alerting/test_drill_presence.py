"""A drill's word about a device (availability, drill-flagged messages) has presence of its own beside the real one.

A drill's OFFLINE raises a drill-flagged comm_lost and the drill's ONLINE closes exactly it; real presence (liveness,
lost, unknown, disabled) moves on real traffic only. So a drilled camera outage leaves no drill alarm open, a real
outage and a drill on one device neither end nor hide each other, and an open real alarm never closes on a drill's word.
"""

from __future__ import annotations

from alerting.engine import Engine
from alerting.lifecycle import AlarmState
from alerting.model import Alarm, AlarmKey
from broker.kinds import AvailabilityState
from tests.alerting.site import T0, FakeSite, H, S, alarms, by_type, engine, rules
from tests.alerting.test_rules import R

OFFLINE, ONLINE = AvailabilityState.OFFLINE, AvailabilityState.ONLINE
DISABLED, UNKNOWN = AvailabilityState.DISABLED, AvailabilityState.UNKNOWN
REAL_LOST = AlarmKey("device:c1", "comm_lost")
DRILL_LOST = AlarmKey("device:c1", "comm_lost", drill=True)


def _open(eng: Engine) -> set[AlarmKey]:
    return {k for k in eng.book.open if k.subject == "device:c1"}


def _reading(eng: Engine, t: int, *, drill: bool) -> list[Alarm]:
    return alarms(eng.on_readings([R("c1", "frame_rate_fps", 25.0, t, drill=drill)], t))


def test_a_drills_offline_raises_a_drill_alarm_that_its_online_closes_and_real_presence_does_not_move() -> None:
    eng = engine()
    c1 = eng.dev_index["c1"]
    [lost] = alarms(eng.on_availability("c1", OFFLINE, T0 + 280 * S, drill=True))
    assert (lost.key, lost.state) == (DRILL_LOST, AlarmState.RAISED)
    assert not eng.presence.lost[c1], "the drill's offline is not the real camera's"
    assert alarms(eng.on_availability("c1", OFFLINE, T0 + 290 * S, drill=True)) == [], "said again: nothing new"
    [back] = alarms(eng.on_availability("c1", ONLINE, T0 + 500 * S, drill=True))
    assert (back.key, back.state) == (DRILL_LOST, AlarmState.CLOSED), "the drill's online closes the drill's alarm"
    assert _open(eng) == set()
    assert eng.presence.last_seen[c1] == T0, "a drill's online is no real sign of life"
    _reading(eng, T0 + 510 * S, drill=False)
    assert _open(eng) == set()


def test_a_drills_offline_during_a_real_outage_raises_its_own_alarm_and_neither_ends_the_other() -> None:
    eng = engine()
    [real] = alarms(eng.on_availability("c1", OFFLINE, T0 + 100 * S))
    assert real.key == REAL_LOST
    [drill] = alarms(eng.on_availability("c1", OFFLINE, T0 + 280 * S, drill=True))
    assert drill.key == DRILL_LOST, "a real outage does not hide the drill's"
    [back] = alarms(eng.on_availability("c1", ONLINE, T0 + 400 * S, drill=True))
    assert (back.key, back.state) == (DRILL_LOST, AlarmState.CLOSED)
    assert _open(eng) == {REAL_LOST}, "the drill's online does not end the real outage"
    assert eng.presence.lost[eng.dev_index["c1"]]
    [fixed] = alarms(eng.on_availability("c1", ONLINE, T0 + 800 * S))
    assert (fixed.key, fixed.state) == (REAL_LOST, AlarmState.CLOSED)


def test_a_real_outage_during_a_drills_outlasts_it_and_real_traffic_does_not_end_the_drills() -> None:
    eng = engine()
    alarms(eng.on_availability("c1", OFFLINE, T0 + 100 * S, drill=True))
    assert [a.key for a in alarms(eng.tick(T0 + 200 * S)) if a.key.subject == "device:c1"] == [REAL_LOST], \
        "silent past its window: really lost, drill or not"
    [back] = _reading(eng, T0 + 300 * S, drill=False)
    assert (back.key, back.state) == (REAL_LOST, AlarmState.CLOSED)
    assert _open(eng) == {DRILL_LOST}, "real traffic does not end the drill's outage"
    [end] = alarms(eng.on_availability("c1", ONLINE, T0 + 400 * S, drill=True))
    assert (end.key, end.state) == (DRILL_LOST, AlarmState.CLOSED)


def test_no_drill_traffic_closes_a_real_comm_lost_or_changes_the_real_presence() -> None:
    eng = engine()
    eng.tick(T0 + 200 * S)
    c1 = eng.dev_index["c1"]
    assert REAL_LOST in eng.book.open
    alarms(eng.on_availability("c1", ONLINE, T0 + 210 * S, drill=True))
    _reading(eng, T0 + 220 * S, drill=True)
    alarms(eng.on_availability("c1", DISABLED, T0 + 230 * S, drill=True))
    alarms(eng.on_availability("c1", UNKNOWN, T0 + 240 * S, drill=True))
    alarms(eng.on_availability("c1", ONLINE, T0 + 250 * S, drill=True))
    assert eng.book.open[REAL_LOST].state is AlarmState.RAISED
    assert (bool(eng.presence.lost[c1]), bool(eng.presence.disabled[c1]), bool(eng.presence.unknown[c1])) == (True, False, False)
    [back] = _reading(eng, T0 + 260 * S, drill=False)
    assert (back.key, back.state) == (REAL_LOST, AlarmState.CLOSED), "the real camera heard again: its real alarm closes"


def test_a_drill_message_from_the_device_ends_the_drills_outage() -> None:
    eng = engine()
    alarms(eng.on_availability("c1", OFFLINE, T0 + 100 * S, drill=True))
    [back] = _reading(eng, T0 + 200 * S, drill=True)
    assert (back.key, back.state) == (DRILL_LOST, AlarmState.CLOSED), "heard again in the drill, as real traffic ends a real one"


def test_a_drills_online_does_not_switch_a_disabled_camera_back_on() -> None:
    eng = engine()
    eng.on_availability("c1", DISABLED, T0 + S)
    eng.on_availability("c1", ONLINE, T0 + 2 * S, drill=True)
    assert REAL_LOST not in {a.key for a in alarms(eng.tick(T0 + 3 * H))}, "switched off on purpose: not lost"


def test_a_drill_never_ends_a_real_blind_bridge() -> None:
    eng = engine()
    [real] = alarms(eng.on_availability("s1", UNKNOWN, T0 + S, reason="zigbee bridge offline"))
    assert real.key == AlarmKey("gateway:g1", "devices_unknown")
    eng.on_availability("s1", ONLINE, T0 + 2 * S, drill=True)
    [drill] = alarms(eng.on_availability("s1", UNKNOWN, T0 + 3 * S, drill=True))
    assert drill.key == AlarmKey("gateway:g1", "devices_unknown", drill=True)
    eng.on_availability("s1", OFFLINE, T0 + 4 * S, drill=True)
    assert [a.state for a in by_type(eng, "devices_unknown")] == [AlarmState.RAISED], "the real bridge is still blind"
    assert eng.presence.unknown[eng.dev_index["s1"]]
    [gone] = [a for a in alarms(eng.on_availability("s1", ONLINE, T0 + 5 * S)) if a.alarm_type == "devices_unknown"]
    assert (gone.key.drill, gone.is_open) == (False, False)


def test_a_drills_blind_bridge_does_not_hide_a_real_silence() -> None:
    eng = engine()
    eng.on_availability("c1", UNKNOWN, T0 + S, drill=True)
    assert REAL_LOST in {a.key for a in alarms(eng.tick(T0 + 200 * S))}, "the real camera went silent: lost, drill or not"
    assert by_type(eng, "devices_unknown", drill=True)
    eng.on_availability("c1", ONLINE, T0 + 300 * S, drill=True)
    assert by_type(eng, "devices_unknown", drill=True) == []
    assert REAL_LOST in eng.book.open


def test_a_restart_keeps_the_drills_outage_apart_and_its_online_still_closes_it() -> None:
    eng = engine()
    alarms(eng.on_availability("c1", OFFLINE, T0 + 100 * S))
    alarms(eng.on_availability("c1", OFFLINE, T0 + 280 * S, drill=True))
    for snapshot in (True, False):
        again = Engine(rules(), FakeSite(), T0 + 300 * S)
        again.book.load(eng.book.open.values())
        if snapshot:
            again.restore(eng.snapshot())
        else:
            again.assume_heard()
        assert alarms(again.on_availability("c1", OFFLINE, T0 + 310 * S, drill=True)) == [], "still the drill's one outage"
        [back] = alarms(again.on_availability("c1", ONLINE, T0 + 400 * S, drill=True))
        assert (back.key, back.state) == (DRILL_LOST, AlarmState.CLOSED)
        assert again.book.open[REAL_LOST].state is AlarmState.RAISED


def test_a_snapshot_from_before_a_drills_unknown_was_kept_apart_is_read_as_the_drills() -> None:
    eng = engine()
    eng.on_availability("s1", UNKNOWN, T0 + S, drill=True)
    snap = eng.snapshot()
    snap["presence.unknown"] = snap["presence.unknown"] | snap["presence.unknown_drill"]  # how the drill's unknown was stored
    again = Engine(rules(), FakeSite(), T0 + 2 * S)
    again.book.load(eng.book.open.values())
    again.restore(snap)
    s1 = again.dev_index["s1"]
    assert (bool(again.presence.unknown[s1]), bool(again.presence.unknown_drill[s1])) == (False, True)
    [gone] = alarms(again.on_availability("s1", ONLINE, T0 + 3 * S, drill=True))
    assert (gone.key, gone.is_open) == (AlarmKey("gateway:g1", "devices_unknown", drill=True), False)
