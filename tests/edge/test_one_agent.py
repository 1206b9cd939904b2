"""One agent per gateway: a second agent started on the same configuration refuses at once, naming the first.

Both run as real processes (`python -m edge`), against real Mosquitto brokers. Before the outbox lock, two
agents shared one outbox and one client id, kicked each other off the broker every ~200 ms and re-forwarded
every retained state.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from broker.process import MosquittoProcess
from edge.errors import OutboxLocked
from edge.outbox import Outbox
from tests.conftest import REPO
from tests.edge.conftest import collecting, edge_config
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

GW = "gw-twice"


def test_a_second_outbox_user_is_refused_and_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path):
        with pytest.raises(OutboxLocked) as refused:
            Outbox(path).open()
        assert refused.value.holder_pid is not None
    with Outbox(path):  # released on close: the next start takes it
        pass


async def test_a_second_agent_refuses_and_the_first_keeps_its_connection(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    cfg = edge_config(tmp_path, lan, central, gateway=GW, adapters=[{"dialect": "native", "devices": {"m1": {"id": "m1", "kind": "electrical"}}}])
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "first.log"
    async with collecting(central.host, central.port, GW) as centre:
        with log.open("ab") as out:
            first = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config_path)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            await until(lambda: any(m.payload.get("state") == "online" for m in centre.of("/status")), 30, "the first agent online")
            second = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "edge", "--config", str(config_path)], cwd=REPO, capture_output=True, text=True, timeout=30,
            )
            assert second.returncode != 0
            assert f"already in use by process {first.pid}" in second.stderr, second.stderr
            assert first.poll() is None, "the first agent must keep running"
            await asyncio.sleep(0.5)
            offline = [m for m in centre.of("/status") if m.payload.get("state") == "offline"]
            assert not offline, "the first agent lost its uplink session to the second one"
        finally:
            first.terminate()
            first.wait(timeout=20)
