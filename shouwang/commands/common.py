"""What every long-running subcommand does the same way: load the site directory, stop on a signal, settle its heap."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from backend.loopwatch import settle_heap
from backend.settings import Settings
from backend.sites import SiteDirectory, SiteDirectoryInvalid, load_site_directory

__all__ = ["load_sites", "settle", "stop_on_signals"]

log = logging.getLogger(__name__)


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


def settle(settings: Settings) -> None:
    """A long-running process has started: tune its garbage collector (settings `runtime`, backend/loopwatch.py).
    Done here, at the process's entry point, not inside the components (tests start many of them in one process)."""
    frozen = settle_heap(freeze=settings.runtime.gc_freeze_after_start, thresholds=settings.runtime.gc_thresholds)
    log.info("heap settled: %d long-lived objects out of the collector's way; gc thresholds %s", frozen, settings.runtime.gc_thresholds)
