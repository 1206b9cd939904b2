"""Shelly Gen2/Gen3 energy meters, component by component as the Shelly API documentation names their status fields
(gen2/ComponentsAndServices/EM, EM1, EMData, EM1Data). A Pro 3EM's power was once dropped silently because only the
switch's `apower` was read; every field below must arrive under its metric, in its unit."""

from __future__ import annotations

import itertools
import json
from typing import Any

from broker.kinds import EventKind, metric_unit
from broker.schemas import DeviceEvent, Telemetry
from edge.adapters import Context, Mapped, Router, build_adapters
from edge.config import parse_config

NOW_MS = 1_785_853_200_000
_ids = itertools.count()


def _router(channels: int = 1) -> Router:
    cfg = parse_config({
        "gateway": "gw-em", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": "/nonexistent/outbox.sqlite3"},
        "adapters": [{"dialect": "shelly", "devices": {
            "shellypro3em-a0b1": {"id": "pro3em-1", "kind": "electrical"},
            "shellyproem50-c2d3": {"id": "proem-1", "kind": "electrical", "channels": channels},
        }}],
    })
    return Router(build_adapters(cfg))


def _readings(router: Router, topic: str, body: dict[str, Any]) -> dict[str, float]:
    out = router.route(topic, json.dumps(body).encode(), False, Context(NOW_MS, lambda: f"m{next(_ids)}"))
    assert isinstance(out, Mapped), out
    got: dict[str, float] = {}
    for routed in out.messages:
        if isinstance(routed.message, Telemetry):
            got |= routed.message.readings
    assert all(metric_unit(k.partition("@")[0]) for k in got)
    return got


def test_pro_3em_triphase_em_reads_each_phase_and_the_totals() -> None:
    em: dict[str, Any] = {
        "id": 0, "a_current": 4.029, "a_voltage": 236.1, "a_act_power": 951.2, "a_aprt_power": 951.9, "a_pf": 1, "a_freq": 50,
        "b_current": 4.027, "b_voltage": 236.201, "b_act_power": -951.1, "b_aprt_power": 951.8, "b_pf": 1, "b_freq": 50,
        "c_current": 3.03, "c_voltage": 236.402, "c_act_power": 715.4, "c_aprt_power": 716.2, "c_pf": 1, "c_freq": 50,
        "n_current": None, "total_current": 11.086, "total_act_power": 715.532, "total_aprt_power": 2619.909, "user_calibrated_phase": [],
    }
    got = _readings(_router(), "shellypro3em-a0b1/status/em:0", em)
    want = {"power_w@1": 951.2, "power_w@2": -951.1, "power_w@3": 715.4, "apparent_power_va@3": 716.2, "voltage_v@2": 236.201,
            "current_a@1": 4.029, "power_w": 715.532, "apparent_power_va": 2619.909, "current_a": 11.086}
    assert {k: got.get(k) for k in want} == want
    assert "neutral_current_a" not in got, "null is unknown, not zero"


def test_em1_channels_read_act_power_not_apower() -> None:
    router = _router(channels=2)
    ch0 = {"id": 0, "current": 0.08, "voltage": 234.9, "act_power": 0, "aprt_power": 18.7, "pf": 0, "freq": 50, "calibration": "factory"}
    ch1 = {"id": 1, "current": 2.598, "voltage": 234.9, "act_power": 501.8, "aprt_power": 612.4, "pf": 0.84, "freq": 50, "calibration": "factory"}
    assert _readings(router, "shellyproem50-c2d3/status/em1:0", ch0)["power_w@1"] == 0.0
    got = _readings(router, "shellyproem50-c2d3/status/em1:1", ch1)
    assert got == {"power_w@2": 501.8, "apparent_power_va@2": 612.4, "current_a@2": 2.598, "voltage_v@2": 234.9,
                   "power_factor_ratio@2": 0.84, "frequency_hz@2": 50.0}


def test_energy_counters_are_in_wh() -> None:
    router = _router(channels=2)
    emdata = {"id": 0, "a_total_act_energy": 2776.01, "a_total_act_ret_energy": 0, "b_total_act_energy": 1.5, "b_total_act_ret_energy": 2.25,
              "c_total_act_energy": 3, "c_total_act_ret_energy": 0, "total_act": 2780.51, "total_act_ret": 2.25}
    got = _readings(router, "shellypro3em-a0b1/status/emdata:0", emdata)
    want = {"energy_wh@1": 2776.01, "returned_energy_wh@2": 2.25, "energy_wh": 2780.51}
    assert {k: got.get(k) for k in want} == want
    em1data = {"id": 1, "total_act_energy": 120.5, "total_act_ret_energy": 0.0}
    assert _readings(router, "shellyproem50-c2d3/status/em1data:1", em1data) == {"energy_wh@2": 120.5, "returned_energy_wh@2": 0.0}


def test_a_meter_error_is_a_fault_not_an_electrical_alarm_and_clears() -> None:
    router = _router()
    ctx = Context(NOW_MS, lambda: f"m{next(_ids)}")
    out = router.route("shellypro3em-a0b1/status/em:0", json.dumps({"id": 0, "errors": ["power_meter_failure"]}).encode(), False, ctx)
    assert isinstance(out, Mapped)
    kinds = [r.message.event for r in out.messages if isinstance(r.message, DeviceEvent)]
    assert kinds == [EventKind.FAULT]
    out = router.route("shellypro3em-a0b1/status/em:0", json.dumps({"id": 0, "errors": []}).encode(), False, ctx)
    assert isinstance(out, Mapped)
    assert [r.message.event for r in out.messages if isinstance(r.message, DeviceEvent)] == [EventKind.FAULT_CLEAR]
