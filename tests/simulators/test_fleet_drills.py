"""A drill is an exercise: the drilled devices' real traffic goes on unchanged beside drill-flagged copies of the fault.

The centre counts liveness on real (drill=False) traffic only, so a drill that silenced a device, flagged its real
reports as drill or changed its real state would raise a real communication-lost alarm for a device that is fine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from broker.kinds import AvailabilityState, DeviceKind, EventKind
from simulators.fleet import Fleet
from simulators.records import Step
from tests.simulators.helpers import START, batches, events, run

MakeFleet = Callable[..., Fleet]
BUILDING = "c01-b03"


def _rows(fleet: Fleet, steps: list[Step], device: str, metric: str, *, drill: bool) -> list[tuple[float, float]]:
    """(time, value) of one device's reports of a metric, real (drill False) or drill copies."""
    i = fleet.index[device]
    return sorted(
        (float(tt), float(v))
        for b in batches(steps)
        if metric in b.readings
        for d, tt, v, dr in zip(b.devices, b.t, b.readings[metric], b.drill, strict=True)
        if d == i and bool(dr) == drill
    )


def _real_traffic(steps: list[Step]) -> list[tuple[int, float, tuple[tuple[str, float], ...]]]:
    return sorted(
        (int(d), float(tt), tuple((name, float(col[k])) for name, col in sorted(b.readings.items())))
        for b in batches(steps)
        for k, (d, tt, dr) in enumerate(zip(b.devices, b.t, b.drill, strict=True))
        if not dr
    )


def _in_building(fleet: Fleet, kind: DeviceKind, *, household: bool | None = None) -> list[str]:
    return [
        d.id for d in fleet.devices
        if d.building == BUILDING and d.kind is kind and (household is None or (d.household is not None) == household)
    ]


