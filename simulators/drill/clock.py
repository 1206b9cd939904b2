"""The drill clock: one time base for the simulated devices, the system under drill and its report.

How this works: drill time runs `speed` times faster than the wall clock, from the Unix time the drill
starts. The embedded system gets this clock (its alarm store stamps drill time), the simulator gets it (its
devices stamp drill time), and the simulated responders sleep on it; so every figure in the report is a
difference of two stamps on the same clock, and wall time is that difference divided by `speed`. A drill
against a running system cannot change that system's clock: it runs at speed 1.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["DrillClock"]


class DrillClock:
    """Satisfies simulators.clock.SimClock (seconds) and backend.clock.Clock (milliseconds)."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall0 = time.monotonic()
        self.start = time.time() if start is None else start

    def now(self) -> float:
        return self.start + (time.monotonic() - self._wall0) * self.speed

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def wall_s(self, drill_s: float) -> float:
        return drill_s / self.speed

    async def sleep_until(self, t: float) -> None:
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    async def sleep(self, drill_s: float) -> None:
        await self.sleep_until(self.now() + drill_s)
