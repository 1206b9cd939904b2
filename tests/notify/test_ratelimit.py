"""Per-responder rate limits fold a storm into one summary; the console still sees every notice."""

from __future__ import annotations

import dataclasses

from alerting.ladder import Contact
from backend.clock import VirtualClock
from backend.notify import DeliveryStatus, Dispatcher, LiveConsole, Message, RateLimiter
from tests.escalation.helpers import RecordingChannel


def msg(i: int, who: str = "gw1") -> Message:
    return Message(key=f"A{i}/1/{who}", alarm_id=f"A{i}", contact=Contact(who, who, phone="138"), channels=("sms",), text=f"报警 {i}")


async def test_storm_is_folded_into_one_summary_after_the_window() -> None:
    clock = VirtualClock()
    sms = RecordingChannel("sms")
    console = LiveConsole()
    d = Dispatcher({"sms": sms}, console, clock, limiter=RateLimiter(3, 60))
    with console.subscribe() as sub:
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
        assert sub.queue.qsize() == 12  # 11 notices + the summary, all on the console
    assert len([m for m in sms.sent if m.contact.id == "gw1"]) == 4
    assert await d.flush_storms() == []  # reported once


async def test_drill_storm_summary_is_marked_as_drill() -> None:
    clock = VirtualClock()
    sms = RecordingChannel("sms")
    d = Dispatcher({"sms": sms}, LiveConsole(), clock, limiter=RateLimiter(1, 60))
    for i in range(3):
        await d.deliver(dataclasses.replace(msg(i), drill=True, outside_allowed=True))
    clock.advance(61)
    await d.flush_storms()
    assert sms.sent[-1].text.startswith("【演练】")
