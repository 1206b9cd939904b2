"""Tasmota, Shelly and ESPHome through real Mosquitto brokers and a real agent, as an installer wires a building:
the devices publish their own dialects on the LAN broker (payloads from the vendors' documentation and the
device samples), and the centre's broker receives our contract under the configured ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from broker.process import MosquittoProcess
from edge import EdgeAgent
from edge.config import parse_config
from tests.edge.conftest import Collector, collecting, edge_config
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

GW = "gw-dialects"
ADAPTERS = [
    {"dialect": "tasmota", "devices": {"compressor": {"id": "tas-compressor", "kind": "electrical"},
                                       "shelly25": {"id": "tas-shelly25", "kind": "electrical", "channels": 2}}},
    {"dialect": "shelly", "devices": {"shellypro3em-a0b1": {"id": "sh-pro3em", "kind": "electrical"},
                                      "shellyplussmoke-80646fd1": {"id": "sh-smoke", "kind": "smoke"},
                                      "shellyplus1pm-d4d4da0a4ca0": {"id": "sh-1pm", "kind": "electrical"}}},
    {"dialect": "esphome", "discovery_prefix": "homeassistant", "devices": {"panel-3": {"id": "esp-panel", "kind": "electrical"}}},
]
LAN_MESSAGES: list[tuple[str, str]] = [
    ("tele/compressor/SENSOR", json.dumps({"Time": "2020-02-10T18:57:33", "ENERGY": {
        "TotalStartTime": "2019-12-13T13:36:58", "Total": 0.006, "Yesterday": 0.0, "Today": 0.006, "Power": 435, "ApparentPower": 536,
        "ReactivePower": 314, "Factor": 0.81, "Voltage": 234, "Current": 2.288}})),
    ("stat/compressor/WARNING", json.dumps({"Time": "2020-02-10T18:57:33", "MaxPowerReached": 434})),
    ("tele/shelly25/SENSOR", json.dumps({"Time": "2019-09-14T16:24:49", "ENERGY": {"Total": 3.262, "Power": [23.63, 67.17],
                                                                                  "Voltage": 235, "Current": [0.112, 0.31]}})),
    ("shellypro3em-a0b1/status/em:0", json.dumps({"id": 0, "a_current": 4.029, "a_voltage": 236.1, "a_act_power": 951.2, "a_aprt_power": 951.9,
                                                  "total_act_power": 951.2, "total_aprt_power": 951.9, "total_current": 4.029})),
    ("shellyplussmoke-80646fd1/status/smoke:0", json.dumps({"id": 0, "alarm": False, "mute": False})),
    ("shellyplussmoke-80646fd1/status/smoke:0", json.dumps({"id": 0, "alarm": True, "mute": False})),
    ("shellyplus1pm-d4d4da0a4ca0/status/switch:0", json.dumps({"id": 0, "source": "init", "output": False, "apower": 0.0, "voltage": 229.8,
                                                               "current": 0.0, "temperature": {"tC": 87.5}, "errors": ["overpower", "overtemp"]})),
    ("homeassistant/sensor/panel-3/residual_current/config", json.dumps({"unit_of_meas": "mA", "stat_t": "panel-3/sensor/residual_current/state"})),
    ("panel-3/sensor/residual_current/state", "312.5"),
]


def _readings(centre: Collector, device: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in centre.of("/telemetry"):
        if f"/dev/{device}/" in m.topic:
            out |= m.payload["readings"]
    return out


def _events(centre: Collector) -> set[tuple[str, str]]:
    return {(m.topic.split("/")[-2], m.payload["event"]) for m in centre.of("/event")}


async def test_each_dialect_arrives_at_the_centre_under_our_ids(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    cfg = parse_config(edge_config(tmp_path, lan, central, gateway=GW, adapters=ADAPTERS))
    async with collecting(central.host, central.port, GW) as centre, EdgeAgent(cfg) as agent:
        await until(agent.lan_ready.is_set, 20, "the LAN subscription")
        async with aiomqtt.Client(lan.host, lan.port, identifier="devices") as devices:
            for topic, payload in LAN_MESSAGES:
                await devices.publish(topic, payload, qos=1)
        want_events = {("tas-compressor", "electrical_alarm"), ("sh-smoke", "smoke_alarm"), ("sh-1pm", "electrical_alarm")}
        await until(lambda: want_events <= _events(centre) and "residual_current_ma" in _readings(centre, "esp-panel"), 20, "every dialect at the centre")
    assert _readings(centre, "tas-compressor")["power_w"] == 435
    shelly25 = _readings(centre, "tas-shelly25")
    assert (shelly25["power_w@1"], shelly25["power_w@2"]) == (23.63, 67.17)
    pro3em = _readings(centre, "sh-pro3em")
    assert (pro3em["power_w@1"], pro3em["power_w"]) == (951.2, 951.2)
    assert _readings(centre, "esp-panel")["residual_current_ma"] == 312.5
    assert agent.ledger.rejections() == []
