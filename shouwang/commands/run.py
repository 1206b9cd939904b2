"""`shouwang run`: the whole system on embedded defaults (or on configured services)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from backend.settings import load_settings
from backend.sites import SiteDirectoryInvalid, load_site_directory
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
    if sim:
        overrides["simulate"] = sim
    settings = load_settings(args.config, **overrides)
    try:
        sites = load_site_directory(settings.simulate.site_file)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    return asyncio.run(_serve(settings, sites))


async def _serve(settings: Any, sites: Any) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with System(settings, sites) as system:
        b = system.backend
        pw_note = (f"password {b.generated_admin_password}  (also saved in {settings.storage.data_dir / 'admin-password.txt'})"
                   if b.generated_admin_password else f"password as created on first start (see {settings.storage.data_dir / 'admin-password.txt'})")
        print(f"""
守望 Shouwang is running.
  console:  {b.url}/
  login:    {settings.api.admin_user}   {pw_note}
  API docs: {b.url}/api/docs
  broker:   mqtt://{system.broker_host}:{system.broker_port} ({'embedded' if settings.broker.url is None else 'configured'})
  community: {', '.join(c.name for c in sites.communities.values())}: {len(sites.devices)} devices, simulator {'on' if system.simulating else 'off'}
Ctrl-C stops it.""", flush=True)
        await stop.wait()
        print("stopping...", flush=True)
    return 0
