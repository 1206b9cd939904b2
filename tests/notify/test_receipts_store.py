"""The receipts' stages (issue 18) on their own: a group robot's ok is "delivered" (the post is in the group), a refused
post is "failed" with the platform's reason, both stored, published and worded for the timeline; a stage only moves
forward, a redelivery never takes back a later report, a report pushed twice is no news; a drill's withheld channel
and a rate-limited one say why they were not sent. DingTalk against the local fake of its documented robot API
(tests/notify/fakes.py); the receipts on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerting.ladder import Contact
from backend.i18n import timeline_text
from backend.notify import DeliveryStatus, Dispatcher, Message, RateLimiter, Receipt, ReceiptStore, RetryPolicy
from backend.notify.receipts import ReceiptStage, stage_of
from backend.notify.robots import Robot, RobotChannel
from backend.notify.timeline import receipt_timeline
from backend.store.db import make_engine, sqlite_url
from backend.stream import CentreStream, ReceiptRecorded
from broker.clock import VirtualClock
from tests.escalation.helpers import RecordingChannel
from tests.notify.fakes import FakeRobots, finish, serve

SECRET = "SEC0123456789abcdef"
WANG = Contact("mfs-0", "王强", phone="13900000000")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReceiptStore]:
    engine = make_engine(sqlite_url(tmp_path / "receipts.db"))
    yield ReceiptStore(engine)
    engine.dispose()


def labels(store: ReceiptStore, alarm_id: str, lang: str = "zh") -> list[str]:
    return [timeline_text(e, "en" if lang == "en" else "zh")["label"] for e in receipt_timeline(store.engine, alarm_id)]


async def test_a_robot_post_answered_ok_is_delivered_and_a_refused_one_failed_with_the_platforms_reason(store: ReceiptStore) -> None:
    clock = VirtualClock()
    fake = FakeRobots("dingtalk", clock.now_ms, {"tok-all": SECRET})
    stream = CentreStream()

    async def record(r: Receipt) -> None:
        await asyncio.to_thread(store.record, r)

    async def sleep(s: float) -> None:
        await clock.sleep_ms(round(s * 1000))

    with serve(fake.handle) as host:
        async with httpx.AsyncClient(timeout=5) as http:
            good = RobotChannel("dingtalk", f"http://{host}/robot/send", {"*": Robot("*", "tok-all", SECRET)}, http, clock)
            bad = RobotChannel("dingtalk", f"http://{host}/robot/send", {"*": Robot("*", "tok-all", "not-the-secret")}, http, clock)
            for channel, alarm in ((good, "A1"), (bad, "A2")):
                d = Dispatcher({"dingtalk": channel}, stream, clock, sleep=sleep, retry=RetryPolicy(3, 0.5, 2.0, 30.0), record=record)
                message = Message(key=f"{alarm}/mfs/mfs-0/0", alarm_id=alarm, contact=WANG, channels=("dingtalk",), text="烟感报警", title="烟感报警")
                with stream.tap() as queue:
                    await finish(clock, [asyncio.create_task(d.deliver(message))])
                    events = [queue.get_nowait() for _ in range(queue.qsize())]
                receipt_events = [e for e in events if isinstance(e, ReceiptRecorded) and e.channel == "dingtalk"]
                assert [(e.status, e.contact_name, e.channels) for e in receipt_events] == \
                    [("delivered" if alarm == "A1" else "failed", "王强", ("dingtalk",))]
    assert labels(store, "A1") == ["钉钉 已送达"]
    assert labels(store, "A1", "en") == ["DingTalk: delivered"]
    [refused] = labels(store, "A2")
    assert refused.startswith("钉钉 失败（")
    assert "310000" in refused  # DingTalk's "sign not match", the platform's own code


def test_a_stage_only_moves_forward_and_a_redelivery_keeps_a_later_report(store: ReceiptStore) -> None:
    sent = Receipt("A1/gw/p1/0", "A1", "p1", "sms", DeliveryStatus.DELIVERED, 1, 1_000, provider_ref="BIZ-1", contact_name="杨敏")
    change = store.record(sent)
    assert change is not None
    assert change.stage is ReceiptStage.SENT
    assert store.report("sms", "BIZ-1", ReceiptStage.DELIVERED, 2_000) is not None
    assert store.report("sms", "BIZ-1", ReceiptStage.DELIVERED, 2_500) is None  # pushed again: no news
    assert store.report("sms", "BIZ-1", ReceiptStage.SENT, 2_600) is None  # backwards: no news
    assert store.record(sent) is None  # redelivered after a crash: the report's stage stands
    assert store.stages_of("A1/gw/p1/0") == {"sms": ReceiptStage.DELIVERED}
    assert store.report("sms", "BIZ-1", ReceiptStage.FAILED, 3_000, "MK:0001 用户关机") is not None  # failed may follow
    assert store.report("sms", "UNKNOWN", ReceiptStage.DELIVERED, 3_000) is None
    assert labels(store, "A1") == ["短信 已发送", "短信 已送达", "短信 失败（MK:0001 用户关机）"]
    assert [c.at_ms for c in store.changes_for("A1")] == [1_000, 2_000, 3_000]


async def test_a_drill_withheld_and_a_rate_limited_notice_say_why_they_were_not_sent(store: ReceiptStore) -> None:
    clock = VirtualClock()

    async def record(r: Receipt) -> None:
        store.record(r)

    d = Dispatcher({"sms": RecordingChannel("sms")}, CentreStream(), clock, limiter=RateLimiter(1, 60), record=record)
    drill = Message(key="D1/gw/p1/0", alarm_id="D1", contact=WANG, channels=("sms",), text="演练", drill=True, outside_allowed=False)
    await d.deliver(drill)
    for i in range(2):
        await d.deliver(Message(key=f"A1/gw/p1/{i}", alarm_id="A1", contact=WANG, channels=("sms", "voice"), text="报警"))
    assert labels(store, "D1") == ["短信 未发送（演练不外发）"]
    # a notice's channels known without sending are recorded with its console copy, before any channel that sends
    assert labels(store, "A1") == ["语音 未发送（未配置该渠道）", "短信 已发送", "短信 未单独发送（限流合并）", "语音 未发送（未配置该渠道）"]
    assert stage_of(Receipt("k", "A", "p", "wecom", DeliveryStatus.DELIVERED, 1, 0)) is ReceiptStage.DELIVERED
    assert stage_of(Receipt("k", "A", "p", "app", DeliveryStatus.DELIVERED, 1, 0)) is ReceiptStage.SENT
