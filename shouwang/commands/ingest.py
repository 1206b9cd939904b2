"""`shouwang ingest`: one ingest worker of a scaled-out deployment (docs/deploy.md, docs/scaling.md).

It subscribes to the gateways' uplink through the MQTT 5 shared subscription `ingest.share_group` on the
configured broker, journals and acknowledges, writes readings to the time-series store, and hands what
alerting needs to the PostgreSQL uplink queue (backend.relay.QueueFeed), where the rules leader picks it up.
Start as many as the load needs, each with its own `--worker-id` (stable across restarts: it names the MQTT
session that holds this worker's unacknowledged messages, and the journal that is replayed after a crash).
Prints one JSON line `{"event": "ready", ...}` when subscribed, and its counters on exit. With `--metrics-port`
(or ops.metrics_port) it serves /metrics, /livez and /readyz on that port (docs/operations.md); the ready
line then carries `metrics_url`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from backend.ingest.service import IngestService, open_store
from backend.loopwatch import LoopWatch
from backend.ops.checks import ingest_readiness
from backend.ops.endpoint import OpsEndpoint
from backend.ops.metrics import Metrics
from backend.relay.feed import QueueFeed
from backend.settings import Settings, load_settings
from shouwang.commands.common import load_sites, prepare_runtime, settle, stop_on_signals
from shouwang.system import parse_mqtt_url


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ingest", help="run one ingest worker (scale-out)", description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker-id", default="1", help="stable name of this worker (MQTT session, journal folder); default 1")
    p.add_argument("--data-dir", type=Path, default=None, help="folder for the journal and the embedded time-series store")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve /metrics, /livez and /readyz on this port (default from settings: ops.metrics_port; 0 picks a free one)")
    p.set_defaults(handler=_run)


def worker_settings(settings: Settings, worker_id: str, data_dir: Path | None) -> Settings:
    """This worker's own journal folder and (embedded store) time-series file; everything else shared."""
    storage = settings.storage.model_copy(update={"data_dir": data_dir} if data_dir else {})
    journal = (settings.ingest.journal_dir or storage.data_dir / "ingest") / f"worker-{worker_id}"
    ts = settings.timeseries
    if ts.backend == "sqlite" and ts.sqlite_path is None:
        ts = ts.model_copy(update={"sqlite_path": storage.data_dir / f"timeseries-{worker_id}.sqlite"})
    return settings.model_copy(update={"storage": storage, "ingest": settings.ingest.model_copy(update={"journal_dir": journal}), "timeseries": ts})


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _run(args: argparse.Namespace) -> int:
    settings = worker_settings(load_settings(args.config), args.worker_id, args.data_dir)
    prepare_runtime(settings)
    problems = []
    if settings.broker.url is None:
        problems.append("broker.url is not set: an ingest worker connects to a real broker (Mosquitto), not the embedded one")
    if not (settings.relay.queue_db_url or settings.storage.alarm_db_url or "").startswith("postgresql"):
        problems.append("storage.alarm_db_url (or relay.queue_db_url) must name PostgreSQL: the uplink queue lives there")
    if problems:
        print("cannot start an ingest worker:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    sites = load_sites(settings.simulate.site_file)
    if sites is None:
        return 1
    metrics_port = args.metrics_port if args.metrics_port is not None else settings.ops.metrics_port
    return asyncio.run(_serve(settings, sites, args.worker_id, metrics_port))


async def _serve(settings: Settings, sites: Any, worker_id: str, metrics_port: int | None = None) -> int:
    stop = stop_on_signals()
    assert settings.broker.url is not None
    host, port = parse_mqtt_url(settings.broker.url)
    url = settings.relay.queue_db_url or settings.storage.alarm_db_url
    assert url is not None
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    async with QueueFeed(url, settings.relay) as feed, IngestService(
        settings, sites, host, port, feed=feed, store=open_store(settings, sites), client_id=f"{settings.broker.client_id_prefix}-ingest-{worker_id}",
    ) as ingest, contextlib.AsyncExitStack() as ops:
        ready: dict[str, Any] = {"event": "ready", "worker": worker_id, "share_group": settings.ingest.share_group, "broker": settings.broker.url}
        if metrics_port is not None:
            ready["metrics_url"] = await _ops_endpoint(ops, settings, ingest, url, metrics_port)
        settle(settings)
        emit(ready)
        await stop.wait()
        emit({"event": "stopped", "worker": worker_id, "ingest": ingest.stats(), "queue": feed.stats})
    return 0


async def _ops_endpoint(stack: contextlib.AsyncExitStack, settings: Settings, ingest: IngestService, queue_url: str, port: int) -> str:
    """This worker's /metrics, /livez and /readyz on its own port (docs/operations.md); returns the URL."""
    loop = await stack.enter_async_context(LoopWatch(stall_log_ms=settings.runtime.loop_stall_log_ms))
    metrics = Metrics(stats=lambda: {**ingest.stats(), "loop": loop.snapshot()}, process="ingest")
    metrics.watch_pipeline(ingest.pipeline.lanes)
    loop.on_lag = metrics.loop_lag.observe
    endpoint = await stack.enter_async_context(OpsEndpoint(ingest_readiness(settings, ingest, queue_url), metrics, settings.ops.metrics_host, port))
    return endpoint.url
