"""Process-level helpers: a tiny site, short test policies, fresh PostgreSQL databases, worker subprocesses."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import JsonLineProcess, fresh_database

__all__ = ["TINY_SITE", "Worker", "fresh_database", "policy_yaml", "spawn_worker"]

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


@dataclass
class Worker(JsonLineProcess):
    """An escalation worker process; its waits count lines already read."""

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float, *, seen_too: bool = True) -> dict[str, Any]:
        return super().wait_for(pred, timeout, seen_too=seen_too)

    def steps(self) -> list[dict[str, Any]]:
        return [ln for ln in self.lines if ln.get("event") == "step"]

    def kill(self) -> None:
        self.kill9()

    def stop(self, grace_s: float = 20) -> None:
        super().stop(grace_s)


def spawn_worker(name: str, db: str, site: Path, policy: Path, *, webhook: str | None = None) -> Worker:
    cmd = [sys.executable, "-m", "backend.escalation.worker", "--db", db, "--site", str(site), "--policy-file", str(policy),
           "--worker-id", name, "--poll", "0.1"]
    if webhook:
        cmd += ["--webhook", webhook]
    return Worker(name, cmd).start()
