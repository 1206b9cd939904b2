"""`shouwang`: one console command, one subcommand per job.

Each subcommand lives in its own module under shouwang/commands/ and exposes `register(subparsers)`,
which adds its parser and sets `handler` to a function taking the parsed arguments and returning an exit
code. Adding a command is adding a module to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from backend.ops.logs import configure_logging

__all__ = ["COMMANDS", "build_parser", "main", "wants_json_logs"]

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


def wants_json_logs(config: Path | None, environ: Mapping[str, str]) -> bool:
    """Setting `ops.log_json`, read before the command loads its settings (so its first lines are in the chosen form):
    SHOUWANG_OPS__LOG_JSON wins over the TOML file's [ops] log_json, as for every setting."""
    env = environ.get("SHOUWANG_OPS__LOG_JSON")
    if env is not None:
        return env.strip().lower() in ("1", "true", "yes", "on")
    if config is None or not config.is_file():
        return False
    try:
        with config.open("rb") as f:
            return bool(tomllib.load(f).get("ops", {}).get("log_json", False))
    except (OSError, tomllib.TOMLDecodeError):
        return False  # the command itself reports a broken settings file


def _gateway_only() -> bool:
    """A gateway's install (`pip install .[edge]`): edge/ and broker/ without the centre's packages."""
    return importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("sqlalchemy") is None


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in args_in[:1] if a in ("-v", "--verbose")]
    if args_in[len(flags):len(flags) + 1] == ["edge"] and _gateway_only():
        from edge.cli import main as edge_main  # `shouwang edge ...` on a gateway: the same as `python -m edge ...`

        return edge_main([*flags, *args_in[len(flags) + 1:]])
    try:
        parser = build_parser()
    except ModuleNotFoundError as exc:
        if not _gateway_only():
            raise
        print(f"shouwang: this is a gateway's install (pip install .[edge]): only `shouwang edge` runs here; the centre's commands "
              f"need `pip install .[server]` (missing: {exc.name})", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, json_lines=wants_json_logs(args.config, os.environ))
    try:
        code: int = args.handler(args)
    except Exception as exc:
        if not getattr(exc, "user_facing", False):  # e.g. backend.store.db.StoreFileUnreadable: a fact about this machine
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
