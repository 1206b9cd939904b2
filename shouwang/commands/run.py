"""`shouwang run`: not built yet (see the open issue); the command says so rather than pretending."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("run", help="(not built yet)", description="Not built yet: see the project's open issues.")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    print("shouwang run is not built yet", file=sys.stderr)
    return 2
