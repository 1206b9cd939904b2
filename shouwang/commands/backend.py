"""`shouwang backend`: one backend process of a scaled-out deployment (docs/deploy.md, docs/scaling.md).

It serves the HTTP API and console and steps the escalation ladder (exactly once across backends on
PostgreSQL), and takes part in the election of the rules leader: the one backend holding the PostgreSQL
advisory lock runs the alerting core on the uplink queue that the `shouwang ingest` workers fill. Start
two or more for availability. Prints JSON lines: `ready` (with the API URL) and `leader` on every change.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from backend.server import Backend, BackendRole
from backend.settings import Settings, load_settings
from shouwang.commands.common import load_sites, prepare_runtime, settle, stop_on_signals
from shouwang.commands.ingest import emit
from shouwang.system import parse_mqtt_url


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("backend", help="run one backend process (scale-out)", description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="backend-1", help="name of this process in logs, the ladder's step log and MQTT client ids")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default from settings: api.port; 0 picks a free one)")
    p.add_argument("--data-dir", type=Path, default=None, help="folder for this process's secrets and files")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, Any]] = {}
    if args.port is not None:
        overrides["api"] = {"port": args.port}
    if args.data_dir is not None:
        overrides["storage"] = {"data_dir": args.data_dir}
    settings = load_settings(args.config, **overrides)
    prepare_runtime(settings)
    problems = []
    if settings.broker.url is None:
        problems.append("broker.url is not set: backends of a cluster share one real broker")
    if not (settings.storage.alarm_db_url or "").startswith("postgresql"):
        problems.append("storage.alarm_db_url must name PostgreSQL: the alarm store, the ladder and the rules lock live there")
    if problems:
        print("cannot start a backend:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    sites = load_sites(settings.simulate.site_file)
    if sites is None:
        return 1
    return asyncio.run(_serve(settings, sites, args.name))


async def _serve(settings: Settings, sites: Any, name: str) -> int:
    stop = stop_on_signals()
    assert settings.broker.url is not None
    host, port = parse_mqtt_url(settings.broker.url)

    def on_leader(leader: bool) -> None:
        emit({"event": "leader", "name": name, "leader": leader})

    async with Backend(settings, sites, host, port, role=BackendRole.CLUSTER, name=name, on_leader=on_leader) as backend:
        settle(settings)
        emit({"event": "ready", "name": name, "url": backend.url, "admin_password": backend.generated_admin_password})
        await stop.wait()
        emit({"event": "stopped", "name": name})
    return 0
