"""Time for the edge agent, injected: the system clock in production, a virtual clock in tests.

How this works: everything timed in the agent (patrol period, liveness checks, status file, dedupe windows)
reads `clock.now_ms()` and waits with `await clock.sleep(s)`. `VirtualClock` never moves on its own: a test
calls `await clock.advance(s)`, which moves time forward and wakes, in deadline order, every sleeper whose
deadline has passed, yielding to the loop after each so woken tasks run before time moves again.
Waiting for real I/O (reconnect backoff, publish timeouts) is not "time passing" and uses the loop's timers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._now_ms

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_ms + max(0, round(seconds * 1000)), next(self._order), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float, settle: int = 5) -> None:
        """Move time forward by `seconds`, waking sleepers in deadline order."""
        target = self._now_ms + round(seconds * 1000)
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now_ms = max(self._now_ms, deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(settle):
                await asyncio.sleep(0)
        self._now_ms = target
        for _ in range(settle):
            await asyncio.sleep(0)
