"""Zigbee2MQTT, field by field as the converters expose them (Koenkk/zigbee-herdsman-converters src/lib/exposes.ts,
src/lib/modernExtend.ts iasZoneAlarm, src/lib/tuya.ts, src/devices/tuya.ts smoke detectors, src/devices/feibit.ts SOS)
and as Zigbee2MQTT publishes its bridge state (Koenkk/zigbee2mqtt lib/mqtt.ts: retained `bridge/state`, the Last Will
`offline`, JSON `{"state": …}` or the legacy plain word).

Each payload carries exactly the properties a device's `exposes` list names. Pure: a Router over a parsed config.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from broker.kinds import AvailabilityState, EventKind, metric_unit
from broker.schemas import DeviceAvailability, DeviceEvent, Telemetry
from edge.adapters import Context, Mapped, Router, build_adapters
from edge.config import parse_config

NOW_MS = 1_785_853_200_000
_ids = itertools.count()


def _router() -> Router:
    cfg = parse_config({
        "gateway": "gw-z2m", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": "/nonexistent/outbox.sqlite3"},
        "adapters": [{"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt", "devices": {
            "plug": {"id": "z-plug", "kind": "electrical"},
            "meter3": {"id": "z-meter3", "kind": "electrical"},
            "ias_smoke": {"id": "z-ias-smoke", "kind": "smoke"},
            "tuya_smoke": {"id": "z-tuya-smoke", "kind": "smoke"},
            "sos_zone": {"id": "z-sos-zone", "kind": "sos"},
        }}],
    })
    return Router(build_adapters(cfg))


def _route(router: Router, topic: str, body: dict[str, Any] | str, t_ms: int = NOW_MS) -> Mapped:
    raw = body if isinstance(body, str) else json.dumps(body)
    out = router.route(topic, raw.encode(), False, Context(t_ms, lambda: f"m{next(_ids)}"))
    assert isinstance(out, Mapped), out
    return out


def _readings(out: Mapped) -> dict[str, float]:
    got: dict[str, float] = {}
    for routed in out.messages:
        if isinstance(routed.message, Telemetry):
            got |= {k: v for k, v in routed.message.readings.items() if v is not None}
    assert all(metric_unit(k) for k in got)
    return got


def _events(out: Mapped) -> list[EventKind]:
    return [r.message.event for r in out.messages if isinstance(r.message, DeviceEvent)]


def test_metering_plug_exposes_ac_frequency_apparent_power_and_produced_energy() -> None:
    # e.power() W, e.current() A, e.voltage() V, e.energy() kWh, e.produced_energy() kWh, e.ac_frequency() Hz,
    # e.power_factor(), e.power_apparent() VA
    body = {"state": "ON", "power": 1200.5, "current": 5.3, "voltage": 229.8, "energy": 12.5, "produced_energy": 0.25,
            "ac_frequency": 50.02, "power_factor": 0.98, "power_apparent": 1225.0, "linkquality": 120}
    got = _readings(_route(_router(), "zigbee2mqtt/plug", body))
    assert got == {"power_w": 1200.5, "current_a": 5.3, "voltage_v": 229.8, "energy_wh": 12500.0, "returned_energy_wh": 250.0,
                   "frequency_hz": 50.02, "power_factor_ratio": 0.98, "apparent_power_va": 1225.0,
                   "link_quality_lqi": 120.0, "relay_on_ratio": 1.0}


def test_three_phase_meter_phases_b_and_c() -> None:
    body = {"power": 800, "power_phase_b": 1500, "power_phase_c": 20, "current": 3.5, "current_phase_b": 6.6,
            "current_phase_c": 0.1, "voltage": 231, "voltage_phase_b": 229, "voltage_phase_c": 198}
    got = _readings(_route(_router(), "zigbee2mqtt/meter3", body))
    want = {"power_w": 800.0, "power_w@2": 1500.0, "power_w@3": 20.0, "current_a@2": 6.6, "voltage_v@3": 198.0}
    assert {k: got.get(k) for k in want} == want


def test_ias_zone_with_both_alarm_bits_reports_smoke_alarm_1() -> None:
    # iasZoneAlarm({zoneType: "smoke", zoneAttributes: ["alarm_1", "alarm_2", ...]}) exposes smoke_alarm_1/smoke_alarm_2
    router = _router()
    up = _route(router, "zigbee2mqtt/ias_smoke", {"smoke_alarm_1": True, "smoke_alarm_2": False, "tamper": False, "battery_low": False})
    assert _events(up) == [EventKind.SMOKE_ALARM]
    down = _route(router, "zigbee2mqtt/ias_smoke", {"smoke_alarm_1": False, "smoke_alarm_2": False, "tamper": False, "battery_low": False})
    assert _events(down) == [EventKind.SMOKE_CLEAR]


def test_tuya_self_test_enum_is_a_test_not_a_fire_and_a_failed_test_is_a_fault() -> None:
    # e.enum("self_test", ["checking", "check_success", "check_failure"]) next to e.smoke() on Tuya detectors
    router = _router()
    base = {"battery_state": "high", "silence": "OFF"}
    testing = _route(router, "zigbee2mqtt/tuya_smoke", base | {"smoke": True, "self_test": "checking"})
    assert _events(testing) == [EventKind.SELF_TEST]
    assert _events(_route(router, "zigbee2mqtt/tuya_smoke", base | {"smoke": False, "self_test": "check_success"})) == []
    failed = _route(router, "zigbee2mqtt/tuya_smoke", base | {"smoke": False, "self_test": "Check failure"})
    assert _events(failed) == [EventKind.FAULT]


def test_tuya_fault_booleans_are_faults_and_clear() -> None:
    router = _router()
    # e.binary("device_fault"), tuya.exposes.faultAlarm() -> fault_alarm, tuya.exposes.fault() -> fault (booleans)
    assert _events(_route(router, "zigbee2mqtt/tuya_smoke", {"smoke": False, "device_fault": True})) == [EventKind.FAULT]
    assert _events(_route(router, "zigbee2mqtt/tuya_smoke", {"smoke": False, "device_fault": False})) == [EventKind.FAULT_CLEAR]
    assert _events(_route(router, "zigbee2mqtt/ias_smoke", {"smoke": False, "fault_alarm": True})) == [EventKind.FAULT]
    assert _events(_route(router, "zigbee2mqtt/plug", {"fault": True})) == [EventKind.FAULT]


def test_ias_sos_zone_sos_true_is_a_press_once() -> None:
    # feibit SOS button: exposes [e.sos(), e.battery_low(), e.tamper(), e.battery()]
    router = _router()
    press = _route(router, "zigbee2mqtt/sos_zone", {"sos": True, "battery_low": False, "tamper": False, "battery": 90})
    assert _events(press) == [EventKind.SOS_PRESS]
    again = _route(router, "zigbee2mqtt/sos_zone", {"sos": True, "battery_low": False, "tamper": False, "battery": 90}, NOW_MS + 1000)
    assert _events(again) == [], "a full-state resend of the same press is not a second press"
    assert _events(_route(router, "zigbee2mqtt/sos_zone", {"sos": False, "battery": 90}, NOW_MS + 2000)) == []


def test_bridge_state_json_and_legacy_forms_and_the_last_will() -> None:
    # utils.availabilityPayload: JSON {"state": …}, or the plain word with legacy availability payloads
    router = _router()
    for payload in ('{"state":"offline"}', "offline"):
        out = _route(router, "zigbee2mqtt/bridge/state", payload)
        states = {r.message.state for r in out.messages if isinstance(r.message, DeviceAvailability)}
        assert states == {AvailabilityState.UNKNOWN}
    for payload in ('{"state":"online"}', "online"):
        out = _route(router, "zigbee2mqtt/bridge/state", payload)
        assert len(out.rearmed) == 5
