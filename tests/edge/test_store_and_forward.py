"""Store-and-forward against real Mosquitto: a LAN broker, a central broker that goes away, and the agent between.

While the central broker is down, devices publish telemetry and smoke events. When it comes back, every
smoke event must reach the centre before the telemetry backlog, every telemetry message within the outbox
bound must arrive (the oldest beyond it are evicted and counted), none twice after de-duplication by msg_id,
with their original msg_id and source_ts_ms. Meanwhile the building's sounder was switched on locally.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from broker.kinds import Priority
from broker.process import MosquittoProcess
from broker.schemas import Telemetry, encode
from broker.topics import telemetry_topic
from edge import EdgeAgent, parse_config
from tests.edge.conftest import collecting, edge_config, persistent
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

GW = "gw-b01"
LAN_GW = "gw-b01"


def native_telemetry(i: int) -> tuple[str, bytes]:
    device = f"meter-{i % 5}"
    msg = Telemetry(msg_id=f"t-{i}", source_ts_ms=1_000_000 + i, received_ts_ms=1_000_000 + i, readings={"residual_current_ma": float(i % 300)})
    return telemetry_topic(LAN_GW, device), encode(msg)


async def publish_all(lan: MosquittoProcess, items: list[tuple[str, bytes]]) -> None:
    """Publish in order, QoS 1, up to 500 awaiting PUBACK at once (paho writes them in call order)."""
    async with aiomqtt.Client(lan.host, lan.port, identifier="devices", max_inflight_messages=1000) as client:
        client.pending_calls_threshold = 1 << 30
        for start in range(0, len(items), 500):
            async with asyncio.TaskGroup() as tg:
                for topic, payload in items[start : start + 500]:
                    tg.create_task(client.publish(topic, payload, qos=1))


@pytest.mark.parametrize(
    ("telemetry", "smoke", "outage_s", "bound"),
    [
        pytest.param(2_000, 10, 3.0, 1_500, id="quick"),
        pytest.param(10_000, 50, 30.0, 8_000, id="full-30s", marks=pytest.mark.slow),
    ],
)
async def test_central_outage_loses_nothing_and_alarms_go_first(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess], telemetry: int, smoke: int, outage_s: float, bound: int
) -> None:
    lan = mosquitto_factory("lan")
    central = persistent(mosquitto_factory("central"))
    smoke_devices = {f"smoke_{k}": {"id": f"smoke-{k}", "kind": "smoke"} for k in range(smoke)}
    config = parse_config(
        edge_config(
            tmp_path,
            lan,
            central,
            gateway=GW,
            adapters=[
                {"dialect": "native", "devices": {f"meter-{i}": {"id": f"meter-{i}", "kind": "electrical"} for i in range(5)}},
                {"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt", "devices": smoke_devices},
            ],
            outbox={"max_telemetry_rows": bound},
            local_action={"topic": "building/sounder/set", "payload": '{"state":"ON","device":"{device}"}'},
        )
    )
    items: list[tuple[str, bytes]] = []
    every = telemetry // smoke
    for i in range(telemetry):
        items.append(native_telemetry(i))
        if i % every == every // 2 and i // every < smoke:
            items.append((f"zigbee2mqtt/smoke_{i // every}", b'{"smoke": true}'))
    assert len(items) == telemetry + smoke

    sounder: list[bytes] = []

    async def listen_sounder(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(lan.host, lan.port, identifier="sounder") as c:
            await c.subscribe("building/sounder/set", qos=1)
            ready.set()
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                sounder.append(m.payload)

    async with collecting(central.host, central.port, GW) as centre, EdgeAgent(config) as agent, asyncio.TaskGroup() as tg:
        sounder_ready = asyncio.Event()
        sounder_task = tg.create_task(listen_sounder(sounder_ready), name="test-sounder")
        await asyncio.wait_for(sounder_ready.wait(), 10)
        await asyncio.wait_for(agent.lan_ready.wait(), 10)
        await asyncio.wait_for(agent.uplink.connected.wait(), 10)

        central.stop()
        outage_started = time.monotonic()
        await until(lambda: not agent.uplink.connected.is_set(), 10, "the agent to notice the outage")
        await publish_all(lan, items)
        await until(lambda: agent.ledger.lan_messages >= len(items), 60, "the agent to accept every LAN message")
        stats = agent.outbox.stats()
        assert stats.depth[Priority.TELEMETRY] == bound
        assert stats.depth[Priority.LIFE_SAFETY] == smoke
        assert stats.evicted_total == telemetry - bound
        await until(lambda: len(sounder) >= smoke, 10, "the local sounder action")
        await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - outage_started)))  # the outage lasts outage_s
        assert not agent.uplink.connected.is_set()

        central.start()
        await until(lambda: agent.outbox.depth() == 0, 60, "the outbox to drain")
        await until(lambda: len({m.payload["msg_id"] for m in centre.of("/telemetry")}) >= bound, 30, "the backlog at the centre")
        sounder_task.cancel()

    events = [(i, m) for i, m in enumerate(centre.messages) if m.topic.endswith("/event")]
    tel = [(i, m) for i, m in enumerate(centre.messages) if m.topic.endswith("/telemetry")]
    assert {m.payload["event"] for _, m in events} == {"smoke_alarm"}
    assert {m.topic.split("/")[-2] for _, m in events} == {f"smoke-{k}" for k in range(smoke)}
    assert max(i for i, _ in events) < min(i for i, _ in tel), "a smoke event arrived behind the telemetry backlog"
    received = {m.payload["msg_id"]: m.payload for _, m in tel}
    assert set(received) == {f"t-{i}" for i in range(telemetry - bound, telemetry)}  # the newest `bound` survive
    assert all(p["source_ts_ms"] == 1_000_000 + int(k[2:]) for k, p in received.items())  # replay keeps source time
    assert len({m.payload["msg_id"] for _, m in events}) == smoke
    assert sorted(sounder) == sorted(f'{{"state":"ON","device":"smoke-{k}"}}'.encode() for k in range(smoke))
    assert agent.local_actions_total == smoke
