"""`shouwang config`: check a deployment's configuration and say what is wrong."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from backend.settings import load_settings
from backend.sites import SiteDirectoryInvalid, load_site_directory


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config", help="check the configuration",
                                                description="Validate settings (file and environment) and the site directory they name.")
    s = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = s.add_parser("check", help="validate settings and the site directory; print every problem")
    c.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except (ValidationError, OSError, ValueError) as exc:
        print(f"settings are invalid:\n{exc}", file=sys.stderr)
        return 1
    try:
        sites = load_site_directory(settings.simulate.site_file)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    print("configuration is valid")
    print(f"  broker: {settings.broker.url or 'embedded'}; alarm store: {settings.storage.alarm_db_url or 'SQLite in ' + str(settings.storage.data_dir)}")
    print("  site directory: " + ", ".join(f"{v} {k}" for k, v in sites.summary().items()))
    return 0
