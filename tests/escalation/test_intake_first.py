"""Life safety first in a storm (issue 19): while the alarm service has a round of life-safety messages queued or
being decided, the ladder's older work (a due step, the outbox's notices) waits for it, so a storm's alarms reach
the console first; the wait is bounded per busy spell, so a flood that never ends delays paging by about a second at a
time, not forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import sqlalchemy as sa

from alerting.lifecycle import Move
from backend.escalation.service import _Deference
from backend.sites import SiteDirectory
from broker.kinds import DeviceKind, EventKind
from tests.alarms.test_service import event, first
from tests.escalation.centre import centre


async def test_a_due_step_and_queued_notices_wait_while_a_smoke_round_is_decided_then_go(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        assert c.alarms is not None
        assert c.escalation is not None
        alarms, ladder = c.alarms, c.escalation
        aid = await c.raise_()
        await c.settle()  # the ladder started: its first notices wait in the outbox
        c.clock.advance(30 * 60)  # and its next step is due
        steps_before = len(c.log(aid))
        smoke, gw = first(sample_site, DeviceKind.SMOKE)
        now = c.clock.now_ms()
        async with alarms._lock:  # the service busy: a smoke round waits for it, as in a storm
            round_ = asyncio.create_task(alarms.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, now, 1), now))
            await asyncio.sleep(0)
            assert alarms.intake_busy()
            delivering = asyncio.create_task(ladder.deliver_pending())
            stepping = asyncio.create_task(ladder.run_due())
            await asyncio.sleep(0.3)
            assert not delivering.done(), "the outbox went ahead of the smoke round"
            assert not stepping.done(), "the timer loop went ahead of the smoke round"
            assert c.sent() == []
            assert len(c.log(aid)) == steps_before
        await round_
        assert await asyncio.wait_for(delivering, 5) > 0
        assert await asyncio.wait_for(stepping, 5) == 1
        assert any(m.alarm_id == aid for m in c.sent())
        assert len(c.log(aid)) > steps_before


async def test_the_wait_is_bounded_and_nothing_waits_without_a_life_safety_round(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        assert c.alarms is not None
        assert c.escalation is not None
        alarms, ladder = c.alarms, c.escalation
        loop = asyncio.get_running_loop()
        aid = await c.raise_()
        await c.settle()
        # nothing coming in: the outbox does not wait
        started = loop.time()
        assert await asyncio.wait_for(ladder.deliver_pending(), 5) > 0
        assert loop.time() - started < 0.25
        await alarms.move(aid, Move.ACKNOWLEDGE, "duty", note="")  # the ladder's next rounds are its own
        other = await c.raise_("sos", "device:c01-b01-sos-1")
        await c.settle()
        c.clock.advance(30 * 60)
        ladder.intake_wait_s = 0.3
        smoke, gw = first(sample_site, DeviceKind.SMOKE)
        now = c.clock.now_ms()
        async with alarms._lock:  # a flood that does not end within the bound
            round_ = asyncio.create_task(alarms.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, now, 1), now))
            await asyncio.sleep(0)
            started = loop.time()
            assert await asyncio.wait_for(ladder.deliver_pending(), 5) > 0
            assert await asyncio.wait_for(ladder.run_due(), 5) >= 1
            assert alarms.intake_busy(), "the round is still waiting: the ladder went on after its bound"
            assert 0.5 <= loop.time() - started < 2.0  # one bound for the claim, one for the timer round
            assert any(m.alarm_id == other for m in c.sent())
        await round_


async def test_a_drills_smoke_round_holds_no_ladder_work(db: sa.Engine, sample_site: SiteDirectory) -> None:
    """A drill holds nothing real without a person's decision: while a drill's smoke round waits for the alarm service,
    a real alarm's notices go out at once."""
    async with centre(db, sample_site) as c:
        assert c.alarms is not None
        assert c.escalation is not None
        alarms, ladder = c.alarms, c.escalation
        aid = await c.raise_()
        await c.settle()
        ladder.intake_wait_s = 30  # were the drill's round to hold the outbox, the call below would time out
        smoke, gw = first(sample_site, DeviceKind.SMOKE)
        now = c.clock.now_ms()
        async with alarms._lock:
            drill = asyncio.create_task(alarms.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, now, 1, drill=True), now))
            await asyncio.sleep(0)
            assert not alarms.intake_busy(), "a drill's round counted as real life-safety intake"
            assert await asyncio.wait_for(ladder.deliver_pending(), 5) > 0
            assert any(m.alarm_id == aid for m in c.sent())
        await drill


class _Intake:
    """An intake whose busy spells the test sets by hand (the `IntakeGate` the alarm service is in production)."""

    def __init__(self) -> None:
        self.quiet = asyncio.Event()
        self.quiet.set()

    def intake_busy(self) -> bool:
        return not self.quiet.is_set()

    async def intake_quiet(self, max_wait_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait_s):
                await self.quiet.wait()


async def _timed(call: Callable[[], Awaitable[None]]) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call()
    return loop.time() - started


async def test_a_round_already_long_under_way_when_a_storm_begins_still_waits_for_the_storm() -> None:
    """A timer round stepping hundreds of due repeats for over a second when a storm came used to go on at once (its
    bound ran from the round's start): the bound is per busy spell."""
    intake = _Intake()
    defer = _Deference(intake, 0.3)
    assert await _timed(defer) < 0.05  # quiet: no wait
    await asyncio.sleep(0.4)  # the round goes on stepping, longer than the bound
    intake.quiet.clear()  # a storm begins
    asyncio.get_running_loop().call_later(0.15, intake.quiet.set)  # and is through 150 ms later
    waited = await _timed(defer)
    assert 0.12 <= waited < 0.3, f"the round's step went ahead of the storm (waited {waited:.3f} s)"
    intake.quiet.clear()  # the next storm gets the whole bound again
    waited = await _timed(defer)
    assert 0.27 <= waited < 0.5, waited


async def test_in_a_flood_that_does_not_end_the_ladder_waits_one_bound_then_goes_for_one() -> None:
    intake = _Intake()
    intake.quiet.clear()  # busy for ever
    defer = _Deference(intake, 0.2)
    assert 0.17 <= await _timed(defer) < 0.4  # the bound
    for _ in range(3):  # then the ladder goes without waiting for the next bound
        assert await _timed(defer) < 0.05
    await asyncio.sleep(0.25)
    assert 0.17 <= await _timed(defer) < 0.4  # and waits again after it
    intake.quiet.set()
    assert await _timed(defer) < 0.05  # quiet: no wait at all