def test_a_drilled_power_cut_leaves_the_building_powered_and_tells_the_drill(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    meters, boxes = _in_building(fleet, DeviceKind.ELECTRICAL, household=True), _in_building(fleet, DeviceKind.ELECTRICAL, household=False)
    cams = _in_building(fleet, DeviceKind.CAMERA)
    fleet.power_cut(BUILDING, at=START + 1000, duration_s=900, drill=True)
    steps = run(fleet, 3600)

    def during(rows: list[tuple[float, float]]) -> list[float]:
        return [v for tt, v in rows if START + 1000 <= tt < START + 1900]

    # the real mains stay on: every meter and box keeps reporting healthy voltage, every camera keeps its keepalives
    for meter in meters:
        assert during(_rows(fleet, steps, meter, "voltage_v", drill=False)), meter
        assert min(during(_rows(fleet, steps, meter, "voltage_v", drill=False))) > 190, meter
    for box in boxes:
        assert min(during(_rows(fleet, steps, box, "voltage_v", drill=False))) > 190
        assert len(during(_rows(fleet, steps, box, "voltage_v", drill=True))) >= 14  # each minute's drill copy, dark
        assert set(during(_rows(fleet, steps, box, "voltage_v", drill=True))) == {0.0}
    for cam in cams:
        assert len(during(_rows(fleet, steps, cam, "frame_rate_fps", drill=False))) == 15
        assert not _rows(fleet, steps, cam, "frame_rate_fps", drill=True)  # its link is down in the drill
    for meter in meters:
        assert not _rows(fleet, steps, meter, "voltage_v", drill=True)  # a dark meter says nothing, in a drill too
    # the drill hears of the cut: power lost and back from the boxes, the cameras offline after 3 keepalives and back
    got = {(e.device, e.event, e.t, e.drill) for e in events(steps)}
    assert got == {(box, kind, START + t, True) for box in boxes for kind, t in ((EventKind.POWER_LOST, 1000), (EventKind.POWER_RESTORED, 1900))}
    changes = {(c.device, c.state, c.t, c.drill) for s in steps for c in s.availability}
    assert changes == {(cam, state, START + t, True) for cam in cams
                       for state, t in ((AvailabilityState.OFFLINE, 1180), (AvailabilityState.ONLINE, 1900))}
    # after the drill: no drill copies, no device in a drill
    assert not [tt for b in batches(steps) for tt, dr in zip(b.t, b.drill, strict=True) if dr and tt >= START + 1900]
    assert not fleet.drill.any()


def test_the_real_traffic_of_a_drilled_fleet_is_what_it_would_be_without_the_drill(make_fleet: MakeFleet) -> None:
    drilled, twin = make_fleet(), make_fleet()
    drilled.power_cut(BUILDING, at=START + 1000, duration_s=900, drill=True)
    cam = next(d.id for d in drilled.devices if d.kind is DeviceKind.CAMERA and d.building == "c01-b05")
    drilled.camera_outage(cam, at=START + 1000, duration_s=900, drill=True)
    drilled.heating("c01-b02-u1-box", at=START + 1000, c_per_min=4.0, duration_s=1800, drill=True)
    # the twin's only happenings (a self-test is an event, no state) fall at the instants of the drill's actions (its
    # beginnings, the cut's and the outage's ends, the heating's drill ending once the cable has cooled, 3 x 20 min after
    # the fault), so both fleets cut their steps alike and draw the same random numbers
    for t in (1000, 1900, 2800 + 3 * 20 * 60):
        twin.self_test("c01-b01-1-101-smoke", at=START + t)
    a, b = run(drilled, 7200), run(twin, 7200)
    assert _real_traffic(a) == _real_traffic(b)
    assert [e for e in events(a) if not e.drill] == []
    assert [c for s in a for c in s.availability if not c.drill] == []
    assert any(e.event is EventKind.ELECTRICAL_ALARM and e.drill for e in events(a))  # the drill's own alarm, drill-flagged


def test_a_drilled_camera_outage_keeps_the_camera_reporting(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    cam = _in_building(fleet, DeviceKind.CAMERA)[0]
    fleet.camera_outage(cam, at=START + 100, duration_s=400, drill=True)
    steps = run(fleet, 300)
    assert fleet.cameras_down() == []  # its link is up
    steps += run(fleet, 900)
    real = _rows(fleet, steps, cam, "frame_rate_fps", drill=False)
    assert len([tt for tt, _ in real if START + 100 <= tt < START + 500]) >= 6  # a keepalive each minute, as ever
    assert all(v > 20 for _, v in real)
    assert not [tt for tt, _ in _rows(fleet, steps, cam, "frame_rate_fps", drill=True) if START + 100 <= tt < START + 500]
    changes = [(c.device, c.state, c.t, c.drill) for s in steps for c in s.availability]
    assert changes == [(cam, AvailabilityState.OFFLINE, START + 280, True), (cam, AvailabilityState.ONLINE, START + 500, True)]


def test_a_low_battery_drill_leaves_the_real_battery_alone(make_fleet: MakeFleet) -> None:
    drilled, twin = make_fleet(), make_fleet()
    smoke = "c01-b03-1-101-smoke"
    drilled.low_battery(smoke, at=START + 60, drill=True)
    a, b = run(drilled, 3 * 86_400, step_s=600), run(twin, 3 * 86_400, step_s=600)
    assert drilled.battery_pct(smoke) == twin.battery_pct(smoke) > 40  # the quiet profile's batteries start at 60 % or more
    real = _rows(drilled, a, smoke, "battery_pct", drill=False)
    assert len(real) >= 3
    assert real == _rows(twin, b, smoke, "battery_pct", drill=False)
    low = drilled.profile.low_battery_pct
    mine = [e for e in events(a) if e.device == smoke]
    assert [(e.event, e.t, e.value, e.drill) for e in mine] == [(EventKind.LOW_BATTERY, START + 60, low, True)]
    copies = _rows(drilled, a, smoke, "battery_pct", drill=True)
    assert [tt for tt, _ in copies] == [tt for tt, _ in real]  # each daily check-in also goes out as the drill's copy
    assert all(v <= low for _, v in copies)


def test_a_leakage_drift_drill_alarms_and_clears_in_the_drill_only(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    box = "c01-b03-u1-box"
    fleet.leakage_drift(box, at=START + 60, ma_per_h=600.0, duration_s=3600, drill=True)
    steps = run(fleet, 3 * 3600)
    real = _rows(fleet, steps, box, "residual_current_ma", drill=False)
    assert len(real) >= 170  # every minute's real report
    assert max(v for _, v in real) < 20
    copies = _rows(fleet, steps, box, "residual_current_ma", drill=True)
    assert max(v for _, v in copies) > 300
    evs = [(e.event, e.drill) for e in events(steps)]
    assert evs == [(EventKind.ELECTRICAL_ALARM, True), (EventKind.ELECTRICAL_CLEAR, True)]
    assert max(tt for tt, _ in copies) < START + 3660 + 120  # the drill's copies end once its alarm has cleared
    assert not fleet.drill.any()


def test_a_real_power_cut_during_a_drilled_one_darkens_the_building_and_outlasts_it(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    meters, boxes = _in_building(fleet, DeviceKind.ELECTRICAL, household=True), _in_building(fleet, DeviceKind.ELECTRICAL, household=False)
    cams = _in_building(fleet, DeviceKind.CAMERA)
    fleet.power_cut(BUILDING, at=START + 1000, duration_s=600, drill=True)
    fleet.power_cut(BUILDING, at=START + 1300, duration_s=900)  # real, from inside the drill until after it
    steps = run(fleet, 3600)
    for meter in meters:
        times = [tt for tt, _ in _rows(fleet, steps, meter, "voltage_v", drill=False)]
        assert not [tt for tt in times if START + 1300 <= tt < START + 2200], meter  # really dark, drill over or not
        assert [tt for tt in times if tt >= START + 2200], meter
    for box in boxes:
        real = _rows(fleet, steps, box, "voltage_v", drill=False)
        assert {v for tt, v in real if START + 1300 <= tt < START + 2200} == {0.0}
        assert min(v for tt, v in real if tt < START + 1300 or tt >= START + 2200) > 190
    got = sorted((e.t, e.event, e.drill) for e in events(steps) if e.device == boxes[0])
    assert got == [
        (START + 1000, EventKind.POWER_LOST, True),
        (START + 1300, EventKind.POWER_LOST, False),
        (START + 1600, EventKind.POWER_RESTORED, True),
        (START + 2200, EventKind.POWER_RESTORED, False),
    ]
    real_changes = {(c.device, c.state, c.t) for s in steps for c in s.availability if not c.drill}
    assert real_changes == {(cam, state, START + t) for cam in cams
                            for state, t in ((AvailabilityState.OFFLINE, 1480), (AvailabilityState.ONLINE, 2200))}


def test_a_drilled_power_cut_during_a_real_one_ends_only_the_drill(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    meter = _in_building(fleet, DeviceKind.ELECTRICAL, household=True)[0]
    fleet.power_cut(BUILDING, at=START + 1000, duration_s=900)
    fleet.power_cut(BUILDING, at=START + 1200, duration_s=300, drill=True)  # begins and ends inside the real cut
    steps = run(fleet, 3600)
    times = [tt for tt, _ in _rows(fleet, steps, meter, "voltage_v", drill=False)]
    assert not [tt for tt in times if START + 1000 <= tt < START + 1900]
    got = sorted((e.t, e.event, e.drill) for e in events(steps) if e.device == "c01-b03-u1-box")
    assert got == [
        (START + 1000, EventKind.POWER_LOST, False),
        (START + 1200, EventKind.POWER_LOST, True),
        (START + 1500, EventKind.POWER_RESTORED, True),
        (START + 1900, EventKind.POWER_RESTORED, False),
    ]


def test_a_real_camera_outage_and_a_drilled_one_do_not_end_each_other(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    cam = _in_building(fleet, DeviceKind.CAMERA)[0]
    fleet.camera_outage(cam, at=START + 100, duration_s=300, drill=True)
    fleet.camera_outage(cam, at=START + 200, duration_s=600)  # real, outlasting the drill's
    steps = run(fleet, 1500)
    changes = [(c.state, c.t, c.drill) for s in steps for c in s.availability]
    assert changes == [
        (AvailabilityState.OFFLINE, START + 280, True),
        (AvailabilityState.OFFLINE, START + 380, False),
        (AvailabilityState.ONLINE, START + 400, True),
        (AvailabilityState.ONLINE, START + 800, False),
    ]
    real = [tt for tt, _ in _rows(fleet, steps, cam, "frame_rate_fps", drill=False)]
    assert [tt for tt in real if START + 100 <= tt < START + 200]  # still up before the real outage
    assert not [tt for tt in real if START + 200 <= tt < START + 800]  # the drill's end does not bring it back


def test_a_real_smoke_alarm_during_a_drill_on_the_same_detector_is_raised_and_cleared_on_its_own(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    smoke = "c01-b03-1-101-smoke"
    fleet.smoke_alarm(smoke, at=START + 10, duration_s=300, drill=True)
    fleet.smoke_alarm(smoke, at=START + 60, duration_s=600)  # a real fire while the drill's smoke is on
    got = [(e.event, e.t, e.drill) for e in events(run(fleet, 900))]
    assert got == [
        (EventKind.SMOKE_ALARM, START + 10, True),
        (EventKind.SMOKE_ALARM, START + 60, False),
        (EventKind.SMOKE_CLEAR, START + 310, True),
        (EventKind.SMOKE_CLEAR, START + 660, False),
    ]


def test_a_fleet_without_drills_sends_no_drill_copies(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    fleet.power_cut(BUILDING, at=START + 100, duration_s=300)
    steps = run(fleet, 900)
    assert not np.concatenate([b.drill for b in batches(steps)]).any()
    assert not any(e.drill for e in events(steps))
