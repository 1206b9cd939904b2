"""The backend as one long-lived component: stores, ingest, HTTP API and console.

How this works: `Backend` is an async context manager owning a TaskGroup. On entry it opens the stores,
creates the first admin login if there is none, connects and subscribes the ingest worker, and starts the
HTTP server; it is ready (entered) once the server listens. On exit it shuts down in order: stop the HTTP
server, stop intake, close the stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from backend.api import ApiDeps, create_app
from backend.api.tokens import TokenSigner
from backend.clock import Clock, SystemClock
from backend.ingest import IngestWorker
from backend.pipeline import Pipeline
from backend.settings import Settings
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmStore
from backend.store.db import make_engine, sqlite_url
from backend.store.users import UserStore

__all__ = ["Backend"]

log = logging.getLogger(__name__)


def _secret(data_dir: Path) -> bytes:
    path = data_dir / "secret.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class Backend:
    def __init__(self, settings: Settings, sites: SiteDirectory, broker_host: str, broker_port: int, clock: Clock | None = None) -> None:
        self.settings = settings
        self.sites = sites
        self.broker_host, self.broker_port = broker_host, broker_port
        self.clock = clock or SystemClock()
        self.generated_admin_password: str | None = None
        self.port = 0
        self._tg: asyncio.TaskGroup | None = None
        self._server: uvicorn.Server | None = None
        self._ingest: IngestWorker | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.api.host}:{self.port}"

    @property
    def ingest(self) -> IngestWorker:
        assert self._ingest is not None
        return self._ingest

    async def __aenter__(self) -> Self:
        s = self.settings
        data_dir = s.storage.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(s.storage.alarm_db_url or sqlite_url(data_dir / "alarms.db"))
        self.alarms = AlarmStore(engine)
        self.users = UserStore(engine)
        pw = s.api.admin_password.get_secret_value() if s.api.admin_password else None
        self.generated_admin_password = self.users.ensure_admin(s.api.admin_user, pw)
        if self.generated_admin_password is not None:
            pw_file = data_dir / "admin-password.txt"
            pw_file.write_text(self.generated_admin_password + "\n")
            pw_file.chmod(0o600)
        self.pipeline = Pipeline(self.sites, self.alarms)
        self._ingest = IngestWorker(
            self.pipeline, self.broker_host, self.broker_port, client_id=f"{s.broker.client_id_prefix}-ingest",
            share_group=s.ingest.share_group, username=s.broker.username,
            password=s.broker.password.get_secret_value() if s.broker.password else None,
            clock=self.clock, max_payload_bytes=s.ingest.max_payload_bytes,
        )
        await self._ingest.__aenter__()
        deps = ApiDeps(self.alarms, self.users, TokenSigner(_secret(data_dir)), self.clock, self._ingest_stats)
        config = uvicorn.Config(create_app(deps), host=s.api.host, port=s.api.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tg.create_task(self._server.serve(), name="http-server")
        while not self._server.started:
            if self._server.should_exit:
                raise RuntimeError(f"the HTTP server could not start on {s.api.host}:{s.api.port}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("backend ready on %s", self.url)
        return self

    def _ingest_stats(self) -> dict[str, object]:
        snap = self.ingest.stats.snapshot()
        snap["duplicates"] = self.pipeline.duplicates
        return snap

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._tg is not None:
            with contextlib.suppress(BaseExceptionGroup):
                await self._tg.__aexit__(None, None, None)
        if self._ingest is not None:
            await self._ingest.__aexit__(None, None, None)
        self.alarms.engine.dispose()
