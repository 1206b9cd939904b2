"""Process helpers for the scale-out tests: `shouwang ingest` / `shouwang backend` subprocesses, a settings
file for them, an SMS webhook receiver that counts deliveries, and a QoS 1 publisher of a community's uplink."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.store.pg_local import LocalPostgres
from tests.processes import JsonLineProcess, SmsReceiver, start_receiver
from tests.processes import fresh_database as _fresh_database

__all__ = ["POLICY", "Proc", "Publisher", "SmsReceiver", "became_leader", "fresh_database", "leader_and_standby", "shouwang", "start_receiver",
           "wait_until", "write_config"]

POLICY = """\
rungs:
  gw: {seat: grid_worker, channels: [sms], deadlines: {acknowledged: 2.0}}
  bl: {seat: building_leader, channels: [sms], deadlines: {acknowledged: 2.0}}
  duty: {seat: duty_officer, channels: [sms], deadlines: {acknowledged: 2.0}}
policies:
  - {name: test, entry: [gw], ladder: [bl, duty]}
"""


def fresh_database(pg: LocalPostgres) -> str:
    return _fresh_database(pg, "so")


def write_config(path: Path, *, broker_port: int, db: str, site: Path, policy: Path, sms_url: str) -> Path:
    path.write_text(f"""\
[broker]
url = "mqtt://127.0.0.1:{broker_port}"
[storage]
alarm_db_url = "{db}"
[ingest]
share_group = "shouwang-ingest"
prune_interval_s = 3600
[simulate]
enabled = false
site_file = "{site}"
[api]
port = 0
[escalation]
policy_file = "{policy}"
sms_url = "{sms_url}"
poll_interval_s = 0.2
retry_base_s = 0.05
retry_max_s = 0.5
rate_limit = 100000
outbox_lease_s = 3
[relay]
standby_poll_s = 0.2
lock_check_s = 0.5
idle_poll_s = 0.5
move_timeout_s = 10
""", encoding="utf-8")
    return path


Proc = JsonLineProcess


def shouwang(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shouwang.cli", "--config", str(config), *args]


class Publisher:
    """One QoS 1 MQTT connection publishing for many gateways (as a test harness, not as a gateway)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"so-pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1))

    def flush(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a QoS 1 publish"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def became_leader(backend: Proc, timeout: float) -> bool:
    """Whether `backend` said it holds the rules seat (waiting up to `timeout` s for it to say so)."""
    if any(ln.get("event") == "leader" and ln["leader"] for ln in backend.lines):
        return True
    if timeout <= 0:
        return False
    try:
        backend.wait_for(lambda ln: ln.get("event") == "leader" and bool(ln["leader"]), timeout)
    except AssertionError:
        return False
    return True


def leader_and_standby(backends: list[Proc], timeout: float = 30) -> tuple[Proc, Proc]:
    """Of two backends, the one that took the rules seat (waiting up to `timeout` s) and the other."""
    wait_until(lambda: any(became_leader(b, 0.0) for b in backends), timeout, "a rules leader among the backends")
    leader = next(b for b in backends if became_leader(b, 0.0))
    return leader, next(b for b in backends if b is not leader)


def wait_until(pred: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `pred` until truthy; raise naming `what` when `timeout` s pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for: {what}")
