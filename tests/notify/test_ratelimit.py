"""Per-responder rate limits fold a storm into one summary; the console still sees every notice."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
from dataclasses import dataclass, field
from typing import Any

from alerting.ladder import Contact
from backend.notify import DeliveryFailed, DeliveryStatus, Dispatcher, Message, RateLimiter, RetryPolicy
from backend.stream import CentreStream, NoticeSent, ReceiptRecorded
from broker.clock import VirtualClock
from tests.escalation.helpers import RecordingChannel


def msg(i: int, who: str = "gw1") -> Message:
    return Message(key=f"A{i}/1/{who}", alarm_id=f"A{i}", contact=Contact(who, who, phone="138"), channels=("sms",), text=f"报警 {i}")


async def test_storm_is_folded_into_one_summary_after_the_window() -> None:
    clock = VirtualClock()
    sms = RecordingChannel("sms")
    console = CentreStream()
    d = Dispatcher({"sms": sms}, console, clock, limiter=RateLimiter(3, 60))
    with console.tap() as sub:
        statuses = []
        for i in range(10):
            receipts = await d.deliver(msg(i))
            statuses.append(next(r.status for r in receipts if r.channel == "sms"))
            clock.advance(1)
        assert statuses[:3] == [DeliveryStatus.DELIVERED] * 3
        assert statuses[3:] == [DeliveryStatus.RATE_LIMITED] * 7
        other = await d.deliver(msg(99, "bl1"))  # limits are per responder
        assert next(r.status for r in other if r.channel == "sms") is DeliveryStatus.DELIVERED
        assert await d.flush_storms() == []  # the window has not ended
        clock.advance(60)
        summary = await d.flush_storms()
        assert [r.status for r in summary if r.channel == "sms"] == [DeliveryStatus.DELIVERED]
        assert "另有7条报警通知" in sms.sent[-1].text
        heard = [sub.get_nowait() for _ in range(sub.qsize())]
        assert len([e for e in heard if isinstance(e, NoticeSent)]) == 12  # 11 notices + the summary, all on the console
        assert len([e for e in heard if isinstance(e, ReceiptRecorded)]) == 24  # and each one's console and SMS receipt
    assert len([m for m in sms.sent if m.contact.id == "gw1"]) == 4
    assert await d.flush_storms() == []  # reported once


async def test_drill_storm_summary_is_marked_as_drill() -> None:
    clock = VirtualClock()
    sms = RecordingChannel("sms")
    d = Dispatcher({"sms": sms}, CentreStream(), clock, limiter=RateLimiter(1, 60))
    for i in range(3):
        await d.deliver(dataclasses.replace(msg(i), drill=True, outside_allowed=True))
    clock.advance(61)
    await d.flush_storms()
    assert sms.sent[-1].text.startswith("【演练】")


async def test_a_drill_storm_leaves_real_notices_their_own_allowance_and_never_holds_a_real_fire_page() -> None:
    clock = VirtualClock()
    sms = RecordingChannel("sms")
    d = Dispatcher({"sms": sms}, CentreStream(), clock, limiter=RateLimiter(6, 60))
    drill = [next(r.status for r in await d.deliver(dataclasses.replace(msg(i), drill=True, outside_allowed=True)) if r.channel == "sms")
             for i in range(200)]
    assert drill.count(DeliveryStatus.DELIVERED) == 6  # the drill is still limited
    lost = await d.deliver(msg(500))  # a real device-lost notice: the real allowance is untouched by the drill
    assert next(r.status for r in lost if r.channel == "sms") is DeliveryStatus.DELIVERED
    for i in range(5):
        await d.deliver(msg(600 + i))  # the real allowance is used up by minor notices
    fire = dataclasses.replace(msg(700), life_safety=True, text="烟感报警")
    receipts = await d.deliver(fire)
    sms_receipt = next(r for r in receipts if r.channel == "sms")
    assert sms_receipt.status is DeliveryStatus.DELIVERED
    assert sms_receipt.at_ms == clock.now_ms()  # the same moment: not held for the window, not in a summary
    assert sms.sent[-1].text == "烟感报警"
    minor = await d.deliver(msg(701))
    assert next(r.status for r in minor if r.channel == "sms") is DeliveryStatus.RATE_LIMITED
    drill_after = await d.deliver(dataclasses.replace(msg(702), drill=True, outside_allowed=True, life_safety=True))
    assert next(r.status for r in drill_after if r.channel == "sms") is DeliveryStatus.RATE_LIMITED  # a drill fire is a drill
    clock.advance(60)
    summaries = await d.flush_storms()
    texts = sorted(m.text for m in sms.sent[-2:])
    assert len([r for r in summaries if r.channel == "sms"]) == 2  # one for the drill, one for the real notices
    assert texts[0].startswith("【守望】")
    assert "另有1条" in texts[0]
    assert texts[1].startswith("【演练】")
    assert "另有195条" in texts[1]


@dataclass
class LimitedChannel:
    """An SMS gateway with its own hard limit: it answers 429 until `opens_ms` on the clock, then sends."""

    clock: VirtualClock
    opens_ms: int
    kind: str = "sms"
    outside: bool = True
    sent: list[tuple[int, Message]] = field(default_factory=list)

    async def send(self, message: Message) -> str | None:
        if self.clock.now_ms() < self.opens_ms:
            raise DeliveryFailed(self.kind, "HTTP 429: too many requests", transient=True, status=429)
        self.sent.append((self.clock.now_ms(), message))
        return f"sms-{len(self.sent)}"


class VirtualSleeper:
    """Sleeps on the virtual clock: `run()` lets every task run until all of them sleep, then wakes the earliest
    sleeper with the clock moved to its time, in order, until nothing sleeps."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._sleeping: list[tuple[int, int, asyncio.Future[None]]] = []
        self._n = 0

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._n += 1
        heapq.heappush(self._sleeping, (self.clock.now_ms() + round(seconds * 1000), self._n, fut))
        await fut

    async def run(self, *tasks: asyncio.Task[Any]) -> None:
        while not all(t.done() for t in tasks):
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._sleeping:
                wake_ms, _, fut = heapq.heappop(self._sleeping)
                self.clock.advance(max(0, wake_ms - self.clock.now_ms()) / 1000)
                fut.set_result(None)


async def test_a_channels_own_limit_delays_the_fire_page_least_and_the_receipt_says_how_long() -> None:
    clock = VirtualClock()
    sms = LimitedChannel(clock, opens_ms=clock.now_ms() + 400)
    sleeper = VirtualSleeper(clock)
    d = Dispatcher({"sms": sms}, CentreStream(), clock, sleep=sleeper.sleep, retry=RetryPolicy(attempts=6, base_s=0.5), limiter=RateLimiter(100, 60))
    minor = asyncio.create_task(d.deliver(msg(1, "duty1")), name="minor")
    await asyncio.sleep(0)  # the minor notice meets the shut channel first
    fire = asyncio.create_task(d.deliver(dataclasses.replace(msg(2, "gw1"), life_safety=True)), name="fire")
    await sleeper.run(minor, fire)
    assert [m.alarm_id for _, m in sms.sent] == ["A2", "A1"]  # the fire page first when the window opens
    fire_sms = next(r for r in fire.result() if r.channel == "sms")
    assert fire_sms.status is DeliveryStatus.DELIVERED
    assert fire_sms.delayed_ms == 500  # the delay is on the receipt: the channel's back-off, nothing more
    assert next(r for r in minor.result() if r.channel == "sms").delayed_ms == 1000
