"""The backend's loop watch: a stalled event loop is measured and logged with the stack that held it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backend.loopwatch import LoopWatch
from tests.waiting import until


def hold_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop thread (it releases the GIL, as a blocking read would)


async def idle_then_held(watch: LoopWatch, idle_s: float, hold_s: float, after_s: float) -> dict[str, Any]:
    """Run the watch over an idle loop for `idle_s` (no stall may be counted), then hold the loop for `hold_s`, then let
    it run `after_s`; the watch's snapshot."""
    gc.disable()  # a full collection of the test process's heap would be a second, unplanned stall
    try:
        async with watch:
            await asyncio.sleep(idle_s)
            assert watch.stalls == 0, "an idle loop does not stall"
            hold_the_loop_for(hold_s)
            await asyncio.sleep(after_s)
            return watch.snapshot()
    finally:
        gc.enable()


async def test_a_stall_is_counted_and_logged_with_the_culprit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "backend.loopwatch")
    snap = await idle_then_held(LoopWatch(interval_s=0.02, stall_log_ms=150), 0.2, 0.5, 0.2)
    assert snap["stalls"] == 1
    assert 450 <= snap["worst_stall_ms"] < 2000
    assert snap["lag_max_ms"] is not None
    assert snap["lag_max_ms"] >= 400
    [record] = [r for r in caplog.records if "stalled" in r.getMessage()]
    assert "hold_the_loop_for" in record.getMessage(), "the log names the function that held the loop"


async def test_a_stall_is_measured_past_the_heartbeat_not_from_the_last_beat() -> None:
    """The heartbeat sleeps `interval_s` between beats: a threshold shorter than that is still a threshold on the
    lag (an idle loop does not stall: six beats, each 100 ms after the one before), and a stall's length is how late
    the beat came, not the sleep before it."""
    snap = await idle_then_held(LoopWatch(interval_s=0.1, stall_log_ms=60), 0.61, 0.3, 0.3)
    assert snap["stalls"] == 1
    assert 150 <= snap["worst_stall_ms"] < 400, "the beat was due within 100 ms of the hold's start: it came 200-300 ms late, not 300-400"


async def test_full_collections_are_measured() -> None:
    async with LoopWatch(stall_log_ms=0) as watch:
        gc.collect()
        snap = watch.snapshot()
    assert snap["full_gcs"] >= 1
    assert snap["full_gc_total_ms"] >= 0
    assert watch._on_gc not in gc.callbacks, "leaving the watch unhooks it from the collector"


async def test_young_collections_are_measured_apart_from_full_ones() -> None:
    """A young collection's pause follows the gen0 threshold (how much it walks): measured apart from the full ones."""
    async with LoopWatch(stall_log_ms=0) as watch:
        keep = [[i] for i in range(20_000)]  # tracked objects that live: a young collection has them to walk
        gc.collect(0)
        gc.collect(1)
        snap = watch.snapshot()
    del keep
    assert snap["young_gcs"] >= 2
    assert snap["young_gc_worst_ms"] > 0


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


async def test_heap_trims_run_at_the_set_cadence_and_the_memory_is_broken_down() -> None:
    async with LoopWatch(stall_log_ms=0, trim_every_s=0.02) as watch:
        await until(lambda: watch.trims >= 3, timeout_s=30, what="three heap trims")
        snap = watch.snapshot()
    assert snap["heap_trims"] >= 3
    mem = snap["memory"]
    assert mem["rss_mib"] > 0
    assert mem["anon_mib"] > 0
    assert mem["python_blocks"] > 0
    assert mem["anon_mib"] <= mem["rss_mib"]


def test_the_breakdown_sees_sqlite_and_malloc_memory_and_a_trim_hands_free_pages_back() -> None:
    """Run in a fresh interpreter so the figures are its own: a 32 MiB SQLite page cache filled shows in SQLite's
    count and in malloc's bytes in use; once the connection is closed, a trim lowers the anonymous RSS."""
    code = """
import json, sqlite3
from backend import memstats
before = memstats.breakdown()
conn = sqlite3.connect(":memory:")
conn.execute("PRAGMA cache_size = -32768")
conn.execute("CREATE TABLE t (x BLOB)")
conn.executemany("INSERT INTO t VALUES (?)", ((b"x" * 1000,) for _ in range(25_000)))
filled = memstats.breakdown()
pins = [bytearray(1000) for _ in range(100)]  # malloc'd after the cache: the heap's top stays in use
conn.close()
closed = memstats.breakdown()
trimmed = memstats.trim()
after = memstats.breakdown()
print(json.dumps([before, filled, closed, trimmed, after]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    before, filled, closed, _trimmed, after = json.loads(out.stdout)
    assert filled["sqlite_mib"] - before["sqlite_mib"] > 20, (before, filled)
    assert filled["malloc_in_use_mib"] - before["malloc_in_use_mib"] > 20, (before, filled)
    assert closed["sqlite_mib"] < 1
    # Closing the connection frees the cache to malloc, which keeps the pages resident below the pinned top
    # (an ordinary free returns only a free top of the heap); the trim hands them back.
    assert closed["anon_mib"] > filled["anon_mib"] - 5, (filled, closed)
    assert after["anon_mib"] < closed["anon_mib"] - 15, (filled, closed, after)


def test_a_fixed_mmap_threshold_maps_big_blocks_even_after_a_bigger_one_was_freed() -> None:
    """glibc raises its mmap threshold when a mapped block is freed, so a later, smaller big block comes from the
    heap and stays resident after it is freed; configure_allocator fixes the threshold (fresh interpreters)."""
    code = """
import json, sys
from backend import memstats
if sys.argv[1] == "fixed":
    memstats.configure_allocator(arena_max=2, mmap_threshold_kib=1024)
big = bytearray(8 * 2**20)
del big
before = memstats.breakdown()["malloc_mmapped_mib"]
block = bytearray(4 * 2**20)
print(json.dumps(memstats.breakdown()["malloc_mmapped_mib"] - before))
"""
    def mapped_mib(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True, timeout=60,
                             cwd=Path(__file__).resolve().parent.parent)
        return float(json.loads(out.stdout))

    assert mapped_mib("glibc") < 1, "glibc's own dynamic threshold puts the 4 MiB block in the heap"
    assert mapped_mib("fixed") >= 3.9, "with the threshold fixed at 1 MiB it is mapped on its own"
