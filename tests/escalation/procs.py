"""Process-level helpers: a tiny site, short test policies, fresh PostgreSQL databases, worker subprocesses."""

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.store.pg_local import LocalPostgres
from tests.conftest import REPO

TINY_SITE = """\
street: 测试街道
communities:
  - {id: c01, name: 测试社区}
grids:
  - {id: c01-g1, name: 第1网格, community: c01}
buildings:
  - {id: c01-b01, name: 1号楼, grid: c01-g1, floors: 6, units: 1, x: 0.0, y: 0.0}
households:
  - {id: c01-b01-1-101, building: c01-b01, unit: 1, room: '101'}
gateways:
  - {id: c01-gw-b01, community: c01, building: c01-b01}
devices:
  - {id: c01-b01-smoke, kind: smoke, gateway: c01-gw-b01, building: c01-b01, unit: 1}
fire_stations:
  - {id: c01-mfs, name: 微型消防站, community: c01}
volunteer_teams: []
responders:
  - {id: gw1, name: 网格员甲, role: grid_worker, phone: '13800000001', community: c01, grid: c01-g1}
  - {id: bl1, name: 楼栋长乙, role: building_leader, phone: '13800000002', community: c01, building: c01-b01, grid: c01-g1}
  - {id: duty1, name: 值班员丙, role: duty_officer, phone: '13800000003', community: c01}
shifts:
  - {seat: grid_worker, scope: c01-g1, responder: gw1, start: '00:00', end: '24:00'}
  - {seat: building_leader, scope: c01-b01, responder: bl1, start: '00:00', end: '24:00'}
  - {seat: duty_officer, scope: c01, responder: duty1, start: '00:00', end: '24:00'}
"""


def policy_yaml(*, repeat_s: float, gw_ack_s: float, next_ack_s: float) -> str:
    return f"""\
rungs:
  gw: {{seat: grid_worker, channels: [sms], deadlines: {{acknowledged: {gw_ack_s}}}, repeat: {{every: {repeat_s}, times: 1}}}}
  bl: {{seat: building_leader, channels: [sms], deadlines: {{acknowledged: {next_ack_s}}}}}
  duty: {{seat: duty_officer, channels: [sms], deadlines: {{acknowledged: {next_ack_s}}}}}
policies:
  - {{name: test, entry: [gw], ladder: [bl, duty]}}
"""


def fresh_database(pg: LocalPostgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[str]
    spawned_ms: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    q: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        for line in self.lines:
            if pred(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None and self.q.empty():
                    break
                continue
            if pred(line):
                return line
        raise AssertionError(f"worker {self.name}: nothing matched within {timeout} s; stderr: {''.join(self.stderr)[-2000:]}")

    def steps(self) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if ln.get("event") == "step"]

    def kill(self) -> None:
        """kill -9, then collect what it printed before it died."""
        self.proc.kill()
        self._reap()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        self.proc.wait()
        for t in self.threads:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def spawn_worker(name: str, db: str, site: Path, policy: Path, *, webhook: str | None = None) -> Worker:
    cmd = [sys.executable, "-m", "backend.escalation.worker", "--db", db, "--site", str(site), "--policy-file", str(policy),
           "--worker-id", name, "--poll", "0.1"]
    if webhook:
        cmd += ["--webhook", webhook]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    w = Worker(name, proc, time.time_ns() // 1_000_000)

    def read_out() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue
            w.lines.append(line)
            w.q.put(line)

    def read_err() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            w.stderr.append(raw)

    w.threads = [threading.Thread(target=read_out, daemon=True, name=f"{name}-stdout"),
                 threading.Thread(target=read_err, daemon=True, name=f"{name}-stderr")]
    for t in w.threads:
        t.start()
    return w
