"""An outbox that cannot take a batch (the gateway's disk full or failing: SQLite refusing writes), against real Mosquitto: the batch stays
unacknowledged on the LAN broker, the agent reconnects, and once the disk has room the redelivered smoke alarm
reaches the centre. The process does not stop, and a detector that kept reporting smoke is not taken for a repeat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from broker.process import MosquittoProcess
from edge import EdgeAgent, parse_config
from tests.edge.conftest import collecting, edge_config, persistent
from tests.waiting import until

pytestmark = pytest.mark.mosquitto


async def test_a_full_disk_holds_the_alarm_on_the_lan_broker_until_it_can_be_stored(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]
) -> None:
    lan, central = mosquitto_factory("lan"), mosquitto_factory("central")
    config = parse_config(edge_config(tmp_path, lan, central, gateway="gw-b01", adapters=[
        {"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt", "devices": {"smoke_0": {"id": "smoke-0", "kind": "smoke"}}}]))
    async with collecting(central.host, central.port, "gw-b01") as centre, EdgeAgent(config) as agent:
        await asyncio.wait_for(agent.lan_ready.wait(), 10)
        await asyncio.wait_for(agent.uplink.connected.wait(), 10)
        db = agent.outbox.db
        db.execute("PRAGMA query_only = 1")  # every write refused, as by a full or failing disk
        async with aiomqtt.Client(lan.host, lan.port, identifier="detector") as detector:
            await detector.publish("zigbee2mqtt/smoke_0", '{"smoke": true}', qos=1)
            await until(lambda: agent.outbox_failures >= 1, 10, "the outbox to refuse the batch")
            assert not centre.of("/event"), "nothing was stored, so nothing was sent"
            db.execute("PRAGMA query_only = 0")  # the disk takes writes again
            await until(lambda: any(m.payload["event"] == "smoke_alarm" for m in centre.of("/event")), 30,
                        "the redelivered smoke alarm at the centre")
            await detector.publish("zigbee2mqtt/smoke_0", '{"smoke": true}', qos=1)  # a repeat now: no second alarm
            await asyncio.sleep(0.5)
    assert [m.payload["event"] for m in centre.of("/event")] == ["smoke_alarm"]
    assert agent.status()["lan"]["outbox_failures"] >= 1


async def test_an_outbox_that_cannot_delete_what_was_sent_pauses_the_uplink_and_sends_again(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]
) -> None:
    """The centre acknowledged, the outbox cannot record it: the uplink reconnects instead of stopping the agent,
    and once the disk takes writes the rows are deleted (sent again meanwhile; the centre drops repeats by msg_id)."""
    lan, central = mosquitto_factory("lan"), persistent(mosquitto_factory("central"))
    config = parse_config(edge_config(tmp_path, lan, central, gateway="gw-b01", adapters=[
        {"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt", "devices": {"smoke_0": {"id": "smoke-0", "kind": "smoke"}}}]))
    async with collecting(central.host, central.port, "gw-b01") as centre, EdgeAgent(config) as agent:
        await asyncio.wait_for(agent.lan_ready.wait(), 10)
        await asyncio.wait_for(agent.uplink.connected.wait(), 10)
        central.stop()  # the alarm waits in the outbox
        await until(lambda: not agent.uplink.connected.is_set(), 10, "the uplink to notice the outage")
        async with aiomqtt.Client(lan.host, lan.port, identifier="detector") as detector:
            await detector.publish("zigbee2mqtt/smoke_0", '{"smoke": true}', qos=1)
            await until(lambda: agent.outbox.depth() >= 1, 10, "the alarm in the outbox")
            agent.outbox.db.execute("PRAGMA query_only = 1")
            central.start()
            await until(lambda: any(m.payload["event"] == "smoke_alarm" for m in centre.of("/event")), 10, "the alarm at the centre")
            await until(lambda: "cannot delete" in (agent.uplink.last_error or ""), 10, "the uplink to notice")
            agent.outbox.db.execute("PRAGMA query_only = 0")
            await until(lambda: agent.outbox.depth() == 0 and agent.uplink.connected.is_set(), 30, "the rows deleted after a reconnect")
    assert {m.payload["msg_id"] for m in centre.of("/event")} == {centre.of("/event")[0].payload["msg_id"]}, "one alarm, maybe sent twice"
