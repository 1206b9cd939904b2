"""Time, injected: one protocol in integer Unix milliseconds, and its three clocks.

How this works: nothing of ours reads `time.time()` where the time matters; it asks a `Clock`.

    now_ms()             Unix milliseconds on this clock
    sleep_until_ms(t)    return once now_ms() >= t (at once, after one yield to the loop, if it already is);
                         deadline loops (patrols, the simulators' steps, drill acts) use it and never drift
    sleep_ms(ms)         sleep_until_ms(now_ms() + ms): periodic loops (the edge agent's patrol, liveness, status)
    real_seconds(ms)     how many real seconds `ms` of this clock's time takes to pass (never negative): the
                         timeout of a real wait raced against an event (the alarm tick, the ladder's next due rung)

- `SystemClock`: the wall clock; production.
- `ScaledClock(speed, start_ms)`: wall time `speed` times faster from `start_ms` (default: now); the drills' and
  simulators' time. A span of its time lasts `span / speed` real seconds, so a 60 s ladder rung at 10x is 6 s
  of real waiting, and sleeps are real sleeps of that length.
- `VirtualClock(start_ms)`: moves only when a test tells it to; sleepers are futures in a heap by deadline.
  `advance(s)` (sync) jumps time by `s` seconds and releases every sleeper now due, in deadline order; they
  resume at the caller's next await and see the new time. `await run_for(s)` walks time to each due deadline in
  order, letting each woken sleeper run before time moves on (a loop that sleeps 10 s and is given 30 s runs
  three times, each at its own deadline). Its `real_seconds` is the nominal span: virtual time never passes
  by waiting, so a real wait raced against an event on it is only a poll pace; tests wake it by the event.

edge/, backend/, simulators/ and shouwang/ all take their clock from here; alerting/ has no clock: time is an
argument there.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "SystemClock", "VirtualClock"]

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z (08:00 in Beijing): a virtual clock's default start


class Clock(Protocol):
    def now_ms(self) -> int:
        """Unix milliseconds on this clock."""
        ...

    async def sleep_until_ms(self, t_ms: int) -> None:
        """Return once now_ms() >= t_ms; at once (after one yield) if it already is."""
        ...

    async def sleep_ms(self, ms: int) -> None:
        """Sleep `ms` of this clock's time."""
        ...

    def real_seconds(self, span_ms: float) -> float:
        """Real seconds that `span_ms` of this clock's time takes to pass; 0 for a span already past."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until_ms(self, t_ms: int) -> None:
        await asyncio.sleep(self.real_seconds(t_ms - self.now_ms()))

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(self.real_seconds(ms))

    def real_seconds(self, span_ms: float) -> float:
        return max(0.0, span_ms / 1000)


class ScaledClock:
    """Wall time, `speed` times faster, from `start_ms` (Unix ms; default: the wall clock now)."""

    def __init__(self, speed: float = 1.0, start_ms: int | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall0 = time.monotonic()
        self.start_ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._wall0) * self.speed * 1000)

    async def sleep_until_ms(self, t_ms: int) -> None:
        await asyncio.sleep(self.real_seconds(t_ms - self.now_ms()))
        if self.now_ms() < t_ms:  # now_ms() truncates: a wake on the dot can read one ms short
            await asyncio.sleep(self.real_seconds(1))

    async def sleep_ms(self, ms: int) -> None:
        await self.sleep_until_ms(self.now_ms() + ms)

    def real_seconds(self, span_ms: float) -> float:
        return max(0.0, span_ms / 1000 / self.speed)


class VirtualClock:
    """A clock that moves only when told to; see the module docstring."""

    def __init__(self, start_ms: int = DEFAULT_START_MS) -> None:
        self._now_ms = start_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []  # (deadline, arrival order, future)
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._now_ms

    async def sleep_until_ms(self, t_ms: int) -> None:
        if t_ms <= self._now_ms:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(self._sleepers) > 64 and len(self._sleepers) > 2 * self.sleepers:  # drop the cancelled ones
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
        heapq.heappush(self._sleepers, (t_ms, next(self._order), fut))
        await fut

    async def sleep_ms(self, ms: int) -> None:
        await self.sleep_until_ms(self._now_ms + ms)

    def real_seconds(self, span_ms: float) -> float:
        return max(0.0, span_ms / 1000)

    @property
    def sleepers(self) -> int:
        """Sleepers still waiting."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline anyone is waiting for, if anyone is."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` at once; sleepers now due are released in deadline order and run at the
        caller's next await, all seeing the new time."""
        target = self._now_ms + _ms(seconds)
        self._release(target)
        self._now_ms = target

    async def run_for(self, seconds: float, settle: int = 5) -> None:
        """Move time forward by `seconds`, stopping at each due deadline in order and yielding `settle` times to the
        loop, so each woken sleeper runs (and may sleep again) before time moves on."""
        target = self._now_ms + _ms(seconds)
        while (deadline := self.next_deadline_ms()) is not None and deadline <= target:
            self._now_ms = max(self._now_ms, deadline)
            self._release(self._now_ms)
            for _ in range(settle):
                await asyncio.sleep(0)
        self._now_ms = target
        for _ in range(settle):
            await asyncio.sleep(0)

    def _release(self, upto_ms: int) -> None:
        while self._sleepers and self._sleepers[0][0] <= upto_ms:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done() and not fut.get_loop().is_closed():  # a sleeper left behind by a finished loop has no one to wake
                fut.set_result(None)


def _ms(seconds: float) -> int:
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"time moves forward only, not by {seconds} s")
    return round(seconds * 1000)
