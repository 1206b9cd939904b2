"""kill -9 of the agent process in the middle of a stream, restart: nothing it had accepted is missing.

The agent runs as a real child process (`python -m edge --config FILE`). Devices keep publishing while it
is dead; its LAN session is persistent and its outbox durable, so after the restart every message the
devices published reaches the centre (de-duplicated by msg_id), and the centre saw the gateway's Last Will.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
import yaml

from broker.process import MosquittoProcess
from broker.schemas import Telemetry, encode
from broker.topics import telemetry_topic
from tests.conftest import REPO
from tests.edge.conftest import collecting, edge_config
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

GW = "gw-k9"
TOTAL = 3_000


def _start(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config_path)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def _accepted(status: Path) -> int:
    try:
        return int(json.loads(status.read_text())["outbox"]["accepted_total"])
    except (OSError, ValueError, KeyError):
        return 0


async def test_kill_9_mid_stream_loses_nothing(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    cfg = edge_config(
        tmp_path, lan, central, gateway=GW, adapters=[{"dialect": "native", "devices": {f"m{i}": {"id": f"m{i}", "kind": "electrical"} for i in range(10)}}]
    )
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    status = Path(cfg["outbox"]["path"]).with_name("status.json")
    log = tmp_path / "agent.log"

    async with collecting(central.host, central.port, GW) as centre:
        agent = _start(config_path, log)
        try:
            await until(lambda: any(m.payload.get("state") == "online" for m in centre.of("/status")), 30, "the agent to come online")

            async def stream() -> None:
                async with aiomqtt.Client(lan.host, lan.port, identifier="k9-devices") as client:
                    for i in range(TOTAL):
                        msg = Telemetry(msg_id=f"k9-{i}", source_ts_ms=5_000 + i, received_ts_ms=5_000 + i, readings={"temperature_c": 20.0})
                        await client.publish(telemetry_topic(GW, f"m{i % 10}"), encode(msg), qos=1)
                        if i % 50 == 0:
                            await asyncio.sleep(0.01)  # a device fleet, not a firehose: the kill lands mid-stream

            async with asyncio.TaskGroup() as tg:
                publisher = tg.create_task(stream(), name="test-device-stream")
                await until(lambda: _accepted(status) >= 600, 30, "the agent to accept part of the stream")
                agent.kill()  # SIGKILL: no clean shutdown, no outbox close
                agent.wait(timeout=10)
                accepted_before_kill = _accepted(status)
                await until(lambda: any(m.payload.get("state") == "offline" for m in centre.of("/status")), 30, "the Last Will at the centre")
                assert not publisher.done(), "the stream ended before the kill: make it longer"
                await asyncio.sleep(0.3)  # devices keep publishing while the agent is dead
                agent = _start(config_path, log)
            await until(lambda: len({m.payload["msg_id"] for m in centre.of("/telemetry")}) >= TOTAL, 60, "every message at the centre")
        finally:
            agent.kill()
            agent.wait(timeout=10)

    got = {m.payload["msg_id"] for m in centre.of("/telemetry")}
    assert got == {f"k9-{i}" for i in range(TOTAL)}, log.read_text()[-3000:]
    assert accepted_before_kill >= 600
    duplicates = len(centre.of("/telemetry")) - len(got)
    assert duplicates < 1_000  # at-least-once: only what was in flight around the kill is sent twice
