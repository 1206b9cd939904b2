"""Stop and restart the ingest worker (a child process, SIGKILL once and SIGTERM once) mid-stream on a real
Mosquitto: no message is lost and none is stored twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.ingest.journal import Journal
from broker.process import MosquittoProcess
from tests.conftest import REPO
from tests.ingest.helpers import Publisher

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


class WorkerProcess:
    def __init__(self, broker: MosquittoProcess, data_dir: Path) -> None:
        self.broker, self.data_dir = broker, data_dir
        self.proc: subprocess.Popen[str] | None = None
        self.outputs: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.ingest", "--broker", f"{self.broker.host}:{self.broker.port}", "--data-dir", str(self.data_dir),
             "--feed-log", str(self.data_dir / "feed.jsonl"), "--client-id", "ingest-under-test"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "SHOUWANG_INGEST__BATCH_LINGER_MS": "2", "SHOUWANG_INGEST__STORE_RETRY_MIN_S": "0.05"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "ingest ready" in line, f"the worker did not start: {line}{self.proc.stdout.read()}"

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        self.proc.send_signal(sig)
        self.outputs.append(self.proc.communicate(timeout=30)[0])
        self.proc = None


@pytest.fixture
def worker(mosquitto: MosquittoProcess, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(mosquitto, tmp_path / "var")
    yield w
    if w.proc is not None:
        w.proc.kill()
        w.proc.communicate(timeout=30)


def stored(db: Path) -> list[tuple[str, str, int, float]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        tables = [n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'raw_%'")]
        return [row for t in tables for row in c.execute(f"SELECT s.device, s.metric, r.ts_ms, r.value FROM {t} r JOIN series s ON s.id = r.series_id")]


def minute_counts(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        tables = [n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'm1_%'")]
        return sum(c.execute(f"SELECT coalesce(sum(n), 0) FROM {t}").fetchone()[0] for t in tables)


def test_killing_and_restarting_the_worker_mid_stream_loses_none_and_duplicates_none(worker: WorkerProcess, mosquitto: MosquittoProcess) -> None:
    worker.start()  # subscribes once: from here the broker keeps its session while it is away
    pub = Publisher(mosquitto.host, mosquitto.port, count=3000, rate=500, event_every=100).start()
    try:
        for at, sig in ((1.5, signal.SIGKILL), (3.5, signal.SIGTERM)):
            while pub.sent < at * 500:
                time.sleep(0.02)
            worker.stop(sig)
            time.sleep(0.5)  # the stream goes on while no worker is there
            worker.start()
        assert pub.done.wait(60), "the publisher did not finish"
        db = worker.data_dir / "timeseries.sqlite"
        deadline = time.monotonic() + 60
        while len(stored(db)) < len(pub.expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.stop(signal.SIGTERM)
    finally:
        pub.close()
    rows = stored(db)
    assert set(rows) == pub.expected, f"{len(pub.expected - set(rows))} readings lost"
    assert len(rows) == len(pub.expected)
    assert minute_counts(db) == len(rows), "a replay was counted twice in the rollups"
    keys = Journal(worker.data_dir / "ingest" / "telemetry.journal").keys()
    assert len(keys) == len(set(keys)) == 3000, "a redelivered message was journaled twice"
    ukeys = Journal(worker.data_dir / "ingest" / "uplink.journal").keys()
    assert sorted(ukeys) == sorted(f"gw1/{e}" for e in pub.events)
    delivered = [json.loads(line)["msg_id"] for line in (worker.data_dir / "feed.jsonl").read_text().splitlines()]
    assert set(delivered) == set(pub.events), "an event never reached alerting"
    stats = json.loads(worker.outputs[-1].strip().splitlines()[-1])
    assert stats["backlog"] == 0
