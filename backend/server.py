"""The backend as one long-lived component: stores, ingest, rules, the ladder, the HTTP API and console.

How this works: `Backend` is an async context manager built on an AsyncExitStack. On entry it opens the
alarm database, creates the first admin login if there is none, and starts, in order: the alarm service
(the alerting core, re-deriving its timers from stored state), the outbound MQTT publisher, the escalation
runtime (the ladder, which fires whatever fell due while the process was down; the bridge starts and stops
a ladder as alarms change), the ingest service feeding the alarm service (journaled: it acknowledges only
what is durable), the live feed, and the HTTP server. It is ready (entered) once the server listens. On
exit everything stops in reverse: the HTTP server first, then intake drains, the ladder and the alarm
service stop and save their state, and the database closes last.

Two roles (issue 10, docs/scaling.md): `BackendRole.ALL` is the above, one process for a street.
`BackendRole.CLUSTER` is one of M `shouwang backend` processes on PostgreSQL: no ingest here (the
`shouwang ingest` workers fill the uplink queue), the alerting core runs in whichever backend holds the
rules seat (backend.relay.RulesSeat, leader by advisory lock), and every backend serves the API and steps the
ladder (exactly once across processes); console actions and ladder moves reach the leader through the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from backend.alarms.maintenance import MaintenanceSettings
from backend.alarms.rules import deployment_rules
from backend.alarms.service import AlarmService
from backend.alarms.store import AlarmStore
from backend.api import ApiDeps, create_app
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.centre import AlarmCore
from backend.escalation.runtime import EscalationRuntime
from backend.feed import LiveFeed
from backend.ingest.handoff import AlertingFeed
from backend.ingest.service import IngestService, open_store
from backend.loopwatch import LoopWatch
from backend.notify.publisher import MqttPublisher
from backend.ops.checks import instrument_backend
from backend.patrol.scheduler import PatrolTap
from backend.relay.leader import RulesSeat
from backend.relay.moves import QueuedMoves
from backend.settings import Settings
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.users import UserStore
from backend.stream import CentreStream
from backend.workorders import running_work_orders
from broker.clock import Clock, SystemClock

__all__ = ["Backend", "BackendRole"]

log = logging.getLogger(__name__)
_STARTUP_LOCK = 0x5357_0002  # PostgreSQL advisory lock key serialising the start-up of cluster backends


def _secret(data_dir: Path) -> bytes:
    path = data_dir / "secret.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class BackendRole(StrEnum):
    ALL = "all"  # ingest, rules, ladder and API in this one process (the embedded default)
    CLUSTER = "cluster"  # API and ladder; rules when leader; ingest in separate `shouwang ingest` workers


class Backend:
    def __init__(self, settings: Settings, sites: SiteDirectory, broker_host: str, broker_port: int, clock: Clock | None = None,
                 *, role: BackendRole = BackendRole.ALL, name: str = "backend", on_leader: Callable[[bool], None] | None = None) -> None:
        self.settings = settings
        self.on_leader = on_leader
        self.role = role
        self.name = name
        self.seat: RulesSeat | None = None
        self.sites = sites
        self.broker_host, self.broker_port = broker_host, broker_port
        self.clock = clock or SystemClock()
        self.stream = CentreStream()  # the centre's committed changes (backend.stream): feed, ladder and metrics subscribe
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
        self.rules = deployment_rules(s)  # the deployment's rules file, checked first: a wrong one stops the start (file:line)
        data_dir = s.storage.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.loopwatch = await self._stack.enter_async_context(LoopWatch(
            stall_log_ms=s.runtime.loop_stall_log_ms, full_gc_every_s=s.runtime.gc_full_every_s, trim_every_s=s.runtime.heap_trim_every_s))
        self.db = make_engine(s.storage.alarm_db_url or sqlite_url(data_dir / "alarms.db"))
        self._stack.callback(self.db.dispose)

        def open_stores() -> None:  # in a worker thread: migrations and a first admin's password hash (~3 s here) held the loop (issue 19)
            with self._startup_lock():
                self.users = UserStore(self.db)
                pw = s.api.admin_password.get_secret_value() if s.api.admin_password else None
                self.generated_admin_password = self.users.ensure_admin(s.api.admin_user, pw)
                if self.role is BackendRole.CLUSTER:
                    self.alarm_store = AlarmStore(self.db, self.sites.place_of_building)  # runs the migrations, one process at a time

        await asyncio.to_thread(open_stores)
        if self.generated_admin_password is not None:
            pw_file = data_dir / "admin-password.txt"
            pw_file.write_text(self.generated_admin_password + "\n")
            pw_file.chmod(0o600)
        if self.role is BackendRole.CLUSTER:
            deps = await self._start_cluster(data_dir)
        else:
            deps = await self._start_all(data_dir)

        def app_of(deps: ApiDeps) -> FastAPI:
            with self._startup_lock():  # create_app creates the console's tables
                return create_app(deps)

        app = await asyncio.to_thread(app_of, deps)  # building the routes' schemas held the loop ~1 s (issue 19)
        instrument_backend(app, self)  # /readyz checks and /metrics hooks of what this role runs (backend/ops)
        config = uvicorn.Config(app, host=s.api.host, port=s.api.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.callback(self._stop_http)  # runs before the TaskGroup waits for the server task
        tg.create_task(self._server.serve(), name="http-server")
        while not self._server.started:  # uvicorn offers no readiness event; its `started` flag is the signal
            if self._server.should_exit:
                raise RuntimeError(f"the HTTP server could not start on {s.api.host}:{s.api.port}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def _start_all(self, data_dir: Path) -> ApiDeps:
        s = self.settings
        # Entered in this order, left in reverse: HTTP stops first, then intake, then the core (patrol, the ladder's
        # bridge, the alarm service saving its state), the feed, the ladder's runtime and the publisher.
        self.publisher = await self._stack.enter_async_context(
            MqttPublisher(self.broker_host, self.broker_port, client_id=f"{s.broker.client_id_prefix}-publisher", username=s.broker.username,
                          password=s.broker.password.get_secret_value() if s.broker.password else None, backoff=s.broker.backoff())
        )
        signer = TokenSigner(_secret(data_dir))
        one_tap = OneTapLinks(signer, self.clock, s.escalation.link_base_url, s.escalation.link_ttl_s)
        # In a worker thread, as the ingest service below: the store's migrations and the site's per-device rule settings (~0.8 s
        # at a district) held the loop (issue 19).
        self.alarm_service = await asyncio.to_thread(
            AlarmService.for_sites, self.db, self.sites, self.clock, rules=self.rules, retention_days=s.storage.audit_retention_days,
            maintenance=MaintenanceSettings.of(s.maintenance), stream=self.stream)
        self.escalation = await self._stack.enter_async_context(
            EscalationRuntime(s.escalation, self.db, self.sites, self.clock, stream=self.stream, publish=self.publisher.publish, links=one_tap.link,
                              notify=s.notify)
        )
        self.feed = await self._stack.enter_async_context(LiveFeed(self.clock, stream=self.stream, store=self.alarm_service.store, sites=self.sites))
        core = await self._stack.enter_async_context(
            AlarmCore(self.alarm_service, self.escalation, s, self.sites, publish=self.publisher.publish, broker=(self.broker_host, self.broker_port))
        )
        self.bridge, self.patrol = core.bridge, core.patrol
        # Patrol answers go to the scheduler, everything on to the rules.
        feed: AlertingFeed = PatrolTap(self.patrol, self.alarm_service) if self.patrol is not None else self.alarm_service
        self.ingest = await self._stack.enter_async_context(  # built in a thread: its de-duplication window's prefill took ~1 s
            await asyncio.to_thread(IngestService, s, self.sites, self.broker_host, self.broker_port, feed=feed, clock=self.clock)
        )
        self.workorders = await self._stack.enter_async_context(running_work_orders(  # issue 17: hazard work orders, their overdue watch
            s, self.db, self.sites, self.clock, alarms=self.alarm_service.store, roster=self.escalation.roster))
        return ApiDeps(
            alarms=self.alarm_service.store, users=self.users, signer=signer, clock=self.clock,
            ingest_stats=self._ingest_stats, timeseries=self.ingest.store, sites=self.sites, alarm_service=self.alarm_service,
            escalation=self.escalation.service, stream=self.stream, feed=self.feed,
            extras={"one_tap": one_tap, "api": s.api, "site": s.site, "workorders": self.workorders, "notify": s.notify,
                    "alarms": s.alarms, "data_dir": data_dir},  # issue 17: comments' limits and photos folder, the archive period
        )

    async def _start_cluster(self, data_dir: Path) -> ApiDeps:
        """One of M backends: API, ladder, and the rules seat (the alerting core runs here while leader)."""
        s = self.settings
        if self.db.dialect.name != "postgresql":
            raise ValueError("a cluster backend needs PostgreSQL: set storage.alarm_db_url (see `shouwang config check`)")
        self.publisher = await self._stack.enter_async_context(
            MqttPublisher(self.broker_host, self.broker_port, client_id=f"{s.broker.client_id_prefix}-publisher-{self.name}",
                          username=s.broker.username, password=s.broker.password.get_secret_value() if s.broker.password else None,
                          backoff=s.broker.backoff())
        )
        signer = TokenSigner(_secret(data_dir))
        one_tap = OneTapLinks(signer, self.clock, s.escalation.link_base_url, s.escalation.link_ttl_s)
        queue_url = s.relay.queue_db_url or s.storage.alarm_db_url
        assert queue_url is not None
        self.moves = QueuedMoves(queue_url, self.alarm_store, self.clock, s.relay)
        self._stack.callback(self.moves.close)
        self.escalation = await self._stack.enter_async_context(
            EscalationRuntime(s.escalation, self.db, self.sites, self.clock, stream=self.stream, publish=self.publisher.publish,
                              links=one_tap.link, worker_id=self.name, notify=s.notify)
        )
        # The leader also runs patrol (巡检) for its term, sending the commands through this backend's publisher.
        self.seat = await self._stack.enter_async_context(RulesSeat(
            s, self.db, self.sites, self.clock, self.escalation, stream=self.stream, name=self.name, on_change=self.on_leader,
            publish=self.publisher.publish, broker=(self.broker_host, self.broker_port),
        ))
        # The rules may run in another backend: the alarm table is the feed's durable source (this process's own
        # term, while it leads, also publishes on the stream; the feed shows each change once).
        self.feed = await self._stack.enter_async_context(
            LiveFeed(self.clock, stream=self.stream, store=self.alarm_store, sites=self.sites, watch_store=True)
        )
        # A shared time-series store (InfluxDB) serves charts from any backend; the embedded SQLite one is per ingest worker.
        timeseries = open_store(s, self.sites) if s.timeseries.backend == "influx" else None
        if timeseries is not None:
            self._stack.callback(timeseries.close)
        seat = self.seat

        def stats() -> dict[str, object]:
            return {"role": "cluster", "name": self.name, "rules_leader": seat.leader, "rules_terms": seat.terms, **seat.stats,
                    "loop": self.loopwatch.snapshot()}

        self.workorders = await self._stack.enter_async_context(running_work_orders(  # issue 17: each backend checks; the version column escalates once
            s, self.db, self.sites, self.clock, alarms=self.alarm_store, roster=self.escalation.roster))
        return ApiDeps(
            alarms=self.alarm_store, users=self.users, signer=signer, clock=self.clock, ingest_stats=stats, timeseries=timeseries,
            sites=self.sites, alarm_service=self.moves, escalation=self.escalation.service, stream=self.stream, feed=self.feed,
            extras={"one_tap": one_tap, "api": s.api, "site": s.site, "workorders": self.workorders, "notify": s.notify,
                    "alarms": s.alarms, "data_dir": data_dir},  # issue 17: comments' limits and photos folder, the archive period
        )

    @contextlib.contextmanager
    def _startup_lock(self) -> Iterator[None]:
        """Backends starting together on one PostgreSQL create tables, migrate and create the first login one at a time."""
        if self.db.dialect.name != "postgresql":
            yield
            return
        with self.db.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _STARTUP_LOCK})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _STARTUP_LOCK})
                conn.commit()

    def _ingest_stats(self) -> dict[str, object]:
        return {**self.ingest.stats(), "loop": self.loopwatch.snapshot()}

    def _stop_http(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
