"""Liveness on a virtual clock: pure rules first, then the running agent (patrol, offline, rejections) with time
moved by the test and the brokers real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from broker.clock import VirtualClock
from broker.ids import DeviceId
from broker.kinds import AvailabilityState
from broker.process import MosquittoProcess
from broker.schemas import GatewayCommand, encode
from broker.topics import command_topic
from edge import EdgeAgent, parse_config
from edge.liveness import Expectation, Liveness
from tests.edge.conftest import collecting, edge_config
from tests.waiting import until

A = AvailabilityState
CAM = DeviceId("cam-1")
SMOKE = DeviceId("smoke-1")
T0 = 1_700_000_000_000


def tracker() -> Liveness:
    return Liveness([Expectation(CAM, 60, 3), Expectation(SMOKE, 86_400, 2)], T0)


def test_a_camera_is_offline_after_three_missed_heartbeats_not_before() -> None:
    live = tracker()
    assert live.heard(CAM, T0 + 1_000) is not None  # first report: online
    assert live.check(T0 + 181_000 - 1) == []
    [t] = live.check(T0 + 181_001)
    assert (t.device, t.state) == (CAM, A.OFFLINE)
    assert "3 missed reports of every 60 s" in t.reason
    assert live.check(T0 + 500_000) == []  # reported once, not every check
    back = live.heard(CAM, T0 + 600_000)
    assert back is not None
    assert back.state is A.ONLINE
    assert "was offline" in back.reason


def test_a_smoke_detector_reporting_daily_is_not_offline_after_a_day() -> None:
    live = tracker()
    live.heard(SMOKE, T0)
    assert [t.device for t in live.check(T0 + 86_400_000 + 5_000)] == [CAM]  # the camera never reported
    assert [t.device for t in live.check(T0 + 2 * 86_400_000 + 5_000)] == [SMOKE]


def test_behind_a_dead_bridge_silence_is_unknown_not_offline_until_rearmed() -> None:
    live = tracker()
    live.heard(CAM, T0)
    assert live.observe(CAM, A.UNKNOWN, T0 + 10_000)  # bridge offline
    assert live.check(T0 + 10 * 60_000) == []  # cause suppresses effect
    live.rearm(CAM, T0 + 20 * 60_000)  # bridge back: the clock starts now
    assert live.check(T0 + 20 * 60_000 + 170_000) == []
    assert [t.state for t in live.check(T0 + 20 * 60_000 + 181_000)] == [A.OFFLINE]


def test_disabled_devices_raise_no_offline_and_repeats_are_not_news() -> None:
    live = tracker()
    assert live.observe(CAM, A.DISABLED, T0)
    assert not live.observe(CAM, A.DISABLED, T0 + 1)  # a retained repeat
    assert [t.device for t in live.check(T0 + 10**9)] == [SMOKE]  # the silent smoke detector, never the disabled camera
    assert live.heard(CAM, T0 + 5) is None  # stats from a disabled camera do not flip it back


@pytest.mark.mosquitto
async def test_agent_patrol_liveness_and_rejections_on_a_virtual_clock(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    gw = "gw-clock"
    clock = VirtualClock(T0)
    config = parse_config(
        edge_config(
            tmp_path,
            lan,
            central,
            gateway=gw,
            adapters=[{"dialect": "frigate", "prefix": "frigate", "devices": {"front": {"id": "cam-front", "kind": "camera"}}}],
            patrol={"period_s": 60},
            liveness={"check_every_s": 5},
        )
    )
    stats = b'{"cameras": {"front": {"camera_fps": 5.0}}}'
    async with (
        collecting(central.host, central.port, gw) as centre,
        EdgeAgent(config, clock=clock) as agent,
        aiomqtt.Client(lan.host, lan.port, identifier="frigate") as frigate,
    ):
        await until(lambda: agent.lan_ready.is_set() and agent.uplink.connected.is_set(), 10, "the agent to connect")
        await frigate.publish("frigate/stats", stats, qos=1)
        await until(lambda: len(centre.of("/availability")) == 1, 10, "the camera online")
        assert centre.of("/availability")[0].payload["state"] == "online"

        await clock.run_for(60)
        await until(lambda: len(centre.of("/patrol")) == 1, 10, "the first patrol heartbeat")
        beat = centre.of("/patrol")[0].payload
        assert (beat["seq"], beat["period_s"], beat["rejected_total"]) == (1, 60.0, 0)

        await frigate.publish("frigate/available", b"dunno", qos=1)  # malformed: rejected, counted, agent carries on
        await until(lambda: agent.ledger.rejected_total == 1, 10, "the rejection")
        await clock.run_for(60)
        await until(lambda: len(centre.of("/patrol")) == 2, 10, "the second patrol heartbeat")
        assert centre.of("/patrol")[1].payload["rejected_total"] == 1
        assert centre.of("/patrol")[1].payload["seq"] == 2
        [rejection] = agent.status()["rejections"]
        assert (rejection["adapter"], rejection["code"], rejection["count"]) == ("frigate:frigate", "malformed", 1)

        await clock.run_for(50)  # 170 s of silence: not yet
        assert len(centre.of("/availability")) == 1
        await clock.run_for(15)  # 185 s > 3 x 60 s
        await until(lambda: len(centre.of("/availability")) == 2, 10, "the camera offline")
        off = centre.of("/availability")[1].payload
        assert off["state"] == "offline"
        assert "missed reports" in off["reason"]

        await frigate.publish("frigate/stats", stats, qos=1)
        await until(lambda: len(centre.of("/availability")) == 3, 10, "the camera back online")
        assert centre.of("/availability")[2].payload["state"] == "online"

        async with aiomqtt.Client(central.host, central.port, identifier="centre-cmd") as cmd:
            command = GatewayCommand(cmd_id="patrol-test-7", issued_ts_ms=T0)
            await cmd.publish(command_topic(gw, "patrol"), encode(command), qos=1)
        await until(lambda: any(m.payload.get("patrol_id") == "patrol-test-7" for m in centre.of("/patrol")), 10, "the answer to a patrol test")
