"""What every long-running subcommand does the same way: load the site directory, stop on a signal, settle its heap,
tell systemd it is ready and feed its watchdog."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from backend import memstats
from backend.loopwatch import set_switch_interval, settle_heap
from backend.ops import systemd
from backend.settings import Settings
from backend.sites import SiteDirectory, SiteDirectoryInvalid, load_site_directory

__all__ = ["announce_ready", "load_sites", "prepare_runtime", "settle", "stop_on_signals"]

log = logging.getLogger(__name__)


def load_sites(path: Path) -> SiteDirectory | None:
    """The site directory, or None after printing every problem in it (file:line: what to fix)."""
    try:
        return load_site_directory(path)
    except SiteDirectoryInvalid as exc:
        print(exc, file=sys.stderr)
        return None


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C, systemd stop): the command's cue to shut down in order
    (systemd is told STOPPING=1, so it waits for the orderly shutdown rather than counting it as a hang)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        systemd.notify("STOPPING=1")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping)
    return stop


def prepare_runtime(settings: Settings) -> None:
    """Before a long-running process starts its threads (settings `runtime`): glibc malloc's arenas and mmap threshold
    (backend/memstats.py), the collector's thresholds and the GIL switch interval (backend/loopwatch.py). At the entry
    point, like `settle`, so tests' processes keep Python's and glibc's own."""
    done = memstats.configure_allocator(arena_max=settings.runtime.malloc_arena_max, mmap_threshold_kib=settings.runtime.malloc_mmap_threshold_kib)
    if done:
        log.info("allocator: %s", "; ".join(done))
    # The collector's raised thresholds from the start, not only once started: with Python's own, full collections
    # ran while the site directory and the rule core were built, each walking all of them (2 s at 447 k devices).
    settle_heap(freeze=False, thresholds=settings.runtime.gc_thresholds)
    set_switch_interval(settings.runtime.switch_interval_ms)


def settle(settings: Settings) -> None:
    """A long-running process has started: tune its garbage collector (settings `runtime`, backend/loopwatch.py).
    Done here, at the process's entry point, not inside the components (tests start many of them in one process)."""
    frozen = settle_heap(freeze=settings.runtime.gc_freeze_after_start, thresholds=settings.runtime.gc_thresholds)
    log.info("heap settled: %d long-lived objects out of the collector's way; gc thresholds %s", frozen, settings.runtime.gc_thresholds)
    announce_ready(settings)


def announce_ready(settings: Settings) -> systemd.Watchdog | None:
    """Tell systemd the process serves (Type=notify units: READY=1) and, when the unit sets WatchdogSec=, feed its
    watchdog from this event loop (backend/ops/systemd.py). Call on the running loop, once the process is ready."""
    systemd.notify(f"READY=1\nSTATUS=serving\nMAINPID={os.getpid()}")
    interval = systemd.watchdog_interval_s()
    if interval is None or not settings.ops.watchdog:
        return None
    dog = systemd.Watchdog(interval)
    dog.start()
    log.info("feeding the systemd watchdog every %.1f s", interval)
    return dog
