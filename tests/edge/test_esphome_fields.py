"""ESPHome, topic by topic as its firmware publishes them (esphome/esphome esphome/components/mqtt: __init__.py birth
and will on `{topic_prefix}/status`, mqtt_component.cpp state and discovery topics, mqtt_sensor.cpp values and NaN,
mqtt_binary_sensor.cpp ON/OFF, mqtt_const.h abbreviated discovery keys; esphome/const.py unit spellings).
Pure: a Router over a parsed config.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from broker.kinds import AvailabilityState, EventKind
from broker.schemas import DeviceAvailability, DeviceEvent, Telemetry
from edge.adapters import Context, Mapped, Rejected, Router, build_adapters
from edge.config import parse_config

NOW_MS = 1_785_853_200_000
_ids = itertools.count()


def _router() -> Router:
    cfg = parse_config({
        "gateway": "gw-esp", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": "/nonexistent/outbox.sqlite3"},
        "adapters": [{"dialect": "esphome", "discovery_prefix": "homeassistant", "devices": {
            "panel-3": {"id": "rcd-3", "kind": "electrical"},
            "hall-smoke": {"id": "smoke-7", "kind": "smoke"},
        }}],
    })
    return Router(build_adapters(cfg))


def _route(router: Router, topic: str, payload: str) -> Mapped | Rejected:
    return router.route(topic, payload.encode(), False, Context(NOW_MS, lambda: f"m{next(_ids)}"))


def _readings(out: Mapped | Rejected) -> dict[str, float | None]:
    assert isinstance(out, Mapped), out
    return {k: v for r in out.messages if isinstance(r.message, Telemetry) for k, v in r.message.readings.items()}


def _events(out: Mapped | Rejected) -> list[EventKind]:
    assert isinstance(out, Mapped), out
    return [r.message.event for r in out.messages if isinstance(r.message, DeviceEvent)]


def _announce(router: Router, object_id: str, unit: str, device_class: str) -> None:
    # MQTTSensorComponent::send_discovery with use_abbreviations (the default): dev_cla, unit_of_meas, stat_cla, stat_t
    config: dict[str, Any] = {"dev_cla": device_class, "unit_of_meas": unit, "stat_cla": "measurement", "name": object_id,
                              "stat_t": f"panel-3/sensor/{object_id}/state", "avty_t": "panel-3/status",
                              "uniq_id": f"ESPsensor{object_id}", "dev": {"ids": "a0b1c2", "name": "panel-3", "sw": "2024.10.0"}}
    learnt = _route(router, f"homeassistant/sensor/panel-3/{object_id}/config", json.dumps(config))
    assert isinstance(learnt, Mapped), learnt


def test_esphome_unit_spellings_var_kvar_kva_and_microamperes() -> None:
    # const.py: UNIT_VOLT_AMPS_REACTIVE = "VAR", UNIT_KILOVOLT_AMPS_REACTIVE = "kVAR", UNIT_KILOVOLT_AMPS = "kVA",
    # UNIT_MICROAMP = "µA"
    router = _router()
    _announce(router, "reactive_power", "VAR", "reactive_power")
    _announce(router, "feeder_reactive", "kVAR", "reactive_power")
    _announce(router, "feeder_apparent", "kVA", "apparent_power")
    _announce(router, "leakage", "µA", "current")
    assert _readings(_route(router, "panel-3/sensor/reactive_power/state", "120.5")) == {"reactive_power_var": 120.5}
    assert _readings(_route(router, "panel-3/sensor/feeder_reactive/state", "1.25")) == {"feeder_reactive_var": 1250.0}
    assert _readings(_route(router, "panel-3/sensor/feeder_apparent/state", "2.5")) == {"feeder_apparent_va": 2500.0}
    assert _readings(_route(router, "panel-3/sensor/leakage/state", "30500")) == {"leakage_ma": 30.5}


def test_a_unit_that_needs_an_offset_is_refused_not_scaled() -> None:
    router = _router()
    config = {"unit_of_meas": "°F", "stat_t": "panel-3/sensor/cable_temp/state", "dev_cla": "temperature"}
    out = _route(router, "homeassistant/sensor/panel-3/cable_temp/config", json.dumps(config))
    assert isinstance(out, Rejected)


def test_nan_and_none_are_a_fault_cleared_by_the_next_number() -> None:
    # value_accuracy_to_string(NAN) is "nan"; with publish_nan_as_none the sensor publishes "None"
    router = _router()
    _announce(router, "mains_voltage", "V", "voltage")
    assert _events(_route(router, "panel-3/sensor/mains_voltage/state", "nan")) == [EventKind.FAULT]
    assert _events(_route(router, "panel-3/sensor/mains_voltage/state", "None")) == []
    back = _route(router, "panel-3/sensor/mains_voltage/state", "229.8")
    assert _events(back) == [EventKind.FAULT_CLEAR]
    assert _readings(back) == {"mains_voltage_v": 229.8}


def test_status_birth_and_will_and_binary_sensor_on_off() -> None:
    router = _router()
    out = _route(router, "hall-smoke/status", "offline")
    assert isinstance(out, Mapped)
    assert [r.message.state for r in out.messages if isinstance(r.message, DeviceAvailability)] == [AvailabilityState.OFFLINE]
    assert _events(_route(router, "hall-smoke/binary_sensor/smoke/state", "ON")) == [EventKind.SMOKE_ALARM]
    assert _events(_route(router, "hall-smoke/binary_sensor/smoke/state", "OFF")) == [EventKind.SMOKE_CLEAR]
