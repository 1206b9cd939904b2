"""Simulated clocks: the one place the simulators learn what time it is.

How this works: simulation time is Unix seconds (float). Pure code never reads a clock; the live loop asks
its clock `now()` and `await sleep_until(t)`. `ScaledClock` maps wall time onto simulated time `speed` times
faster, starting at the Unix time it was created with. `VirtualClock` never waits: `sleep_until` jumps to the
target at once, so a test runs a simulated day in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["ScaledClock", "SimClock", "VirtualClock"]


class SimClock(Protocol):
    def now(self) -> float:
        """Simulated Unix time, seconds."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once simulated time has reached `t` (at once if it already has)."""
        ...


class ScaledClock:
    """Wall time, `speed` times faster, starting at `start` (Unix seconds; default: the wall clock now)."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall0 = time.monotonic()
        self._sim0 = time.time() if start is None else start

    def now(self) -> float:
        return self._sim0 + (time.monotonic() - self._wall0) * self.speed

    async def sleep_until(self, t: float) -> None:
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """A clock that moves only when told to, or when someone sleeps until a later time."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._t = start

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds

    async def sleep_until(self, t: float) -> None:
        self._t = max(self._t, t)
        await asyncio.sleep(0)  # let other tasks (the publishers) run
