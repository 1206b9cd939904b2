"""A watchdog for the test run: when the main thread (the tests' event loop) stays on one line, outside a wait, for
`STALL_S` or more while an async test runs, the stacks of every thread are written to test-artifacts/stalls.log with
the test's id.

Why: a test of the 119 hand-off failed twice in full runs (never alone) because an HTTP attempt with a 1 s timeout
returned after 3.5-3.9 s: the event loop did not run for seconds. This records who held the main thread or the GIL
then, for the next such run. It only writes the log; it never fails a test."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from pathlib import Path

STALL_S = 1.5
SAMPLE_S = 0.25
# Innermost functions where the main thread waits on purpose (the loop's select, a sleep, a join, a subprocess)
IDLE = frozenset({"select", "poll", "_poll", "sleep", "wait", "_wait_for_tstate_lock", "communicate", "_communicate", "_try_wait",
                  "acquire", "join", "result", "readline", "recv", "recv_into", "accept", "read", "wait_for", "_wait"})


class StallWatch:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.test: str | None = None  # the async test running now; None: nothing watched
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-stall-watch", daemon=True)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.unlink(missing_ok=True)
        self._thread.start()

    def watch(self, test: str | None) -> None:
        self.test = test

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        since: float | None = None
        where: tuple[int, int] | None = None
        reported = False
        while not self._stop.wait(SAMPLE_S):
            if self.test is None:  # a sync test: not even a look at its frames (a frame held here keeps its locals alive)
                since, where, reported = None, None, False
                continue
            here, line = self._main_line()
            now = time.monotonic()
            if here is None:
                since, where, reported = None, None, False
                continue
            if here != where:
                since, where, reported = now, here, False
                continue
            if since is not None and not reported and now - since >= STALL_S:
                reported = True
                self._dump(line, now - since)

    def _main_line(self) -> tuple[tuple[int, int] | None, str]:
        """Where the main thread is (its innermost frame's identity and line, and the line in words), or None while it
        waits on purpose. No frame is kept: one held between samples would keep its locals alive (and in a test that
        measures memory, counted)."""
        frame = sys._current_frames().get(self._main or 0)
        try:
            if frame is None or frame.f_code.co_name in IDLE:
                return None, ""
            return (id(frame), frame.f_lineno), f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        finally:
            del frame

    def _dump(self, line: str, for_s: float) -> None:
        names = {t.ident: t.name for t in threading.enumerate()}
        lines = [f"== {time.strftime('%H:%M:%S')} {self.test}: the main thread on one line for {for_s:.1f} s ({line})\n"]
        frames = sys._current_frames()
        try:
            for ident, f in frames.items():
                lines.append(f"-- thread {names.get(ident, ident)}\n")
                lines += traceback.format_stack(f)[-12:]
        finally:
            del frames
        with self.log.open("a", encoding="utf-8") as out:
            out.writelines(lines)
