"""`shouwang simulate`: publish a site directory's simulated devices to a broker, with a progress display."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from backend.sites import SiteDirectoryInvalid, load_site_directory
from shouwang.commands.common import stop_on_signals
from simulators.live import SimulatorError
from simulators.signals import SimulationProfile
from simulators.street import run_street


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="publish simulated devices of a site directory to a broker (a street at real rates, or faster)",
        description="Publish every device of a site directory to an MQTT broker as its gateways would (one connection per "
        "gateway), at the devices' real reporting rates or SPEED times faster, with a live progress display. "
        "A street of ~90,000 devices at real rates is ~250 msg/s; use --speed to multiply for load tests.",
    )
    p.add_argument("--sites", type=Path, required=True, help="site directory (YAML), e.g. from `shouwang sites generate`")
    p.add_argument("--broker", required=True, help="broker URL, mqtt://host:port")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1: real rates)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many SIMULATED seconds (default: until Ctrl-C)")
    p.add_argument(
        "--dialects",
        choices=["native", "mixed"],
        default="native",
        help="native: everything on our contract; mixed: each device speaks its directory dialect (z2m, tasmota, ...)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--life-safety-events", action="store_true", help="also simulate random smoke alarms and SOS presses (off by default: a demo must not cry wolf)"
    )
    p.add_argument("--username", default=None, help="MQTT username (production brokers)")
    p.add_argument("--password", default=None, help="MQTT password")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    url = urlsplit(args.broker)
    if url.scheme not in ("mqtt", "tcp") or not url.hostname:
        print(f"--broker must look like mqtt://host:port, not {args.broker!r}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    console = Console()
    started = time.monotonic()
    try:
        with console.status(f"loading {args.sites} ..."):
            sites = load_site_directory(args.sites)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    console.print(f"loaded {args.sites} in {time.monotonic() - started:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in sites.summary().items()))
    profile = SimulationProfile.live().lively() if args.life_safety_events else SimulationProfile.live()
    try:
        stats = asyncio.run(_main(args, sites, url.hostname, url.port or 1883, profile=profile, console=console))
    except SimulatorError as exc:
        print(exc, file=sys.stderr)
        return 1
    console.print()
    console.print(f"sent {stats.total:,} messages; dropped {stats.dropped:,}; reconnects {stats.reconnects:,}")
    return 0


async def _main(args: argparse.Namespace, sites: Any, host: str, port: int, *, profile: SimulationProfile, console: Console) -> Any:
    stop = stop_on_signals()
    return await run_street(
        sites,
        host,
        port,
        speed=args.speed,
        duration_s=args.duration,
        dialects=args.dialects,
        seed=args.seed,
        profile=profile,
        console=console,
        stop=stop,
        username=args.username,
        password=args.password,
    )
