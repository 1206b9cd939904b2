"""Run a real Mosquitto as a child process: for tests, benchmarks and `shouwang run --broker mosquitto`.

How this works: a configuration is written into a private folder, Mosquitto is started on a port chosen
free on loopback, and readiness is a successful TCP connection (Mosquitto prints nothing when ready).
`stop()` and `start()` keep the port, so a client can be shown a broker that goes away and comes back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from broker.embedded import free_port
from broker.errors import BrokerError

__all__ = ["MosquittoNotInstalled", "MosquittoProcess", "find_mosquitto", "open_config"]


class MosquittoNotInstalled(BrokerError, RuntimeError):
    def __init__(self) -> None:
        super().__init__("mosquitto is not installed: run `apt-get install mosquitto` (the test command does this)")


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise MosquittoNotInstalled


def open_config(port: int, host: str = "127.0.0.1", persistence_dir: Path | None = None, *,
                password_file: Path | None = None, acl_file: Path | None = None) -> str:
    """A single-listener configuration: anonymous for tests that are not about authentication, or admitting only
    the logins of `password_file` under `acl_file` (the private broker of `shouwang run --ingest-workers N`).
    `persistence_dir` (created if missing): keep sessions and queued messages across a restart."""
    lines = [f"listener {port} {host}"]
    if password_file is None:
        lines.append("allow_anonymous true")
    else:
        lines += ["allow_anonymous false", f"password_file {password_file}"] + ([f"acl_file {acl_file}"] if acl_file is not None else [])
    lines += [
        "set_tcp_nodelay true",
        "max_queued_messages 1000000",
        "max_inflight_messages 1000",
    ]
    if persistence_dir is not None:
        # Mosquitto does not create it: without it, it only logs every autosave that it cannot write, and its sessions
        # die with it (the edge benchmark's outage step lost the counting subscriber's queue this way).
        persistence_dir.mkdir(parents=True, exist_ok=True)
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 1"]
    if os.geteuid() == 0:
        lines.append("user root")  # otherwise Mosquitto drops to 'mosquitto', who cannot write our folders
    return "\n".join(lines) + "\n"


class MosquittoProcess:
    """A Mosquitto child process. Use as a context manager, or call start()/stop() to simulate outages."""

    def __init__(self, workdir: Path, port: int | None = None, config: str | None = None, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.config = config if config is not None else open_config(self.port, host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "mosquitto.out"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config, encoding="utf-8")
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {self._log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout_s} s")

    def stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
