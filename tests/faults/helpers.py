"""Helpers of the fault suite: the backend as a real subprocess, a responder-app listener, a paced device publisher.

How this works:
- `BackendProcess` runs `python -m shouwang run --no-simulate` against a given broker (SHOUWANG_BROKER__URL), a
  data folder, a site file and an escalation policy file, reads the console URL from its banner, and can be
  killed with SIGKILL and started again on the same data folder (`kill9()`, `start()`).
- `NoticeListener` subscribes to the responder-app notice topics (persistent session, reconnecting) and
  records (responder, Notice, monotonic time) — the ladder's steps as a responder's phone sees them.
- `SmokePublisher` is a paho client (QoS 1, unlimited offline queue, automatic reconnect) that sends smoke
  events for given devices, so a broker restart mid-stream is absorbed the way a gateway absorbs it.
Fast short policies (seconds, not minutes) keep the ladder's real timers testable across a kill -9: the
deadline is measured in the subprocess's own wall clock, which is the thing under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.kinds import EventKind
from broker.notices import Notice
from broker.schemas import DeviceEvent, encode
from broker.topics import NOTIFY_PREFIX, event_topic
from tests.conftest import REPO
from tests.waiting import until

__all__ = [
    "FAST_POLICY", "GATEWAY", "BackendProcess", "NoticeListener", "SmokePublisher", "fault_site", "listening", "smoke_id", "until", "write_fixture_files",
]

# Every rung on the MQTT app channel (observable here); 4 s to acknowledge before the next rung is paged.
FAST_POLICY = """\
rungs:
  gw: {seat: grid_worker, channels: [app], deadlines: {acknowledged: 4}}
  bl: {seat: building_leader, channels: [app], deadlines: {acknowledged: 4}}
  duty: {seat: duty_officer, channels: [app], deadlines: {acknowledged: 4}}
policies:
  - {name: fault-test, entry: [gw], ladder: [bl, duty]}
"""




@dataclass
class BackendProcess:
    data_dir: Path
    broker_url: str
    site_file: Path
    policy_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    output: list[str] = field(default_factory=list)

    def start(self, timeout_s: float = 60.0) -> BackendProcess:
        env = {**os.environ, "SHOUWANG_BROKER__URL": self.broker_url, "SHOUWANG_API__ADMIN_PASSWORD": "fault-pass", **self.env}
        if self.policy_file is not None:
            env["SHOUWANG_ESCALATION__POLICY_FILE"] = str(self.policy_file)
        self.output = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from shouwang.cli import main; sys.exit(main())",
             "run", "--no-simulate", "--port", "0", "--data-dir", str(self.data_dir), "--sites", str(self.site_file)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        found = threading.Event()

        def read(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line.rstrip())
                m = re.search(r"console:\s+(http://\S+?)/?$", line.strip())
                if m:
                    self.url = m.group(1)
                    found.set()

        self._reader = threading.Thread(target=read, args=(self.proc,), name="backend-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the backend did not start:\n" + "\n".join(self.output[-40:]))
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_output()

    def _close_output(self) -> None:
        assert self.proc is not None
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self._close_output()

    async def alarms(self, **params: Any) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            token = (await http.post("/api/login", json={"username": "admin", "password": "fault-pass"})).json()["token"]
            rows: list[dict[str, Any]] = (await http.get("/api/alarms", params=params, headers={"Authorization": f"Bearer {token}"})).json()["alarms"]
            return rows


@dataclass
class NoticeListener:
    host: str
    port: int
    notices: list[tuple[str, Notice, float]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier="fault-responder-apps", clean_session=False) as c:
                    await c.subscribe(f"{NOTIFY_PREFIX}/responder/+", qos=1)
                    self.ready.set()
                    async for m in c.messages:
                        assert isinstance(m.payload, bytes)
                        self.notices.append((str(m.topic).rsplit("/", 1)[-1], msgspec.json.decode(m.payload, type=Notice), time.monotonic()))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def to(self, responder: str, alarm_id: str | None = None) -> list[tuple[Notice, float]]:
        return [(n, t) for r, n, t in self.notices if r == responder and (alarm_id is None or n.alarm_id == alarm_id)]


@contextlib.asynccontextmanager
async def listening(host: str, port: int) -> AsyncIterator[NoticeListener]:
    listener = NoticeListener(host, port)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(listener.run(), name="fault-notice-listener")
        await asyncio.wait_for(listener.ready.wait(), 15)
        try:
            yield listener
        finally:
            task.cancel()


class SmokePublisher:
    """A gateway-like publisher: QoS 1, a persistent session, unlimited offline queue, reconnects by itself."""

    def __init__(self, host: str, port: int, client_id: str = "fault-gateway") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect(host, port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.sent: list[str] = []

    def smoke(self, gateway: str, device: str, msg_id: str, ts_ms: int | None = None, kind: EventKind = EventKind.SMOKE_ALARM) -> None:
        now = time.time_ns() // 1_000_000
        ts = now if ts_ms is None else ts_ms
        payload = encode(DeviceEvent(msg_id=msg_id, source_ts_ms=ts, received_ts_ms=ts, event=kind))
        self.infos.append(self.client.publish(str(event_topic(gateway, device)), payload, qos=1))
        self.sent.append(device)

    def all_acknowledged(self) -> bool:
        # Not MQTTMessageInfo.is_published(): it raises for a message queued while disconnected (paho still sends it later).
        return all(i.mid in self.acked for i in self.infos)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def fault_site(smokes: int = 40) -> str:
    """A one-building site with `smokes` smoke detectors and a grid worker, building leader and duty officer on duty."""
    devices = "\n".join(f"  - {{id: c01-b01-smoke-{i:03d}, kind: smoke, gateway: c01-gw-b01, building: c01-b01, unit: 1}}" for i in range(smokes))
    return f"""\
street: 测试街道
communities:
  - {{id: c01, name: 测试社区}}
grids:
  - {{id: c01-g1, name: 第1网格, community: c01}}
buildings:
  - {{id: c01-b01, name: 1号楼, grid: c01-g1, floors: 6, units: 1, x: 0.0, y: 0.0}}
households: []
gateways:
  - {{id: c01-gw-b01, community: c01, building: c01-b01}}
devices:
{devices}
fire_stations:
  - {{id: c01-mfs, name: 微型消防站, community: c01}}
volunteer_teams: []
responders:
  - {{id: gw1, name: 网格员甲, role: grid_worker, phone: '13800000001', community: c01, grid: c01-g1}}
  - {{id: bl1, name: 楼栋长乙, role: building_leader, phone: '13800000002', community: c01, building: c01-b01, grid: c01-g1}}
  - {{id: duty1, name: 值班员丙, role: duty_officer, phone: '13800000003', community: c01}}
shifts:
  - {{seat: grid_worker, scope: c01-g1, responder: gw1, start: '00:00', end: '24:00'}}
  - {{seat: building_leader, scope: c01-b01, responder: bl1, start: '00:00', end: '24:00'}}
  - {{seat: duty_officer, scope: c01, responder: duty1, start: '00:00', end: '24:00'}}
"""


GATEWAY = "c01-gw-b01"


def smoke_id(i: int) -> str:
    return f"c01-b01-smoke-{i:03d}"


def write_fixture_files(tmp: Path, smokes: int = 40) -> tuple[Path, Path]:
    """The site file and the fast policy file, in `tmp`."""
    site, policy = tmp / "site.yaml", tmp / "policy.yaml"
    site.write_text(fault_site(smokes), encoding="utf-8")
    policy.write_text(FAST_POLICY, encoding="utf-8")
    return site, policy
