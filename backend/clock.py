"""Time, injected. Production code asks a Clock; tests hand in a VirtualClock they move by hand."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock", "wall_seconds"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, Unix milliseconds."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class VirtualClock:
    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += round(seconds * 1000)


def wall_seconds(clock: Clock, duration_ms: float) -> float:
    """How long to sleep in real time for `duration_ms` of `clock`'s time. The same for a wall clock; a drill's
    compressed clock (simulators.drill.DrillClock, `wall_s`) runs `speed` times faster, so a ladder deadline or a
    patrol is not `speed` times late in drill time."""
    wall_s = getattr(clock, "wall_s", None)
    seconds = max(0.0, duration_ms / 1000)
    return float(wall_s(seconds)) if callable(wall_s) else seconds
