"""The one clock (broker/clock.py): the virtual clock wakes sleepers in deadline order, each at its own deadline
when walked with `run_for`, all at the new time when jumped with `advance`; the scaled clock's arithmetic is
`speed` times the wall clock's, so a drill's 60 s rung is 6 s of real waiting at 10x."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.clock import Clock, ScaledClock, SystemClock, VirtualClock

T0 = 1_767_225_600_000
delays = st.lists(st.integers(min_value=0, max_value=120_000), min_size=1, max_size=12)


async def _sleepers(clock: VirtualClock, delays_ms: list[int], woke: list[tuple[int, int]]) -> list[asyncio.Task[None]]:
    async def sleeper(i: int, ms: int) -> None:
        await clock.sleep_ms(ms)
        woke.append((i, clock.now_ms()))

    tasks = [asyncio.create_task(sleeper(i, ms), name=f"sleeper-{i}") for i, ms in enumerate(delays_ms)]
    for _ in range(2):  # every sleeper is waiting now; one due already has woken
        await asyncio.sleep(0)
    return tasks


@given(delays)
def test_run_for_wakes_each_sleeper_at_its_own_deadline_in_deadline_order(delays_ms: list[int]) -> None:
    async def scenario() -> list[tuple[int, int]]:
        clock, woke = VirtualClock(T0), list[tuple[int, int]]()
        tasks = await _sleepers(clock, delays_ms, woke)
        await clock.run_for(max(delays_ms) / 1000)
        await asyncio.gather(*tasks)
        assert clock.now_ms() == T0 + max(delays_ms)
        return woke

    woke = asyncio.run(scenario())
    expected = sorted(range(len(delays_ms)), key=lambda i: (delays_ms[i], i))  # ties: who slept first wakes first
    assert woke == [(i, T0 + delays_ms[i]) for i in expected]


@given(delays, st.integers(min_value=0, max_value=120_000))
def test_advance_releases_exactly_the_due_sleepers_in_deadline_order_at_the_new_time(delays_ms: list[int], by_ms: int) -> None:
    async def scenario() -> tuple[list[tuple[int, int]], int]:
        clock, woke = VirtualClock(T0), list[tuple[int, int]]()
        tasks = await _sleepers(clock, delays_ms, woke)
        clock.advance(by_ms / 1000)
        for _ in range(3):
            await asyncio.sleep(0)
        left = clock.sleepers
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return woke, left

    woke, left = asyncio.run(scenario())
    due = sorted((i for i, ms in enumerate(delays_ms) if ms <= by_ms), key=lambda i: (delays_ms[i], i))
    assert woke == [(i, T0 if delays_ms[i] == 0 else T0 + by_ms) for i in due]  # a sleep of 0 is over before the jump
    assert left == len(delays_ms) - len(due)


async def test_a_periodic_loop_runs_once_per_period_on_run_for_and_once_on_advance() -> None:
    clock, ran = VirtualClock(T0), []

    async def every_10_s() -> None:
        while True:
            await clock.sleep_ms(10_000)
            ran.append(clock.now_ms() - T0)

    task = asyncio.create_task(every_10_s(), name="every-10-s")
    await asyncio.sleep(0)
    await clock.run_for(30)
    assert ran == [10_000, 20_000, 30_000]
    clock.advance(30)  # a jump: the loop wakes once, at the new time
    await asyncio.sleep(0)
    assert ran == [10_000, 20_000, 30_000, 60_000]
    task.cancel()


async def test_a_deadline_already_past_returns_at_once_and_time_stays() -> None:
    clock = VirtualClock(T0)
    async with asyncio.timeout(1):
        await clock.sleep_until_ms(T0 - 5_000)
        await clock.sleep_ms(0)
    assert clock.now_ms() == T0
    assert clock.sleepers == 0


def test_time_never_moves_backwards() -> None:
    clock = VirtualClock(T0)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert clock.now_ms() == T0


@given(st.floats(min_value=0.01, max_value=100_000), st.integers(min_value=-10**9, max_value=10**9))
def test_a_scaled_clocks_span_lasts_span_over_speed_in_real_time(speed: float, span_ms: int) -> None:
    clock = ScaledClock(speed, start_ms=T0)
    assert clock.real_seconds(span_ms) == pytest.approx(max(0, span_ms) / 1000 / speed)
    assert clock.now_ms() >= T0


def test_real_waiting_follows_each_clocks_speed() -> None:
    assert SystemClock().real_seconds(2_000) == 2.0
    assert VirtualClock().real_seconds(2_000) == 2.0, "a virtual clock's real waits are only a poll pace"
    assert ScaledClock(speed=10).real_seconds(60_000) == 6.0, "a 60 s rung deadline at 10x is 6 s of real waiting"
    assert ScaledClock(speed=10).real_seconds(-5_000) == 0.0, "an overdue deadline is not waited for"
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(speed=0)


async def test_a_scaled_clock_sleeps_its_time_speed_times_faster() -> None:
    clock = ScaledClock(speed=200, start_ms=T0)
    started = time.monotonic()
    await clock.sleep_until_ms(T0 + 10_000)  # 10 s of its time: 50 ms of real time
    assert clock.now_ms() >= T0 + 10_000
    assert 0.045 <= time.monotonic() - started < 1.0
    before = clock.now_ms()
    await clock.sleep_ms(2_000)
    assert clock.now_ms() >= before + 2_000


def test_every_clock_is_a_clock() -> None:
    clocks: list[Clock] = [SystemClock(), ScaledClock(), VirtualClock()]  # mypy checks the protocol here
    assert abs(clocks[0].now_ms() - time.time() * 1000) < 1_000
    assert abs(clocks[1].now_ms() - time.time() * 1000) < 1_000
    assert clocks[2].now_ms() == T0
