"""What every long-running subcommand does the same way: load the site directory, stop on a signal."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from backend.sites import SiteDirectory, SiteDirectoryInvalid, load_site_directory

__all__ = ["load_sites", "stop_on_signals"]


def load_sites(path: Path) -> SiteDirectory | None:
    """The site directory, or None after printing every problem in it (file:line: what to fix)."""
    try:
        return load_site_directory(path)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return None


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C, systemd stop): the command's cue to shut down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
