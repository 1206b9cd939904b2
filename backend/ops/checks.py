"""The readiness checks /readyz runs (backend/api/health.py), and the wiring of a process's metrics.

How this works: each check is a small async function over a component the process already runs; it reads
that component's own state (connected flags, running tasks, backlog) or asks the database one cheap
question in a worker thread. `instrument_backend` registers what a backend's role runs and hooks its
metrics; `ingest_readiness` and `ingest_metrics` do the same for a `shouwang ingest` worker.

Checks, by name:
- `database`: the alarm database answers `SELECT 1` within ops.ready_db_timeout_s;
- `broker_ingest`, `broker_publisher`: the MQTT connections of ingest and of the notice publisher are up;
- `live_feed`: the console's live feed started and its watcher tasks still run;
- `ingest`: the pipeline runs and its telemetry backlog is under ops.ready_max_backlog;
- `ingest` also fails while alerting is unavailable (the pipeline's `alerting_down`: events wait in the journal);
- `alarm_disk`: the last sync to the disk of alarms alerting committed worked (the pipeline's `sync_failed_since_ms`);
- `rules_leader` (cluster): some backend holds the rules seat (the PostgreSQL advisory lock relay.lock_key);
- `uplink_queue`: on an ingest worker, the PostgreSQL uplink queue answers; on a cluster backend, its oldest
  waiting row is younger than ops.ready_max_queue_age_s and this backend, when leader, is not retrying a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from backend.ops.metrics import Metrics
from backend.ops.readiness import Readiness, Verdict
from backend.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from backend.ingest.service import IngestService
    from backend.loopwatch import LoopWatch
    from backend.relay.leader import RulesSeat
    from backend.stream import CentreStream
    from broker.clock import Clock

__all__ = ["database_check", "disk_check", "feed_check", "ingest_readiness", "instrument_backend", "leader_check", "queue_check"]


def database_check(engine: sa.Engine, timeout_s: float) -> Callable[[], Any]:
    def probe() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()

    async def check() -> Verdict:
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.to_thread(probe)
        except TimeoutError:
            return Verdict(False, f"{engine.dialect.name} did not answer within {timeout_s:g} s")
        except sa.exc.SQLAlchemyError as exc:
            return Verdict(False, f"{engine.dialect.name} unreachable: {str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).strip()[:200]}")
        return Verdict(True, engine.dialect.name)

    return check


def connected_check(what: str, connected: Callable[[], bool]) -> Callable[[], Any]:
    async def check() -> Verdict:
        return Verdict(True, "connected") if connected() else Verdict(False, f"{what} is not connected to the broker")

    return check


def feed_check(feed: Callable[[], Any]) -> Callable[[], Any]:
    async def check() -> Verdict:
        f = feed()
        if f is None or not f.ready.is_set():
            return Verdict(False, "the live feed is not running")
        dead = [t.get_name() for t in getattr(f, "_tasks", []) if t.done()]
        return Verdict(False, f"live feed task ended: {', '.join(dead)}") if dead else Verdict(True, "running")

    return check


def ingest_check(ingest: IngestService, max_backlog: int) -> Callable[[], Any]:
    async def check() -> Verdict:
        pipeline = ingest.pipeline
        if not pipeline.running:
            return Verdict(False, "the ingest pipeline is not running")
        down_since = getattr(pipeline.lanes, "alerting_down_since_ms", None)
        if down_since is not None:
            why = getattr(pipeline.lanes, "alerting_down_why", "")
            return Verdict(False, f"alerting unavailable since {down_since} ms ({why}): events wait in the journal and are offered again")
        backlog = pipeline.backlog()
        if backlog > max_backlog:
            return Verdict(False, f"ingest is not keeping up: {backlog} telemetry messages wait for the store (limit {max_backlog})")
        return Verdict(True, f"backlog {backlog}")

    return check


def disk_check(ingest: IngestService) -> Callable[[], Any]:
    """The alarm store's disk takes its syncs: fails from a failed sync of committed alarms (they are stored and on the
    console, but a power cut could lose the last of them; ingest keeps them pending in its journal) until one works again."""

    async def check() -> Verdict:
        lanes = ingest.pipeline.lanes
        since = getattr(lanes, "sync_failed_since_ms", None)
        if since is not None:
            return Verdict(False, f"the alarm file could not be synced to the disk since {since} ms ({getattr(lanes, 'sync_failed_why', '')}): "
                                  "the last alarms would not survive a power cut; they stay pending in ingest's journal; check the disk")
        return Verdict(True, "syncing")

    return check


def leader_check(engine: sa.Engine, lock_key: int, timeout_s: float) -> Callable[[], Any]:
    """Some session holds the rules leader's advisory lock (pg_try_advisory_lock(bigint) < 2^32: classid 0, objsubid 1)."""

    def probe() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = :key AND objsubid = 1"
            ), {"key": lock_key}).scalar_one())

    async def check() -> Verdict:
        async with asyncio.timeout(timeout_s):
            held = await asyncio.to_thread(probe)
        return Verdict(True, "a backend holds the rules seat") if held else Verdict(False, "no backend holds the rules seat: alarms wait in the queue")

    return check


