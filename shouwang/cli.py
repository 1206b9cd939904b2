"""`shouwang`: one console command, one subcommand per job.

Each subcommand lives in its own module under shouwang/commands/ and exposes `register(subparsers)`,
which adds its parser and sets `handler` to a function taking the parsed arguments and returning an exit
code. Adding a command is adding a module to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ["run", "ingest", "backend", "edge", "simulate", "drill", "sites", "broker", "config"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shouwang",
        description="Shouwang (守望): smart-community safety and emergency monitoring.",
    )
    parser.add_argument("--config", type=Path, default=None, help="settings file (TOML); see docs/configuration.md")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"shouwang.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
