"""The backend as one long-lived component: stores, ingest, rules, the ladder, the HTTP API and console.

How this works: `Backend` is an async context manager built on an AsyncExitStack. On entry it opens the
alarm database, creates the first admin login if there is none, and starts, in order: the alarm service
(the alerting core, re-deriving its timers from stored state), the outbound MQTT publisher, the escalation
runtime (the ladder, which fires whatever fell due while the process was down; the bridge starts and stops
a ladder as alarms change), the ingest service feeding the alarm service (journaled: it acknowledges only
what is durable), the live feed, and the HTTP server. It is ready (entered) once the server listens. On
exit everything stops in reverse: the HTTP server first, then intake drains, the ladder and the alarm
service stop and save their state, and the database closes last.
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

from backend.alarms.service import AlarmService
from backend.api import ApiDeps, create_app
from backend.api.feed import LiveFeed
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.clock import Clock, SystemClock
from backend.escalation.bridge import AlarmLadderBridge
from backend.escalation.runtime import EscalationRuntime
from backend.ingest.service import IngestService
from backend.notify.console import LiveConsole
from backend.notify.publisher import MqttPublisher
from backend.settings import Settings
from backend.sites.model import SiteDirectory
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
        self._stack = contextlib.AsyncExitStack()
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.api.host}:{self.port}"

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        log.info("backend ready on %s", self.url)
        return self

    async def _start(self) -> None:
        s = self.settings
        data_dir = s.storage.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = make_engine(s.storage.alarm_db_url or sqlite_url(data_dir / "alarms.db"))
        self._stack.callback(self.db.dispose)
        self.users = UserStore(self.db)
        pw = s.api.admin_password.get_secret_value() if s.api.admin_password else None
        self.generated_admin_password = self.users.ensure_admin(s.api.admin_user, pw)
        if self.generated_admin_password is not None:
            pw_file = data_dir / "admin-password.txt"
            pw_file.write_text(self.generated_admin_password + "\n")
            pw_file.chmod(0o600)
        # Inner first, so that shutdown runs outer first: stop HTTP, stop intake, then the alarm service saves.
        self.alarm_service = await self._stack.enter_async_context(
            AlarmService.for_sites(self.db, self.sites, self.clock, retention_days=s.storage.audit_retention_days)
        )
        self.console = LiveConsole()
        self.publisher = await self._stack.enter_async_context(
            MqttPublisher(self.broker_host, self.broker_port, client_id=f"{s.broker.client_id_prefix}-publisher", username=s.broker.username,
                          password=s.broker.password.get_secret_value() if s.broker.password else None)
        )
        signer = TokenSigner(_secret(data_dir))
        one_tap = OneTapLinks(signer, self.clock, s.escalation.link_base_url, s.escalation.link_ttl_s)
        self.bridge = AlarmLadderBridge(self.alarm_service)
        self.escalation = await self._stack.enter_async_context(
            EscalationRuntime(s.escalation, self.db, self.sites, self.clock, console=self.console, publish=self.publisher.publish,
                              links=one_tap.link, on_advance=self.bridge.apply_move)
        )
        self.bridge.attach(self.escalation.service, self.escalation.roster)
        self.ingest = await self._stack.enter_async_context(
            IngestService(s, self.sites, self.broker_host, self.broker_port, feed=self.alarm_service, clock=self.clock)
        )
        self.feed = await self._stack.enter_async_context(
            LiveFeed(self.clock, alarms=self.alarm_service.store, console=self.console, sites=self.sites)
        )
        deps = ApiDeps(
            alarms=self.alarm_service.store, users=self.users, signer=signer, clock=self.clock,
            ingest_stats=self.ingest.stats, timeseries=self.ingest.store, sites=self.sites, alarm_service=self.alarm_service,
            escalation=self.escalation.service, console=self.console, feed=self.feed, extras={"one_tap": one_tap},
        )
        config = uvicorn.Config(create_app(deps), host=s.api.host, port=s.api.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.callback(self._stop_http)  # runs before the TaskGroup waits for the server task
        tg.create_task(self._server.serve(), name="http-server")
        while not self._server.started:  # uvicorn offers no readiness event; its `started` flag is the signal
            if self._server.should_exit:
                raise RuntimeError(f"the HTTP server could not start on {s.api.host}:{s.api.port}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def _stop_http(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
