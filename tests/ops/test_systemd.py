"""systemd's notification protocol, against a real unix datagram socket standing in for systemd: `shouwang run`
sends READY=1 once it serves, feeds WATCHDOG=1 at half of WATCHDOG_USEC from its event loop, and says STOPPING=1
on SIGTERM; without NOTIFY_SOCKET nothing is sent; the watchdog is not fed by a process it was not meant for."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.ops import systemd
from tests.conftest import REPO, SAMPLE_SITE


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(60)
    yield sock
    sock.close()


def receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    while not any(wanted in m for m in seen):
        seen.append(sock.recv(4096).decode())


@pytest.mark.slow
def test_shouwang_run_notifies_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path, notify_socket: socket.socket) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000",
           "SHOUWANG_OPS__LOG_JSON": "true"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "shouwang.cli", "run", "--no-simulate", "--port", "0", "--data-dir", str(tmp_path / "var"),
                             "--sites", str(SAMPLE_SITE)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        receive_until(notify_socket, "READY=1", seen)
        ready = next(m for m in seen if "READY=1" in m)
        assert f"MAINPID={proc.pid}" in ready
        started = time.monotonic()
        while sum("WATCHDOG=1" in m for m in seen) < 3:
            seen.append(notify_socket.recv(4096).decode())
        assert time.monotonic() - started < 5, "the watchdog is fed about every 0.2 s"
        proc.send_signal(signal.SIGTERM)
        receive_until(notify_socket, "STOPPING=1", seen)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        logged = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
        assert any(e["message"].startswith("backend ready on") for e in logged), "every log line is one JSON object (ops.log_json)"
        assert all(e["time"].endswith("+00:00") for e in logged)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.watchdog_interval_s({}) is None


def test_the_watchdog_is_fed_only_by_the_process_systemd_named(notify_socket: socket.socket) -> None:
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    assert systemd.notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": notify_socket.getsockname()})
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


async def test_a_stalled_event_loop_stops_feeding_the_watchdog(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    notify_socket.settimeout(0)
    dog = systemd.Watchdog(0.02)
    dog.start()
    try:
        await asyncio.sleep(0.2)  # the loop runs: fed about every 20 ms
        fed_running = _drain(notify_socket)
        time.sleep(0.3)  # the loop stalls (a blocking call on it): nothing can feed the watchdog
        fed_stalled = _drain(notify_socket)
    finally:
        dog.stop()
    assert fed_running >= 3
    assert fed_stalled <= 1, "a stalled loop must not feed the watchdog (one timer already due may fire when it resumes)"


def _drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            assert sock.recv(64) == b"WATCHDOG=1"
        except BlockingIOError:
            return n
        n += 1
