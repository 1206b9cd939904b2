"""/metrics in Prometheus text format, scraped from a running backend and from a `shouwang ingest` worker on its
own port: the life-safety latency histogram moves after a smoke alarm (ingest stage in both; the raise stage where
the rules run), messages in are counted, and the figures read from the alarm database are there."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.server import Backend
from backend.settings import load_settings
from backend.sites import SiteDirectory
from backend.store.pg_local import LocalPostgres
from broker.kinds import EventKind
from broker.process import MosquittoProcess
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from tests.conftest import REPO, SAMPLE_SITE
from tests.processes import JsonLineProcess, fresh_database
from tests.scaleout.procs import POLICY, shouwang, write_config
from tests.waiting import until

pytestmark = [pytest.mark.mosquitto]
HIST = "shouwang_life_safety_latency_seconds"


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def smoke_alarm(sites: SiteDirectory, port: int, msg_id: str) -> str:
    smoke = next(d for d in sites.devices.values() if d.kind == "smoke" and d.household)
    now = int(time.time() * 1000)
    async with aiomqtt.Client("127.0.0.1", port) as mqtt:
        await mqtt.publish(event_topic(smoke.gateway, smoke.id), encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now,
                                                                                     event=EventKind.SMOKE_ALARM)), qos=1)
    return smoke.id


@pytest.fixture
async def backend(tmp_path: Path, sample_site: SiteDirectory, mosquitto: MosquittoProcess) -> AsyncIterator[Backend]:
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE}, patrol={"enabled": False})
    async with Backend(settings, sample_site, "127.0.0.1", mosquitto.port) as b:
        yield b


async def test_backend_metrics_move_after_a_smoke_alarm(backend: Backend, sample_site: SiteDirectory, mosquitto: MosquittoProcess) -> None:
    async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
        r = await http.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=")
        before = scrape(r.text)
        assert value(before, f"{HIST}_count", stage="ingest") == 0
        assert value(before, "shouwang_store_up") == 1
        await smoke_alarm(sample_site, mosquitto.port, "metrics-smoke-1")

        texts: list[str] = []

        async def moved() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            texts.append((await http.get("/metrics")).text)
            now = scrape(texts[-1])
            return now if value(now, f"{HIST}_count", stage="raise") >= 1 else None

        after = await until(moved, 20, "the raise stage of the life-safety histogram to count the smoke alarm")
    assert value(after, f"{HIST}_count", stage="ingest") >= 1
    assert value(after, f"{HIST}_bucket", stage="ingest", le="+Inf") >= 1
    assert value(after, "shouwang_ingest_messages_total") > value(before, "shouwang_ingest_messages_total")
    open_life_safety = sum(v for (name, labels), v in after.items() if name == "shouwang_alarms_open" and ("life_safety", "true") in labels)
    assert open_life_safety >= 1, "the smoke alarm is counted among the open alarms (whatever state its ladder has reached)"
    assert ("shouwang_memory_bytes", frozenset({("holder", "rss")})) in after
    assert value(after, "shouwang_event_loop_lag_seconds_count") > 0
    assert any(name == "shouwang_notify_outbox" for name, _ in after)
    # The Grafana dashboard is built on these names (cluster-only ones come from the rules seat's stats).
    dashboard = (REPO / "deploy" / "grafana" / "shouwang-operations.json").read_text(encoding="utf-8")
    used = {re.sub(r"_(bucket|count|sum)$", "", n) for n in re.findall(r"shouwang_[a-z_]+", dashboard)} - {"shouwang_prometheus"}
    families = {fam.name for fam in text_string_to_metric_families(texts[-1])}  # a family with no samples yet (no late step) counts
    served = families | {"shouwang_rules_leader", "shouwang_uplink_queue_pending"}
    assert {re.sub(r"_total$", "", n) for n in used} <= served, "the dashboard uses a metric no process serves"


@pytest.mark.postgres
@pytest.mark.slow
def test_ingest_worker_serves_metrics_and_readiness_on_its_own_port(tmp_path: Path, sample_site: SiteDirectory, mosquitto: MosquittoProcess,
                                                                    postgres_server: LocalPostgres) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    config = write_config(tmp_path / "shouwang.toml", broker_port=mosquitto.port, db=fresh_database(postgres_server, "ops"), site=SAMPLE_SITE,
                          policy=policy, sms_url="http://127.0.0.1:9/sms")
    worker = JsonLineProcess("ingest-1", shouwang(config, "ingest", "--worker-id", "m1", "--data-dir", str(tmp_path / "ingest"),
                                                  "--metrics-port", "0")).start()
    try:
        ready = worker.wait_for(lambda ln: ln.get("event") == "ready", 60)
        url = ready["metrics_url"]
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/livez").status_code == 200
            readyz = http.get("/readyz")
            assert readyz.status_code == 200, readyz.text
            assert {"broker_ingest", "ingest", "uplink_queue"} <= set(readyz.json()["checks"])
            before = scrape(http.get("/metrics").text)
            assert value(before, "shouwang_process_info", process="ingest") == 1
            asyncio.run(smoke_alarm(sample_site, mosquitto.port, "metrics-smoke-2"))
            deadline = time.monotonic() + 20
            while True:
                after = scrape(http.get("/metrics").text)
                if value(after, f"{HIST}_count", stage="ingest") >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert value(after, f"{HIST}_count", stage="ingest") >= 1, "the ingest worker's life-safety histogram did not move"
        assert value(after, "shouwang_ingest_messages_total") >= 1
        assert value(after, "shouwang_event_loop_lag_seconds_count") > 0
    finally:
        worker.stop()


def test_the_bare_ingest_runner_serves_metrics_on_request(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "backend.ingest", "--broker", f"127.0.0.1:{mosquitto.port}", "--data-dir", str(tmp_path / "ingest"),
                             "--metrics-port", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("metrics on "), first
        url = first.split()[-1].removesuffix("/metrics")
        assert proc.stdout.readline().strip() == "ingest ready"
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/readyz").status_code == 200
            assert value(scrape(http.get("/metrics").text), "shouwang_process_info", process="ingest") == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
