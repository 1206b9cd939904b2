"""Every message the native encoder produces is accepted by the wire contract's own decoder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from broker.kinds import EventKind, GatewayState
from broker.schemas import DeviceAvailability, DeviceEvent, GatewayStatus, PatrolHeartbeat, Telemetry, decode_uplink
from broker.topics import TopicKind
from simulators.fleet import Fleet
from simulators.native import NativeEncoder
from simulators.signals import SimulationProfile
from tests.simulators.helpers import START, run

MakeFleet = Callable[..., Fleet]


def test_every_native_message_decodes(make_fleet: MakeFleet) -> None:
    busy = replace(
        SimulationProfile.live().lively(),
        smoke_alarms_per_day=0.2,
        sos_presses_per_day=0.2,
        phantom_presses_per_day=0.5,
        tampers_per_day=0.1,
        camera_flaps_per_day=2.0,
        power_cuts_per_building_day=0.5,
        patrol_period_s=600.0,
    )
    fleet = make_fleet(profile=busy)
    fleet.heating("c01-b02-u1-box", at=START + 60, c_per_min=2.0, drill=True)
    fleet.leakage_drift("c01-b02-u2-box", at=START, ma_per_h=400.0)
    fleet.low_battery("c01-b02-1-101-smoke", at=START + 30)
    encoder = NativeEncoder(fleet.devices, "t1")
    by_device = {d.id: d for d in fleet.devices}
    kinds: Counter[str] = Counter()
    ids: set[str] = set()
    for step in run(fleet, 2 * 3600):
        for out in encoder.step(step, by_device):
            uplink = decode_uplink(out.topic, out.payload)  # raises MessageRejected on any fault
            assert uplink.topic.gateway == out.gateway
            msg = uplink.message
            assert isinstance(msg, Telemetry | DeviceEvent | DeviceAvailability | PatrolHeartbeat)
            ids.add(msg.msg_id)
            kinds[uplink.topic.kind.value if not isinstance(msg, DeviceEvent) else msg.event.value] += 1
            if uplink.topic.kind is TopicKind.EVENT:
                assert out.qos == 1
            if uplink.topic.kind is TopicKind.AVAILABILITY:
                assert out.retain
                assert out.qos == 1
    assert sum(kinds.values()) == len(ids)  # message ids are unique
    for wanted in ("telemetry", "availability", "patrol", "smoke_alarm", "smoke_clear", "sos_press", "tamper", "low_battery"):
        assert kinds[wanted] > 0, wanted
    for wanted in ("electrical_alarm", "power_lost", "power_restored", "self_test"):
        assert kinds[wanted] > 0, wanted
    status = encoder.gateway_status("c01-gw-b01", START, GatewayState.OFFLINE)
    decoded = decode_uplink(status.topic, status.payload).message
    assert isinstance(decoded, GatewayStatus)
    assert decoded.state is GatewayState.OFFLINE
    assert status.retain


def test_drill_flag_travels_on_events_and_on_the_readings_of_a_drilled_device(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    fleet.smoke_alarm("c01-b04-1-101-smoke", at=START + 5, duration_s=60, drill=True)
    fleet.heating("c01-b04-u1-box", at=START, c_per_min=0.5, duration_s=600, drill=True)
    encoder = NativeEncoder(fleet.devices, "t2")
    by_device = {d.id: d for d in fleet.devices}
    drilled: Counter[str] = Counter()
    for step in run(fleet, 900):
        for out in encoder.step(step, by_device):
            msg = decode_uplink(out.topic, out.payload).message
            if isinstance(msg, Telemetry | DeviceEvent) and msg.drill:
                drilled[out.topic.split("/")[5]] += 1
            if isinstance(msg, DeviceEvent) and msg.event in (EventKind.SMOKE_ALARM, EventKind.SMOKE_CLEAR):
                assert msg.drill
    assert drilled["c01-b04-1-101-smoke"] == 2
    assert drilled["c01-b04-u1-box"] >= 14  # every minute's reading while the injected fault lasts
    assert set(drilled) == {"c01-b04-1-101-smoke", "c01-b04-u1-box"}
