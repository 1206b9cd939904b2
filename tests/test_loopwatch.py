"""The backend's loop watch: a stalled event loop is measured and logged with the stack that held it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import time

import pytest

from backend.loopwatch import LoopWatch
from tests.waiting import until


def hold_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop thread (it releases the GIL, as a blocking read would)


async def test_a_stall_is_counted_and_logged_with_the_culprit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "backend.loopwatch")
    gc.disable()  # a full collection of the test process's heap would be a second, unplanned stall
    try:
        async with LoopWatch(interval_s=0.02, stall_log_ms=150) as watch:
            await asyncio.sleep(0.2)
            assert watch.stalls == 0, "an idle loop does not stall"
            hold_the_loop_for(0.5)
            await asyncio.sleep(0.2)
            snap = watch.snapshot()
    finally:
        gc.enable()
    assert snap["stalls"] == 1
    assert 450 <= snap["worst_stall_ms"] < 2000
    assert snap["lag_max_ms"] is not None
    assert snap["lag_max_ms"] >= 400
    [record] = [r for r in caplog.records if "stalled" in r.getMessage()]
    assert "hold_the_loop_for" in record.getMessage(), "the log names the function that held the loop"


async def test_full_collections_are_measured() -> None:
    async with LoopWatch(stall_log_ms=0) as watch:
        gc.collect()
        snap = watch.snapshot()
    assert snap["full_gcs"] >= 1
    assert snap["full_gc_total_ms"] >= 0
    assert watch._on_gc not in gc.callbacks, "leaving the watch unhooks it from the collector"


def test_settling_the_heap_freezes_what_is_loaded_and_sets_the_thresholds() -> None:
    """In a child process: it changes the interpreter's collector for good."""
    code = ("import gc, json; from backend.loopwatch import settle_heap; keep = [dict(n=i) for i in range(10_000)]; "
            "n = settle_heap(thresholds=(10_000, 10, 100)); print(json.dumps([n, gc.get_threshold(), gc.get_freeze_count()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    frozen, thresholds, count = json.loads(out.stdout)
    assert frozen == count >= 10_000, "what was loaded (here 10,000 dicts) is out of the collector's sight"
    assert thresholds == [10_000, 10, 100]
    keep_defaults = subprocess.run([sys.executable, "-c", code.replace("(10_000, 10, 100)", "(0, 0, 0)")], capture_output=True, text=True,
                                   check=True, timeout=60)
    assert json.loads(keep_defaults.stdout)[1] == [700, 10, 10], "(0, 0, 0) leaves Python's own thresholds"


async def test_a_full_collection_runs_at_the_set_cadence_and_is_measured() -> None:
    """Every 50 ms here; one collection's own length depends on the process's heap (~0.4 s late in a full suite run),
    so the test waits for three rather than counting them in a fixed time."""
    async with LoopWatch(stall_log_ms=0, full_gc_every_s=0.05) as watch:
        await until(lambda: watch.gc_pauses >= 3, timeout_s=30, what="three full collections")
        snap = watch.snapshot()
    assert snap["full_gcs"] >= 3
    assert snap["full_gc_total_ms"] > 0
