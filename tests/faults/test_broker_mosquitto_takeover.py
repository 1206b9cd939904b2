"""Issue 22, finding 4 on production Mosquitto: one gateway's password was enough to kick the backend off the broker
27 times (it connected with ingest's fixed client id `shouwang-ingest`) and 3 of 20 alarms were lost.

`shouwang run --no-simulate` runs against a real Mosquitto with the generated configuration (password file and
ACL), with the backend's login. A gateway's login connects with the ids the backend used to have, every 0.3 s,
clean session or not, while the same gateway sends 20 smoke alarms: every alarm is raised and Mosquitto never
reports a backend client taken over. (An acl_file cannot bind ids to logins; the backend's ids are now
unguessable: broker.mosquitto.login_bound_client_id. docs/deploy.md says so.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import aiomqtt
import pytest

from broker.embedded import free_port
from broker.kinds import EventKind
from broker.mosquitto import MosquittoLayout, write_layout
from broker.process import MosquittoProcess
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from tests.faults.helpers import GATEWAY, smoke_id, write_fixture_files
from tests.faults.test_broker_embedded import RunProcess
from tests.waiting import until

pytestmark = pytest.mark.mosquitto

CREDS = {"shouwang-backend": "backend-secret-7Yq", GATEWAY: "gateway-secret-3Kd"}
OLD_IDS = ["shouwang-ingest", "shouwang-publisher", "shouwang-patrol"]


def _smoke(msg_id: str) -> bytes:
    now = time.time_ns() // 1_000_000
    return encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))


async def _kick(port: int, stop: asyncio.Event) -> int:
    """A gateway's login connecting with the backend's old ids, one every 0.3 s; how many connections it got."""
    admitted, i = 0, 0
    while not stop.is_set():
        cid, clean = OLD_IDS[i % len(OLD_IDS)], (i // len(OLD_IDS)) % 2 == 0
        i += 1
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port, identifier=cid, username=GATEWAY, password=CREDS[GATEWAY], clean_session=clean, timeout=2):
                admitted += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.3)
    return admitted


async def test_a_gateways_login_cannot_kick_the_backend_off_production_mosquitto(tmp_path: Path) -> None:
    site, _ = write_fixture_files(tmp_path, smokes=30)
    layout = MosquittoLayout(tmp_path / "conf", port=free_port(), run_as="root" if os.geteuid() == 0 else None)
    write_layout(layout, CREDS, [GATEWAY], "shouwang-backend")
    broker = MosquittoProcess(tmp_path / "run", port=layout.port, config=layout.conf_path.read_text())
    broker.start()
    run = RunProcess(tmp_path / "var", site, 0, env={
        "SHOUWANG_BROKER__URL": broker.url, "SHOUWANG_BROKER__USERNAME": "shouwang-backend", "SHOUWANG_BROKER__PASSWORD": CREDS["shouwang-backend"],
    })
    try:
        run.start()
        assert run.running, "\n".join(run.output[-40:])
        stop = asyncio.Event()
        devices = [smoke_id(i) for i in range(20)]
        async with asyncio.TaskGroup() as tg:
            kicker = tg.create_task(_kick(layout.port, stop), name="gateway-kicker")
            await asyncio.sleep(1.0)
            async with aiomqtt.Client("127.0.0.1", layout.port, identifier=f"{GATEWAY}-edge-uplink", username=GATEWAY,
                                      password=CREDS[GATEWAY]) as gw:
                for i, device in enumerate(devices):
                    await gw.publish(str(event_topic(GATEWAY, device)), _smoke(f"kick-{i}"), qos=1)
                    await asyncio.sleep(0.15)
            try:
                await until(lambda: _all_in(run, devices), 30, "every smoke alarm sent while a gateway reused the backend's old ids")
            finally:
                stop.set()
        assert kicker.result() > 0  # the gateway did connect with those ids: the attack ran
        log = (layout.directory / "mosquitto.log").read_text(errors="replace")
        taken = [line for line in log.splitlines() if "already connected" in line]
        assert taken == [], taken  # no live connection was taken over: nobody of the backend holds those ids
    finally:
        run.stop()
        broker.stop()


async def _all_in(run: RunProcess, devices: list[str]) -> bool:
    return set(devices) <= await run.alarmed_devices()
