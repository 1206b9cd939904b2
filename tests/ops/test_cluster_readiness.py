"""/readyz in the scale-out layout (real `shouwang backend` and `shouwang ingest` processes on Mosquitto and
PostgreSQL): a standby backend is ready while a rules leader holds the seat and the uplink queue flows; when the
leader freezes (SIGSTOP: it keeps the seat but applies nothing) and a smoke alarm waits in the queue longer than
ops.ready_max_queue_age_s, the standby's /readyz turns 503 naming the stuck queue, and ready again once the
leader resumes and the alarm is applied."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.sites import SiteDirectory
from backend.store.pg_local import LocalPostgres
from broker.process import MosquittoProcess
from tests.conftest import SAMPLE_SITE
from tests.ops.test_metrics import scrape, smoke_alarm, value
from tests.processes import JsonLineProcess, fresh_database
from tests.scaleout.procs import POLICY, leader_and_standby, shouwang, wait_until, write_config

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.slow]


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{url}/readyz", timeout=10)
    return r.status_code, r.json()


def test_a_frozen_rules_leader_makes_the_standby_report_a_stuck_queue(tmp_path: Path, sample_site: SiteDirectory, mosquitto: MosquittoProcess,
                                                                      postgres_server: LocalPostgres) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    cfg = write_config(tmp_path / "shouwang.toml", broker_port=mosquitto.port, db=fresh_database(postgres_server, "rz"), site=SAMPLE_SITE,
                       policy=policy, sms_url="http://127.0.0.1:9/sms")
    with cfg.open("a", encoding="utf-8") as f:
        f.write("[ops]\nready_max_queue_age_s = 2.0\n")
    backends = [JsonLineProcess(f"b{i}", shouwang(cfg, "backend", "--name", f"b{i}", "--data-dir", str(tmp_path / f"b{i}"))) for i in (1, 2)]
    worker = JsonLineProcess("w1", shouwang(cfg, "ingest", "--worker-id", "1", "--data-dir", str(tmp_path / "ingest")))
    procs = [*backends, worker]
    frozen: JsonLineProcess | None = None
    try:
        for p in procs:
            p.start()
        urls = {b.name: b.wait_for(lambda ln: ln["event"] == "ready", 90)["url"] for b in backends}
        worker.wait_for(lambda ln: ln["event"] == "ready", 90)
        leader, standby = leader_and_standby(backends)
        code, body = readyz(urls[standby.name])
        assert code == 200, body
        assert body["checks"]["rules_leader"]["ok"]
        assert body["checks"]["uplink_queue"]["ok"]

        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGSTOP)
        frozen = leader
        asyncio.run(smoke_alarm(sample_site, mosquitto.port, f"stuck-{time.time_ns()}"))
        wait_until(lambda: readyz(urls[standby.name])[0] == 503, 30, "the standby to report the stuck uplink queue")
        code, body = readyz(urls[standby.name])
        assert not body["checks"]["uplink_queue"]["ok"]
        assert "stuck" in body["checks"]["uplink_queue"]["detail"]
        assert body["checks"]["rules_leader"]["ok"], "the frozen leader still holds the seat: that is why the queue is stuck"

        os.kill(leader.proc.pid, signal.SIGCONT)
        frozen = None
        wait_until(lambda: readyz(urls[standby.name])[0] == 200, 60, "the standby ready again once the leader applies the queue")
        # The leader's term raised the smoke alarm: its /metrics shows the raise stage of the life-safety histogram.
        samples = scrape(httpx.get(f"{urls[leader.name]}/metrics", timeout=10).text)
        assert value(samples, "shouwang_life_safety_latency_seconds_count", stage="raise") >= 1
        assert value(samples, "shouwang_rules_leader") == 1
    finally:
        if frozen is not None and frozen.proc is not None:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        for p in procs:
            p.stop()
