"""Retained is the last state, not a new sample: real Mosquitto LAN and central brokers, a real agent.

An ESPHome node publishes its states retained. On every (re)subscribe the LAN broker hands them back with the
retain flag; before this, the agent stamped them with the current time and forwarded them as new readings, so one
old 312.5 mA residual-current reading met a two-sample rule at the centre after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from broker.process import MosquittoProcess
from edge import EdgeAgent
from edge.config import parse_config
from tests.edge.conftest import collecting, edge_config
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

GW = "gw-retained"
NODE = "panel-3"
STATE = f"{NODE}/sensor/leakage/state"


def _config(tmp_path: Path, lan: MosquittoProcess, central: MosquittoProcess) -> dict[str, object]:
    entities = {"sensor/leakage": {"metric": "residual_current_ma"}, "binary_sensor/smoke": {"event": "smoke"}}
    devices = {NODE: {"id": "rcd-3", "kind": "electrical", "entities": entities}}
    return edge_config(tmp_path, lan, central, gateway=GW, adapters=[{"dialect": "esphome", "devices": devices}])


async def _publish(lan: MosquittoProcess, topic: str, payload: str) -> None:
    async with aiomqtt.Client(lan.host, lan.port, identifier="esphome-node") as node:
        await node.publish(topic, payload, qos=1, retain=True)


async def test_a_retained_reading_is_not_a_new_sample_across_restarts(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    cfg = parse_config(_config(tmp_path, lan, central))
    await _publish(lan, STATE, "312.5")  # the node's last state, retained on the LAN broker before the agent starts
    async with collecting(central.host, central.port, GW) as centre:
        for restart in range(2):
            async with EdgeAgent(cfg) as started:
                await until(started.uplink.connected.is_set, 20, "the uplink")
                await until(lambda: started.retained_readings_withheld >= 1, 20, f"the retained state replayed (start {restart + 1})")
            assert centre.of("/telemetry") == [], f"start {restart + 1}: a replayed retained reading was forwarded as a new sample"
        async with EdgeAgent(cfg) as agent:
            await until(lambda: agent.retained_readings_withheld >= 1, 20, "the retained state replayed")
            await _publish(lan, STATE, "312.5")  # the same value published again, live: a real new sample
            await until(lambda: len(centre.of("/telemetry")) == 1, 20, "the live publish at the centre")
            assert centre.of("/telemetry")[0].payload["readings"] == {"residual_current_ma": 312.5}


async def test_a_detector_that_began_alarming_while_the_agent_was_away_still_raises(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    cfg = parse_config(_config(tmp_path, lan, central))
    await _publish(lan, f"{NODE}/binary_sensor/smoke/state", "ON")  # retained: the state is what matters for an event
    async with collecting(central.host, central.port, GW) as centre, EdgeAgent(cfg):
        await until(lambda: any(m.payload.get("event") == "smoke_alarm" for m in centre.of("/event")), 20, "the smoke alarm at the centre")
