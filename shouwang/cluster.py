"""N ingest workers and M backend processes on this machine: `shouwang run --ingest-workers N --backends M`.

How this works: `LocalCluster` is an async context manager. It uses the configured broker and PostgreSQL,
or starts a private Mosquitto (MQTT 5, persistence on, in data_dir/mosquitto) and a private PostgreSQL (in
data_dir/postgres) when none is configured. Then it starts each process kind as a child, exactly as a real
deployment runs them (`shouwang backend`, `shouwang ingest`), passing the shared addresses in the
environment (SHOUWANG_BROKER__URL, SHOUWANG_STORAGE__ALARM_DB_URL, SHOUWANG_INGEST__SHARE_GROUP). The private
Mosquitto admits no anonymous client: the children and the simulator use the service login of
data_dir/broker-access.json (SHOUWANG_BROKER__USERNAME/PASSWORD), each gateway its own, under the production
ACL; the children's client ids carry the install's random suffix (SHOUWANG_BROKER__CLIENT_ID_PREFIX). It is ready
when every child printed its `ready` line. A child that dies is started again after one second with the same
name (systemd's Restart=always), so its MQTT session and journal carry on. Optionally it runs the simulated
community in this process. On exit: simulator, ingest workers, backends (SIGTERM, in that order), then the
services it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from backend.settings import Settings
from backend.sites.model import SiteDirectory
from broker.embedded import SERVICE_USER, BrokerAccess, free_port, install_suffix, load_access
from broker.mosquitto import render_acl, render_passwords
from broker.process import MosquittoProcess, open_config

__all__ = ["Child", "LocalCluster"]

log = logging.getLogger(__name__)
_RESTART_S = 1.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    info: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0


class LocalCluster:
    def __init__(self, settings: Settings, sites: SiteDirectory, *, ingest_workers: int, backends: int, config: Path | None = None,
                 base_port: int | None = None) -> None:
        self.settings = settings
        self.sites = sites
        self.n, self.m = ingest_workers, backends
        self.config = config
        self.base_port = settings.api.port if base_port is None else base_port
        self.children: list[Child] = []
        self.broker_url = settings.broker.url
        self.broker_username: str | None = None
        self.broker_password: str | None = None
        self.db_url = settings.storage.alarm_db_url
        self.simulating = False
        self._stack = contextlib.AsyncExitStack()
        self._closing = False

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        data = s.storage.data_dir.resolve()
        data.mkdir(parents=True, exist_ok=True)
        suffix = await asyncio.to_thread(install_suffix, data)
        login: dict[str, str] = {}
        if self.broker_url is None:
            port = free_port()
            access = await asyncio.to_thread(self._write_private_broker_files, data / "mosquitto")
            mosq = MosquittoProcess(data / "mosquitto", port=port, config=open_config(
                port, persistence_dir=data / "mosquitto" / "data", password_file=data / "mosquitto" / "passwords", acl_file=data / "mosquitto" / "acl"))
            await asyncio.to_thread(mosq.start)
            self._stack.callback(mosq.stop)
            self.broker_url = f"mqtt://127.0.0.1:{port}"
            self.broker_username, self.broker_password = SERVICE_USER, access.service_password
            login = {"SHOUWANG_BROKER__USERNAME": SERVICE_USER, "SHOUWANG_BROKER__PASSWORD": access.service_password}
        elif s.broker.username is not None:
            self.broker_username = s.broker.username
            self.broker_password = s.broker.password.get_secret_value() if s.broker.password is not None else None
        if self.db_url is None:
            from backend.store.pg_local import LocalPostgres

            pg = LocalPostgres(data / "postgres")
            await asyncio.to_thread(pg.start)
            self._stack.callback(pg.stop)
            self.db_url = pg.url
        env = {**os.environ, "SHOUWANG_BROKER__URL": self.broker_url, "SHOUWANG_STORAGE__ALARM_DB_URL": self.db_url,
               "SHOUWANG_INGEST__SHARE_GROUP": s.ingest.share_group or "shouwang-ingest",
               "SHOUWANG_SIMULATE__SITE_FILE": str(s.simulate.site_file.resolve()),
               # unique to this install, so no gateway can guess (and take over) the ingest workers' persistent sessions
               "SHOUWANG_BROKER__CLIENT_ID_PREFIX": f"{s.broker.client_id_prefix}-{suffix}", **login}
        base = [sys.executable, "-m", "shouwang.cli"] + (["--config", str(self.config)] if self.config else [])
        for i in range(1, self.m + 1):
            port = 0 if self.base_port == 0 else self.base_port + i - 1
            self.children.append(Child(f"backend-{i}", [*base, "backend", "--name", f"backend-{i}", "--port", str(port),
                                                         "--data-dir", str(data / f"backend-{i}")], env))
        for i in range(1, self.n + 1):
            self.children.append(Child(f"ingest-{i}", [*base, "ingest", "--worker-id", str(i), "--data-dir", str(data / "ingest")], env))
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.push_async_callback(self._stop_children)
        for child in self.children:
            tg.create_task(self._supervise(child), name=f"supervise-{child.name}")
        for child in self.children:
            async with asyncio.timeout(120):
                while not child.ready.is_set():
                    if child.restarts >= 3:
                        raise RuntimeError(f"{child.name} failed to start three times; run it alone to see why: {' '.join(child.argv)}")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(child.ready.wait(), 0.5)
        if s.simulate.enabled:
            from shouwang.system import parse_mqtt_url
            from simulators.live import CommunitySimulator

            host, port = parse_mqtt_url(self.broker_url)
            await self._stack.enter_async_context(CommunitySimulator(self.sites, host, port, speed=s.simulate.speed, seed=s.simulate.seed,
                                                                     username=self.broker_username, password=self.broker_password))
            self.simulating = True

    def _write_private_broker_files(self, folder: Path) -> BrokerAccess:
        """The private Mosquitto's logins: this machine's processes share one (from broker-access.json, as the
        embedded broker's), each gateway of the site directory has its own, limited by the production ACL."""
        access = load_access(self.settings.storage.data_dir.resolve(), self.sites.gateways)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "passwords").write_text(render_passwords({SERVICE_USER: access.service_password, **access.gateways}), encoding="utf-8")
        (folder / "acl").write_text(render_acl(self.sites.gateways, SERVICE_USER, notify_user=None, local_service=True), encoding="utf-8")
        for name in ("passwords", "acl"):
            (folder / name).chmod(0o600)
        return access

    async def _supervise(self, child: Child) -> None:
        while not self._closing:
            child.proc = await asyncio.create_subprocess_exec(*child.argv, env=child.env, stdout=asyncio.subprocess.PIPE)
            assert child.proc.stdout is not None
            async for raw in child.proc.stdout:
                with contextlib.suppress(json.JSONDecodeError):
                    line = json.loads(raw)
                    if line.get("event") == "ready":
                        child.info = line
                        child.ready.set()
                    elif line.get("event") == "leader":
                        child.info["leader"] = line["leader"]
                        log.info("%s %s the rules leader", child.name, "is now" if line["leader"] else "is no longer")
            code = await child.proc.wait()
            if self.closing():
                return
            child.restarts += 1
            log.warning("%s exited with %s; starting it again in %.0f s", child.name, code, _RESTART_S)
            await asyncio.sleep(_RESTART_S)

    def closing(self) -> bool:
        return self._closing

    async def _stop_children(self) -> None:
        self._closing = True
        for kind in ("ingest-", "backend-"):  # stop intake first, then the backends
            procs = [c.proc for c in self.children if c.name.startswith(kind) and c.proc is not None and c.proc.returncode is None]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 30)
                except TimeoutError:
                    p.kill()
                    await p.wait()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
