"""Shared by the process-level tests (tests/escalation, tests/scaleout): a subprocess that prints one JSON object
per line, read by threads as it runs; a fresh PostgreSQL database per test; an SMS gateway stand-in that counts
deliveries by idempotency key."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

import sqlalchemy as sa

from backend.store.pg_local import LocalPostgres
from tests.conftest import REPO

__all__ = ["JsonLineProcess", "SmsReceiver", "fresh_database", "start_receiver"]


@dataclass
class JsonLineProcess:
    """`argv` run from the repository; every stdout line that is JSON is kept (`lines`) and queued (`q`)."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[str] | None = None
    spawned_ms: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)
    q: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        self.spawned_ms = time.time_ns() // 1_000_000
        self.q = queue.Queue()

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

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float, *, seen_too: bool = False) -> dict[str, Any]:
        """The next line matching `pred` (taken from the queue); with `seen_too`, a line already read counts."""
        if seen_too:
            for line in self.lines:
                if pred(line):
                    return line
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
        """kill -9, then collect what it printed before it died."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self, grace_s: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        for t in self.threads:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def fresh_database(pg: LocalPostgres, prefix: str = "t") -> str:
    """A new, empty database on `pg`; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


class SmsReceiver(BaseHTTPRequestHandler):
    """An SMS gateway that answers 200 and counts each Idempotency-Key it was sent."""

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
    """A fresh count, a server on a free port, and its /sms URL."""
    SmsReceiver.keys = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SmsReceiver)
    threading.Thread(target=server.serve_forever, daemon=True, name="sms-receiver").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/sms"
