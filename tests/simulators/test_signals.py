"""Signal properties of the simulated fleet, on simulated time (no event loop, no sleeping)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from broker.kinds import AvailabilityState, DeviceKind, EventKind
from simulators.fleet import Fleet, UnknownTarget
from simulators.records import Step
from simulators.signals import SimulationProfile, daily_load_shape, local_hour
from tests.simulators.helpers import START, batches, events, run

MakeFleet = Callable[..., Fleet]


def _column(fleet: Fleet, kind: DeviceKind, metric: str, steps: list[Step], households: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [b for b in batches(steps) if b.kind is kind]
    dev = np.concatenate([b.devices for b in rows])
    t = np.concatenate([b.t for b in rows])
    v = np.concatenate([b.readings[metric] for b in rows])
    if households is not None:
        keep = np.array([(fleet.devices[i].household is not None) == households for i in dev])
        dev, t, v = dev[keep], t[keep], v[keep]
    return dev, t, v


def test_load_shape_has_its_daily_form() -> None:
    hours = np.arange(0, 24, 0.25)
    shape = daily_load_shape(hours)
    assert shape.mean() == pytest.approx(1.0, rel=0.02)
    at = dict(zip(hours.tolist(), shape.tolist(), strict=True))
    assert at[19.5] > 1.8 > at[7.5] > 1.0 > at[3.0]
    assert hours[np.argmax(shape)] == pytest.approx(19.5, abs=0.5)
    assert local_hour(START, 8 * 3600) == pytest.approx(8.0)


def test_household_power_follows_the_day(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    steps = run(fleet, 86_400)
    _, t, power = _column(fleet, DeviceKind.ELECTRICAL, "power_w", steps, households=True)
    hour = local_hour(t, 8 * 3600)
    evening = power[(hour >= 19) & (hour < 21)].mean()
    night = power[(hour >= 2) & (hour < 5)].mean()
    assert evening > 2.5 * night
    assert 200 < power.mean() < 900  # a flat's mean draw, in watts


def test_voltage_is_mains_with_noise(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    _, _, volts = _column(fleet, DeviceKind.ELECTRICAL, "voltage_v", run(fleet, 3600))
    assert 215 < volts.mean() < 225
    assert 0.3 < volts.std() < 5


def test_cable_temperature_follows_load(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    steps = run(fleet, 86_400)
    dev, _, temp = _column(fleet, DeviceKind.ELECTRICAL, "temperature_c", steps, households=False)
    _, _, amps = _column(fleet, DeviceKind.ELECTRICAL, "current_a", steps, households=False)
    box = dev == dev[0]
    assert np.corrcoef(amps[box], temp[box])[0, 1] > 0.5
    assert temp.max() < 70  # no alarm from ordinary load


def test_leakage_baseline_is_a_few_ma_and_a_drift_fault_drifts_into_an_alarm(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    box = next(d.id for d in fleet.devices if d.kind is DeviceKind.ELECTRICAL and d.household is None)
    fleet.leakage_drift(box, at=START + 3600, ma_per_h=50.0)
    steps = run(fleet, 12 * 3600)
    dev, t, leak = _column(fleet, DeviceKind.ELECTRICAL, "residual_current_ma", steps)
    healthy = leak[dev != fleet.index[box]]
    assert 0 <= np.median(healthy) < 10
    mine = dev == fleet.index[box]
    hours = (t[mine] - START - 3600) / 3600
    before, after = leak[mine][hours < 0], leak[mine][hours > 0]
    assert before.max() < 10
    slope = np.polyfit(hours[hours > 0], after, 1)[0]
    assert slope == pytest.approx(50.0, rel=0.05)
    alarms = [e for e in events(steps) if e.event is EventKind.ELECTRICAL_ALARM]
    assert [e.device for e in alarms] == [box]
    assert alarms[0].value is not None
    assert alarms[0].value >= 300
    hours_to_alarm = (alarms[0].t - START - 3600) / 3600
    assert 5.8 < hours_to_alarm < 6.0  # (300 mA - a few mA of baseline) / 50 mA per hour


def test_heating_event_raises_an_overtemperature_alarm_and_cools_down(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    box = next(d.id for d in fleet.devices if d.kind is DeviceKind.ELECTRICAL and d.household is None)
    fleet.heating(box, at=START + 600, c_per_min=1.5, duration_s=3600, drill=True)
    steps = run(fleet, 6 * 3600)
    evs = [e for e in events(steps) if e.device == box]
    assert [e.event for e in evs] == [EventKind.ELECTRICAL_ALARM, EventKind.ELECTRICAL_CLEAR]
    assert evs[0].detail is not None
    assert evs[0].detail.startswith("cable temperature")
    assert all(e.drill for e in evs)
    dev, _t, temp = _column(fleet, DeviceKind.ELECTRICAL, "temperature_c", steps)
    mine = temp[dev == fleet.index[box]]
    assert mine.max() > 70
    assert mine[-1] < 50


def test_a_power_cut_takes_every_camera_of_the_building_down_together(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    building = "c01-b03"
    cams = {d.id for d in fleet.devices if d.kind is DeviceKind.CAMERA and d.building == building}
    assert len(cams) >= 3
    fleet.power_cut(building, at=START + 1000, duration_s=900)
    steps = run(fleet, 3600)
    changes = [c for s in steps for c in s.availability]
    offline = [c for c in changes if c.state is AvailabilityState.OFFLINE]
    online = [c for c in changes if c.state is AvailabilityState.ONLINE]
    assert {c.device for c in offline} == cams == {c.device for c in online}
    assert {c.t for c in offline} == {START + 1000 + 180}  # all at once: three missed 60 s keepalives
    assert {c.t for c in online} == {START + 1900}
    # nothing at all from the building's cameras and flats during the cut; the other buildings carry on
    in_cut = [
        (fleet.devices[int(i)], tt)
        for b in batches(steps)
        if b.kind in (DeviceKind.CAMERA, DeviceKind.ELECTRICAL)
        for i, tt in zip(b.devices, b.t, strict=True)
        if START + 1000 <= tt < START + 1900
    ]
    mine = [d for d, _ in in_cut if d.building == building]
    assert all(d.kind is DeviceKind.ELECTRICAL and d.household is None for d in mine)
    assert any(d.building != building and d.kind is DeviceKind.CAMERA for d, _ in in_cut)
    kinds = Counter(e.event for e in events(steps))
    boxes = sum(1 for d in fleet.devices if d.building == building and d.kind is DeviceKind.ELECTRICAL and d.household is None)
    assert kinds == {EventKind.POWER_LOST: boxes, EventKind.POWER_RESTORED: boxes}


def test_a_short_camera_flap_is_not_an_outage_but_a_long_one_is(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    a, b = [d.id for d in fleet.devices if d.kind is DeviceKind.CAMERA and d.building == "c01-b05"][:2]
    fleet.camera_outage(a, at=START + 100, duration_s=100)
    fleet.camera_outage(b, at=START + 100, duration_s=400)
    changes = [c for s in run(fleet, 1200) for c in s.availability]
    assert [(c.device, c.state, c.t) for c in changes] == [
        (b, AvailabilityState.OFFLINE, START + 280),
        (b, AvailabilityState.ONLINE, START + 500),
    ]
    with pytest.raises(UnknownTarget):
        fleet.camera_outage("c01-b05-1-101-smoke")


def test_batteries_decay_to_low_battery_once(make_fleet: MakeFleet) -> None:
    profile = replace(SimulationProfile.quiet(), battery_start_pct=(16.0, 20.0), battery_life_days=(10.0, 20.0))
    fleet = make_fleet(profile=profile)
    battery_devices = {d.id for d in fleet.devices if d.kind in (DeviceKind.SMOKE, DeviceKind.SOS)}
    steps = run(fleet, 2 * 86_400, step_s=600)
    lows = [e for e in events(steps) if e.event is EventKind.LOW_BATTERY]
    assert sorted(e.device for e in lows) == sorted(battery_devices)  # every one, exactly once
    dev, _, pct = _column(fleet, DeviceKind.SMOKE, "battery_pct", steps)
    one = pct[dev == dev[0]]
    assert len(one) >= 2
    assert np.all(np.diff(one) < 0)
    assert fleet.battery_pct(fleet.devices[int(dev[0])].id) < 15


def test_smoke_alarm_clear_self_test_and_tamper(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    fleet.smoke_alarm("c01-b03-1-501-smoke", at=START + 10, duration_s=300, drill=True)
    fleet.self_test("c01-b03-1-502-smoke", at=START + 20)
    fleet.tamper("c01-b03-1-601-smoke", at=START + 30, duration_s=120)
    got = [(e.device, e.event, e.t, e.drill) for e in events(run(fleet, 600))]
    assert got == [
        ("c01-b03-1-501-smoke", EventKind.SMOKE_ALARM, START + 10, True),
        ("c01-b03-1-502-smoke", EventKind.SELF_TEST, START + 20, False),
        ("c01-b03-1-601-smoke", EventKind.TAMPER, START + 30, False),
        ("c01-b03-1-601-smoke", EventKind.TAMPER_CLEAR, START + 150, False),
        ("c01-b03-1-501-smoke", EventKind.SMOKE_CLEAR, START + 310, True),
    ]


def test_phantom_sos_presses_ask_for_a_call_back(make_fleet: MakeFleet) -> None:
    profile = replace(SimulationProfile.quiet(), phantom_presses_per_day=2.0)
    fleet = make_fleet(profile=profile)
    presses = [e for e in events(run(fleet, 86_400)) if e.event is EventKind.SOS_PRESS]
    assert len(presses) > 50
    assert all(e.phantom and e.needs_callback for e in presses)
    prone = {fleet.devices[int(i)].id for i in fleet.sos[fleet.sos_prone[fleet.sos]]}
    assert {e.device for e in presses} <= prone


def test_the_live_profile_never_cries_wolf(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(profile=SimulationProfile.live())
    kinds = Counter(e.event for e in events(run(fleet, 2 * 86_400, step_s=300)))
    assert kinds[EventKind.SMOKE_ALARM] == kinds[EventKind.SOS_PRESS] == 0
    assert kinds[EventKind.ELECTRICAL_ALARM] == 0
    assert kinds[EventKind.SELF_TEST] > 0  # background life does happen


def test_lively_profile_adds_life_safety_events(make_fleet: MakeFleet) -> None:
    lively = SimulationProfile.live().lively()
    assert lively.smoke_alarms_per_day > 0
    assert lively.sos_presses_per_day > 0
    busy = replace(lively, smoke_alarms_per_day=0.05, sos_presses_per_day=0.05)
    kinds = Counter(e.event for e in events(run(make_fleet(profile=busy), 86_400)))
    assert kinds[EventKind.SMOKE_ALARM] > 10
    assert kinds[EventKind.SOS_PRESS] > 0


def test_same_seed_same_output_other_seed_other_output(make_fleet: MakeFleet) -> None:
    profile = replace(SimulationProfile.live().lively(), self_tests_per_day=1.0)

    def fingerprint(seed: int) -> tuple[list[tuple[str, float, str]], float]:
        steps = run(make_fleet(seed=seed, profile=profile), 4 * 3600)
        evs = [(e.device, e.t, e.event.value) for e in events(steps)]
        return evs, float(sum(b.readings[next(iter(b.readings))].sum() for b in batches(steps)))

    assert fingerprint(3) == fingerprint(3)
    assert fingerprint(3) != fingerprint(4)


def test_each_device_reports_at_its_interval(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    steps = run(fleet, 3600, step_s=7)  # odd step sizes do not change how often a device reports
    counts = Counter(int(i) for b in batches(steps) for i in b.devices)
    for kind, expected in ((DeviceKind.CAMERA, 60), (DeviceKind.ELECTRICAL, None)):
        for i in np.flatnonzero(fleet.kind == kind.value)[:50]:
            want = expected or round(3600 / fleet.devices[i].report_interval_s)
            assert counts[int(i)] == want
