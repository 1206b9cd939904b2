"""Process helpers for the scale-out tests: `shouwang ingest` / `shouwang backend` subprocesses, a settings
file for them, an SMS webhook receiver that counts deliveries, and a QoS 1 publisher of a community's uplink."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from backend.store.pg_local import LocalPostgres
from tests.conftest import REPO

POLICY = """\
rungs:
  gw: {seat: grid_worker, channels: [sms], deadlines: {acknowledged: 2.0}}
  bl: {seat: building_leader, channels: [sms], deadlines: {acknowledged: 2.0}}
  duty: {seat: duty_officer, channels: [sms], deadlines: {acknowledged: 2.0}}
policies:
  - {name: test, entry: [gw], ladder: [bl, duty]}
"""


def fresh_database(pg: LocalPostgres) -> str:
    name = f"so_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


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


@dataclass
class Proc:
    name: str
    argv: list[str]
    proc: subprocess.Popen[str] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    q: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Proc:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        self.q = queue.Queue()
        proc = self.proc

        def read_out() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                self.lines.append(line)
                self.q.put(line)

        def read_err() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                self.stderr.append(raw)

        self.threads = [threading.Thread(target=fn, daemon=True, name=f"{self.name}-{what}") for fn, what in ((read_out, "stdout"), (read_err, "stderr"))]
        for t in self.threads:
            t.start()
        return self

    def _reap(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        for t in self.threads:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.05)
            except queue.Empty:
                if self.proc is not None and self.proc.poll() is not None and self.q.empty():
                    break
                continue
            if pred(line):
                return line
        raise AssertionError(f"{self.name}: nothing matched within {timeout} s; stderr: {''.join(self.stderr)[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()


def shouwang(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shouwang.cli", "--config", str(config), *args]


class SmsReceiver(BaseHTTPRequestHandler):
    keys: ClassVar[Counter[str]] = Counter()
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            self.keys[self.headers.get("Idempotency-Key", "")] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "ok"}')

    def log_message(self, format: str, *args: object) -> None:
        return


def start_receiver() -> tuple[ThreadingHTTPServer, str]:
    SmsReceiver.keys = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SmsReceiver)
    threading.Thread(target=server.serve_forever, daemon=True, name="sms-receiver").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/sms"


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


def wait_until(pred: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `pred` until truthy; raise naming `what` when `timeout` s pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for: {what}")
