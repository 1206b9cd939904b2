"""`shouwang run`: the whole system on embedded defaults (or on configured services)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from backend.settings import load_settings
from broker.embedded import BrokerStartError
from shouwang.commands.common import load_sites, prepare_runtime, settle, stop_on_signals
from shouwang.system import System


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="start the whole system",
        description="Start the whole system: the embedded MQTT broker (unless broker.url is set), storage, ingest, the HTTP API and "
        "console on 127.0.0.1, and a simulated community publishing live. Prints the console URL and the login it created.",
    )
    p.add_argument("--port", type=int, default=None, help="HTTP port of the API and console (default from settings: 8080)")
    p.add_argument("--data-dir", type=Path, default=None, help="folder for databases and secrets (default: var/)")
    p.add_argument("--sites", type=Path, default=None, help="site directory to serve (default: the sample community)")
    p.add_argument("--no-simulate", action="store_true", help="do not run the simulated community")
    p.add_argument("--demo-smoke", action="store_true", help="also a demo smoke alarm in the simulated community (drill-marked, 演示; simulate.demo_smoke)")
    p.add_argument("--no-demo", action="store_true", help="no demo events in the simulated community (simulate.demo_events = false)")
    p.add_argument("--ingest-workers", type=int, default=0, metavar="N",
                   help="scale out: N `shouwang ingest` workers on an MQTT 5 shared subscription (with --backends; docs/scaling.md)")
    p.add_argument("--backends", type=int, default=0, metavar="M",
                   help="scale out: M `shouwang backend` processes, one of them the rules leader; uses the configured broker and "
                        "PostgreSQL or starts a local Mosquitto and PostgreSQL")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, Any]] = {}
    if args.port is not None:
        overrides["api"] = {"port": args.port}
    if args.data_dir is not None:
        overrides["storage"] = {"data_dir": args.data_dir}
    sim: dict[str, Any] = {}
    if args.sites is not None:
        sim["site_file"] = args.sites
    if args.no_simulate:
        sim["enabled"] = False
    if args.demo_smoke:
        sim["demo_smoke"] = True
    if args.no_demo:
        sim["demo_events"] = False
    if sim:
        overrides["simulate"] = sim
    settings = load_settings(args.config, **overrides)
    prepare_runtime(settings)
    sites = load_sites(settings.simulate.site_file)
    if sites is None:
        return 1
    if args.ingest_workers or args.backends:
        return asyncio.run(_serve_cluster(settings, sites, max(1, args.ingest_workers), max(1, args.backends), args.config))
    try:
        return asyncio.run(_serve(settings, sites))
    except BrokerStartError as exc:  # one line a person can act on, not a traceback (a taken port, a leftover broker)
        print(f"shouwang run: the embedded broker cannot start: {exc.why}", file=sys.stderr, flush=True)
        return 1


async def _serve_cluster(settings: Any, sites: Any, n: int, m: int, config: Path | None) -> int:
    from shouwang.cluster import LocalCluster

    stop = stop_on_signals()
    async with LocalCluster(settings, sites, ingest_workers=n, backends=m, config=config) as cluster:
        consoles = "\n".join(f"  console:  {c.info.get('url')}/   ({c.name})" for c in cluster.children if c.name.startswith("backend-"))
        passwords = {c.info["admin_password"] for c in cluster.children if c.info.get("admin_password")}
        print(f"""
守望 Shouwang is running scaled out: {m} backend process(es), {n} ingest worker(s).
{consoles}
  login:    {settings.api.admin_user}   {'password ' + passwords.pop() if passwords else 'password as created on first start'}
  broker:   {cluster.broker_url} (MQTT 5 shared subscription)
  database: {cluster.db_url.rsplit('@', 1)[-1] if cluster.db_url else ''}
  community: {', '.join(c.name for c in sites.communities.values())}: {len(sites.devices)} devices, simulator {'on' if cluster.simulating else 'off'}
Ctrl-C stops it.""", flush=True)
        await stop.wait()
        print("stopping...", flush=True)
    return 0


async def _serve(settings: Any, sites: Any) -> int:
    stop = stop_on_signals()
    async with System(settings, sites) as system:
        settle(settings)
        b = system.backend
        broker_note = (f"embedded; logins for the backend and each gateway in {system.access_file}" if system.access_file is not None
                       else "configured")
        pw_note = (f"password {b.generated_admin_password}  (also saved in {settings.storage.data_dir / 'admin-password.txt'})"
                   if b.generated_admin_password else f"password as created on first start (see {settings.storage.data_dir / 'admin-password.txt'})")
        print(f"""
守望 Shouwang is running.
  console:  {b.url}/
  login:    {settings.api.admin_user}   {pw_note}
  API docs: {b.url}/api/docs
  broker:   mqtt://{system.broker_host}:{system.broker_port} ({broker_note})
  community: {', '.join(c.name for c in sites.communities.values())}: {len(sites.devices)} devices, simulator {'on' if system.simulating else 'off'}
Ctrl-C stops it.""", flush=True)
        await stop.wait()
        print("stopping...", flush=True)
    return 0
