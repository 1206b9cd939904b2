"""The live simulator against a real Mosquitto: what is published arrives, decodes, and is counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import pytest

from backend.sites import SiteDirectory
from broker.clock import ScaledClock, VirtualClock
from broker.kinds import DeviceKind, EventKind, GatewayState
from broker.process import MosquittoProcess
from broker.schemas import DeviceEvent, GatewayStatus, decode_uplink
from simulators import CommunitySimulator, SimulationProfile, publish_event, run_community

pytestmark = pytest.mark.mosquitto

GATEWAYS = ["c01-gw-b01", "c01-gw-b02", "c01-gw-b03"]


async def generate_all(sim: CommunitySimulator, clock: VirtualClock) -> None:
    """Walk the virtual clock a step at a time until the simulator has generated its whole duration."""
    async with asyncio.timeout(30):
        while not sim.finished.is_set():
            await clock.run_for(sim.step_s)


@dataclass
class Recorder:
    by_kind: Counter[str] = field(default_factory=Counter)
    by_device: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)  # dialect topics, by their first level
    statuses: list[tuple[str, GatewayState]] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    total: int = 0

    async def wait_for(self, n: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while self.total < n:
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def recording(m: MosquittoProcess, topic: str = "sw/v1/#") -> AsyncIterator[Recorder]:
    rec = Recorder()
    async with aiomqtt.Client(m.host, m.port, identifier="test-recorder") as client:
        await client.subscribe(topic, qos=1)
        if topic != "sw/v1/#":
            await client.subscribe("sw/v1/#", qos=1)

        async def read() -> None:
            async for msg in client.messages:
                rec.total += 1
                assert isinstance(msg.payload, bytes)
                t = str(msg.topic)
                if not t.startswith("sw/v1/"):
                    rec.other[t.split("/", maxsplit=1)[0]] += 1
                    continue
                up = decode_uplink(t, msg.payload)  # every native message must pass the contract
                rec.by_kind[up.topic.kind.value] += 1
                if up.topic.device is not None:
                    rec.by_device[str(up.topic.device)] += 1
                if isinstance(up.message, GatewayStatus):
                    rec.statuses.append((str(up.topic.gateway), up.message.state))
                if isinstance(up.message, DeviceEvent):
                    rec.events.append(up.message)

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(read(), name="recorder")
            try:
                yield rec
            finally:
                task.cancel()


async def test_a_community_publishes_simulated_minutes_and_every_message_arrives(mosquitto: MosquittoProcess, sample_site: SiteDirectory) -> None:
    async with recording(mosquitto) as rec:
        clock = VirtualClock()
        sim = CommunitySimulator(
            sample_site, mosquitto.host, mosquitto.port, clock=clock, duration_s=300, gateways=GATEWAYS, profile=SimulationProfile.quiet()
        )
        sim.fleet.smoke_alarm("c01-b02-1-101-smoke", at=sim.fleet.t + 42, duration_s=60, drill=True)
        async with sim:
            assert sim.ready.is_set()
            await generate_all(sim, clock)
            await sim.drained()
        await rec.wait_for(sim.stats.total)
    assert rec.total == sim.stats.total
    mine = [d for d in sample_site.devices.values() if d.gateway in GATEWAYS]
    for d in mine:  # a 60 s device reports 5 times in 300 s, a 300 s one once
        if d.kind in (DeviceKind.CAMERA, DeviceKind.ELECTRICAL):
            assert rec.by_device[d.id] == round(300 / d.report_interval_s), d.id
    assert all(dev.startswith(("c01-b01", "c01-b02", "c01-b03")) for dev in rec.by_device)
    assert [(e.event, e.drill) for e in rec.events] == [(EventKind.SMOKE_ALARM, True), (EventKind.SMOKE_CLEAR, True)]
    assert sorted(rec.statuses) == sorted([(g, GatewayState.ONLINE) for g in GATEWAYS] + [(g, GatewayState.OFFLINE) for g in GATEWAYS])
    assert rec.by_kind["telemetry"] == sim.stats.sent["electrical"] + sim.stats.sent["camera"] + sim.stats.sent["smoke"] + sim.stats.sent["sos"]


async def test_mixed_dialects_reach_the_broker_on_ecosystem_topics(mosquitto: MosquittoProcess, sample_site: SiteDirectory) -> None:
    async with recording(mosquitto, "#") as rec:
        clock = VirtualClock()
        sim = CommunitySimulator(sample_site, mosquitto.host, mosquitto.port, clock=clock, duration_s=120, gateways=GATEWAYS[:1], dialects="mixed")
        async with sim:
            await generate_all(sim, clock)
            await sim.drained()
        await rec.wait_for(sim.stats.total)
    assert rec.other["tele"] > 0  # tasmota
    assert rec.other["zigbee2mqtt"] > 0
    assert rec.other["frigate"] > 0
    assert rec.by_kind["telemetry"] > 0  # native devices and the gateway itself stay native


async def test_publish_event_sends_one_decodable_drill_event(mosquitto: MosquittoProcess, sample_site: SiteDirectory) -> None:
    async with recording(mosquitto) as rec, aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        sent = await publish_event(client, sample_site, "c01-b03-1-501-smoke", EventKind.SMOKE_ALARM, drill=True, at=1_767_225_600.0)
        await rec.wait_for(1)
    assert rec.events == [sent]
    assert sent.drill
    assert sent.source_ts_ms == 1_767_225_600_000


async def test_a_cut_uplink_fires_the_gateways_last_will_and_comes_back(mosquitto: MosquittoProcess, sample_site: SiteDirectory) -> None:
    async with recording(mosquitto) as rec:
        sim = CommunitySimulator(sample_site, mosquitto.host, mosquitto.port, clock=ScaledClock(speed=60.0), gateways=GATEWAYS[:1])
        async with sim:
            sim.cut_uplink(GATEWAYS[0], duration_s=60.0)  # one real second at 60x
            async with asyncio.timeout(20):
                while rec.statuses.count((GATEWAYS[0], GatewayState.ONLINE)) < 2:
                    await asyncio.sleep(0.05)
        await rec.wait_for(rec.total)
    states = [s for g, s in rec.statuses]
    assert states[:3] == [GatewayState.ONLINE, GatewayState.OFFLINE, GatewayState.ONLINE]  # online, Last Will, back
    assert sim.stats.reconnects >= 1


async def test_run_community_is_ready_then_runs_until_cancelled(mosquitto: MosquittoProcess, sample_site: SiteDirectory) -> None:
    small = SiteDirectory(
        communities=sample_site.communities,
        grids=sample_site.grids,
        buildings=sample_site.buildings,
        households=sample_site.households,
        gateways={g: sample_site.gateways[g] for g in GATEWAYS},
        devices={k: d for k, d in sample_site.devices.items() if d.gateway in GATEWAYS},
        fire_stations=sample_site.fire_stations,
        volunteer_teams=sample_site.volunteer_teams,
        responders=sample_site.responders,
    )
    ready = asyncio.Event()
    async with recording(mosquitto) as rec:
        task = asyncio.create_task(run_community(small, mosquitto.host, mosquitto.port, speed=120.0, ready=ready), name="community")
        await asyncio.wait_for(ready.wait(), 20)
        await rec.wait_for(50)  # two simulated minutes of readings arrive in about a second
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
    assert rec.by_kind["telemetry"] >= 40
    assert all((g, GatewayState.OFFLINE) in rec.statuses for g in GATEWAYS)  # a clean shutdown says so
    assert not [e for e in rec.events if e.event in (EventKind.SMOKE_ALARM, EventKind.SOS_PRESS)]
