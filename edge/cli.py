"""The gateway's own command line: run the edge agent of one gateway, check its configuration, or show its status.

`python -m edge --config FILE` and `shouwang edge --config FILE` are the same command: the centre's CLI registers
this parser (`register`), and `edge/__main__.py` builds it alone (`main`), so a gateway runs with `edge/` and
`broker/` only: it never imports the backend, uvicorn or the simulators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, EdgeError

__all__ = ["ACTIONS", "add_arguments", "handle", "main", "register"]

ACTIONS = ("run", "status", "check")


def register(sub: Any) -> None:
    """Add `edge` to a parent parser's subcommands (the centre's `shouwang` command)."""
    add_arguments(sub.add_parser("edge", help=_HELP, description=_DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edge ...`: the same arguments as `shouwang edge ...`, without the centre's packages."""
    parser = argparse.ArgumentParser(prog="python -m edge", description=_DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code: int = args.handler(args)
    return code


_HELP = "run a gateway's edge agent (device dialects, liveness, store-and-forward)"
_DESCRIPTION = (
    "Run the edge agent of one gateway: read the building's LAN broker (Zigbee2MQTT, Tasmota, Shelly, Frigate, "
    "ESPHome and native devices), keep every accepted message in a durable outbox, and forward it to the central "
    "broker with QoS 1, alarms first. `shouwang edge --config FILE` runs it; `shouwang edge status --config FILE` "
    "shows what the running agent last wrote to its status file. Every key is documented in docs/edge.md."
)


def add_arguments(p: argparse.ArgumentParser, actions: Sequence[str] = ACTIONS) -> None:
    p.add_argument("action", nargs="?", choices=list(actions), default="run", help=f"{', '.join(actions)} (default: run)")
    p.add_argument("--config", dest="edge_config", type=Path, help="edge configuration file (.yaml, .yml or .toml)")
    p.add_argument("--json", action="store_true", help="status: print the raw JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """run / status / check of one edge configuration file."""
    from edge.config import load_config

    if args.edge_config is None:
        print(f"error: `edge {args.action}` needs --config FILE (the gateway's edge configuration)", file=sys.stderr)
        return 2

    try:
        config = load_config(args.edge_config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action == "check":
        devices = sum(len(a.devices) for a in config.adapters)
        print(f"{args.edge_config}: gateway {config.gateway}, {len(config.adapters)} adapters, {devices} devices: OK")
        return 0
    if args.action == "status":
        return _status(config.status_path, as_json=args.json)
    try:
        asyncio.run(_run(config))
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(config: Any) -> None:
    from edge.agent import EdgeAgent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with EdgeAgent(config):
        print(f"edge agent {config.gateway}: LAN {config.lan.host}:{config.lan.port} -> uplink {config.uplink.host}:{config.uplink.port}", flush=True)
        await stop.wait()


def _status(path: Path, *, as_json: bool) -> int:
    from edge.status import read_status

    try:
        status = read_status(path)
    except (OSError, ValueError) as exc:
        print(f"no status at {path}: {exc} (is the agent running?)", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(status, indent=1, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    up, lan, ob, intake = status["uplink"], status["lan"], status["outbox"], status["intake"]
    summary = Table(title=f"edge agent {status['gateway']}", show_header=False)
    summary.add_row("LAN", f"{'connected' if lan['connected'] else 'DOWN'} {lan['host']}:{lan['port']}")
    summary.add_row("uplink", f"{'connected' if up['connected'] else 'DOWN'} {up['host']}:{up['port']}, forwarded {up['forwarded_total']}")
    summary.add_row("outbox", f"{ob['depth']} ({ob['stored_bytes']} bytes), evicted {ob['evicted_total']}" + (" OVER BOUND" if ob["over_bound"] else ""))
    summary.add_row("intake", f"{intake['lan_messages']} LAN messages, {intake['mapped']} mapped, {intake['rejected_total']} rejected")
    summary.add_row("liveness", ", ".join(f"{k} {v}" for k, v in status["liveness"].items()))
    summary.add_row("patrol", f"seq {status['patrol']['seq']}, skipped while down {status['patrol']['skipped_uplink_down']}")
    console.print(summary)
    if status["rejections"]:
        rej = Table(title="rejections (by adapter, device, reason)")
        for col in ("adapter", "device", "code", "count", "last reason"):
            rej.add_column(col)
        for r in status["rejections"][:30]:
            rej.add_row(r["adapter"], r["device"], r["code"], str(r["count"]), r["last_detail"][:80])
        console.print(rej)
    return 0
