"""Event-loop health: how late the backend's event loop runs, and what held it when it stalled.

How this works: everything time-critical in the backend (the uplink lane, the alarm service, the live feed)
shares one asyncio event loop, so a callback that runs long, or a thread that holds the GIL, delays a smoke
alarm as surely as a slow database. `LoopWatch` measures that directly:

- a heartbeat task sleeps `interval_s` and records how much later than asked it woke up (the lag), keeping
  the last `keep` lags for percentiles (`snapshot()`, served under `loop` in /api/ingest/stats);
- optionally (`full_gc_every_s`) a full garbage collection at a steady cadence, its pause measured like any;
- optionally (`trim_every_s`) the C heap's free pages handed back to the system (backend/memstats.py), in a
  worker thread so the loop does not wait on the allocator's locks; the memory by holder is in `snapshot()`;
- a watchdog thread looks at the heartbeat every `interval_s`; once the loop has not beaten for
  `stall_log_ms`, it samples the loop thread's Python stack (sys._current_frames) a few times while the stall
  lasts and, when the stall ends, logs one warning with its length and the stacks seen, so the culprit is
  named in the log rather than guessed. `stall_log_ms = 0` turns the watchdog off (the lag figures stay).

This measures the process itself, so it reads the monotonic clock on purpose: it is not a domain timer and
has nothing to re-derive after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from backend import memstats

__all__ = ["LoopWatch", "set_switch_interval", "settle_heap"]

log = logging.getLogger(__name__)


class LoopWatch:
    def __init__(self, *, interval_s: float = 0.05, stall_log_ms: float = 500.0, keep: int = 12_000, samples: int = 5,
                 full_gc_every_s: float = 0.0, trim_every_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self.full_gc_every_s = full_gc_every_s
        self.trim_every_s = trim_every_s
        self.trims = 0
        self.trim_worst_ms = 0.0
        self.stall_log_ms = stall_log_ms
        self.samples = samples
        self._lags: deque[float] = deque(maxlen=keep)
        self.on_lag: Callable[[float], None] | None = None  # every lag measured, in seconds (the /metrics histogram)
        self.stalls = 0
        self.worst_stall_ms = 0.0
        self._beat = time.monotonic()
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.gc_pauses = 0
        self.gc_worst_ms = 0.0
        self.gc_total_ms = 0.0
        self._gc_started = 0.0
        self.young_gcs = 0
        self.young_gc_worst_ms = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """gc.callbacks hook: a collection holds the GIL for all of its length. A young one (generation 0 or 1) walks
        what was allocated since the last one and still lives, so its pause follows `runtime.gc_thresholds`."""
        if phase == "start":
            self._gc_started = time.monotonic()
            return
        ms = (time.monotonic() - self._gc_started) * 1000
        if info.get("generation") != 2:
            self.young_gcs += 1
            self.young_gc_worst_ms = max(self.young_gc_worst_ms, ms)
            return
        self.gc_pauses += 1
        self.gc_total_ms += ms
        self.gc_worst_ms = max(self.gc_worst_ms, ms)
        if ms >= self.stall_log_ms > 0:
            log.warning("a full garbage collection held the process for %.0f ms (%d objects collected)", ms, info.get("collected", 0))

    async def __aenter__(self) -> Self:
        gc.callbacks.append(self._on_gc)
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat(), name="loop-watch")
        self._collector: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        if self.full_gc_every_s > 0:
            self._collector = asyncio.get_running_loop().create_task(self._collect(), name="loop-watch-gc")
        if self.trim_every_s > 0:
            self._trimmer = asyncio.get_running_loop().create_task(self._trim(), name="loop-watch-trim")
        if self.stall_log_ms > 0:
            self._thread = threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True)
            self._thread.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        for task in (self._task, self._collector, self._trimmer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    async def _heartbeat(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            lag = max(0.0, now - asked - self.interval_s)
            self._lags.append(lag)
            if self.on_lag is not None:
                self.on_lag(lag)
            self._beat = now

    async def _collect(self) -> None:
        """A full collection every `full_gc_every_s`: with raised thresholds Python itself seldom runs one, and
        cyclic garbage that outlived the young generations would pile up. Its pause is measured by the gc hook."""
        while True:
            await asyncio.sleep(self.full_gc_every_s)
            gc.collect()

    async def _trim(self) -> None:
        while True:
            await asyncio.sleep(self.trim_every_s)
            started = time.monotonic()
            await asyncio.to_thread(memstats.trim)
            self.trims += 1
            self.trim_worst_ms = max(self.trim_worst_ms, (time.monotonic() - started) * 1000)

    def _watchdog(self) -> None:
        threshold = self.stall_log_ms / 1000
        while not self._stop.wait(self.interval_s):
            started = self._beat
            due = started + self.interval_s  # the heartbeat sleeps `interval_s` between beats: a stall is what comes after
            if time.monotonic() - due < threshold:
                continue
            stacks: Counter[str] = Counter()
            gap = max(threshold / self.samples, 0.002)
            while self._beat == started and not self._stop.is_set():
                frame = sys._current_frames().get(self._loop_thread or -1)
                if frame is not None and len(stacks) < self.samples * 2:
                    try:  # another thread's frame can change under the walk (CPython 3.11 once handed over a token object)
                        stacks["".join(traceback.format_stack(frame, limit=12))] += 1
                    except Exception as exc:  # a lost sample, never a dead watchdog
                        stacks[f"(the stack could not be read: {exc!r})\n"] += 1
                del frame
                self._stop.wait(gap)
            length_ms = ((self._beat if self._beat != started else time.monotonic()) - due) * 1000
            self.stalls += 1
            self.worst_stall_ms = max(self.worst_stall_ms, length_ms)
            shown = "\n".join(f"-- seen {n}x:\n{stack}" for stack, n in stacks.most_common(3))
            log.warning("event loop stalled for %.0f ms (threshold %.0f ms); the loop thread was at:\n%s", length_ms, self.stall_log_ms, shown)

    def snapshot(self) -> dict[str, Any]:
        lags = sorted(self._lags)

        def pct(q: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 2) if lags else None

        return {"lag_p50_ms": pct(0.5), "lag_p99_ms": pct(0.99), "lag_max_ms": round(lags[-1] * 1000, 2) if lags else None,
                "stalls": self.stalls, "worst_stall_ms": round(self.worst_stall_ms, 1),
                "full_gcs": self.gc_pauses, "full_gc_worst_ms": round(self.gc_worst_ms, 1), "full_gc_total_ms": round(self.gc_total_ms, 1),
                "young_gcs": self.young_gcs, "young_gc_worst_ms": round(self.young_gc_worst_ms, 1),
                "heap_trims": self.trims, "heap_trim_worst_ms": round(self.trim_worst_ms, 1), "memory": memstats.breakdown()}


def set_switch_interval(ms: float) -> None:
    """How long a thread may hold the GIL while another waits for it (settings `runtime.switch_interval_ms`, see its
    description); 0 leaves Python's own (5 ms)."""
    if ms > 0:
        sys.setswitchinterval(ms / 1000)


def settle_heap(*, freeze: bool = True, thresholds: tuple[int, int, int] | None = None) -> int:
    """Tune the garbage collector of a long-running process once it has loaded what it keeps for its lifetime.

    A full collection walks every tracked object and holds the GIL meanwhile: at street scale, with Python's
    default thresholds, one ran every ~25 s and paused the process 120-260 ms, collecting almost nothing
    (measured with this module's gc hook in benchmarks/e2e.py). `freeze` moves what is loaded by now (the
    site directory, the rule state) out of the collector's sight (gc.freeze); `thresholds` (gen0, gen1,
    gen2) make full collections rare while young garbage is still collected often. Returns how many
    objects are frozen. Only the young generations are collected before the freeze: a full collection here
    walked the whole site directory, 2.4 s at a district of 447 k devices (benchmarks/memory.py); what start-up
    garbage reached the old generation (a few hundred objects) is frozen with the rest."""
    if thresholds is not None and any(thresholds):
        gc.set_threshold(*thresholds)
    if freeze:
        gc.collect(1)
        gc.freeze()
    return gc.get_freeze_count()