def queue_check(seat: RulesSeat, queue_url: str, clock: Clock, max_age_s: float) -> Callable[[], Any]:
    """Scale-out: rows do not pile up in the uplink queue (its oldest waits less than `max_age_s`), and this backend,
    when leader, is not stuck retrying one row (backend/relay/leader.py parks a row after bounded retries)."""
    from backend.relay.queue import UplinkQueue

    def probe(now_ms: int) -> dict[str, int | None]:
        queue = UplinkQueue(queue_url)  # a connection per probe, closed at once: nothing left open between probes
        try:
            return queue.backlog(now_ms)
        finally:
            queue.close()

    async def check() -> Verdict:
        backlog = await asyncio.to_thread(probe, clock.now_ms())
        age_ms = backlog.get("oldest_pending_age_ms")
        if age_ms is not None and age_ms > max_age_s * 1000:
            return Verdict(False, f"the uplink queue is stuck: {backlog['pending']} rows wait, the oldest for {age_ms / 1000:.0f} s")
        retrying = seat.stuck().get("retrying") if seat.leader else None
        if retrying:
            return Verdict(False, f"the rules leader is retrying row {retrying.get('key')}: {retrying.get('reason')}")
        return Verdict(True, f"{backlog['pending']} rows waiting")

    return check


class BackendParts(Protocol):
    """What `instrument_backend` reads of a running backend (backend.server.Backend is one): the parts it runs, its
    settings, its clock and stream. Optional parts (publisher, ingest) are read with getattr."""

    settings: Settings
    db: sa.Engine
    clock: Clock
    stream: CentreStream
    loopwatch: LoopWatch
    seat: RulesSeat | None


def instrument_backend(app: FastAPI, backend: BackendParts) -> None:
    """Register a backend's readiness checks and hook its metrics (called once the backend's parts have started)."""
    s = backend.settings.ops
    readiness: Readiness = app.state.readiness
    metrics: Metrics = app.state.metrics
    app.state.header_policy.hsts_max_age_s = s.hsts_max_age_s
    readiness.add("database", database_check(backend.db, s.ready_db_timeout_s))
    publisher = getattr(backend, "publisher", None)
    if publisher is not None:
        readiness.add("broker_publisher", connected_check("the notice publisher", lambda: bool(publisher.connected)))
    ingest = getattr(backend, "ingest", None)
    if ingest is not None:
        readiness.add("broker_ingest", connected_check("ingest", lambda: ingest.worker.connected))
        readiness.add("ingest", ingest_check(ingest, s.ready_max_backlog))
        readiness.add("alarm_disk", disk_check(ingest))
        metrics.watch_pipeline(ingest.pipeline.lanes)
    if backend.seat is not None:
        readiness.add("rules_leader", leader_check(backend.db, backend.settings.relay.lock_key, s.ready_db_timeout_s))
        queue_url = backend.settings.relay.queue_db_url or backend.settings.storage.alarm_db_url
        if queue_url is not None:
            readiness.add("uplink_queue", queue_check(backend.seat, queue_url, backend.clock, s.ready_max_queue_age_s))
    # Every alarm writer of this process (the alarm service, or each rules term's) publishes on the backend's stream.
    backend.stream.subscribe(metrics.alarm_listener(backend.clock.now_ms), name="metrics")
    backend.loopwatch.on_lag = metrics.loop_lag.observe


def ingest_readiness(settings: Settings, ingest: IngestService, queue_url: str | None) -> Readiness:
    """The checks of a `shouwang ingest` worker: broker, pipeline, and the PostgreSQL uplink queue."""
    readiness = Readiness()
    readiness.add("broker_ingest", connected_check("ingest", lambda: ingest.worker.connected))
    readiness.add("ingest", ingest_check(ingest, settings.ops.ready_max_backlog))
    if queue_url is not None:
        engine = sa.create_engine(queue_url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 2})  # a connection per probe
        readiness.add("uplink_queue", database_check(engine, settings.ops.ready_db_timeout_s))
    return readiness
