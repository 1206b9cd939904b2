"""WeCom and DingTalk group robots against local fakes of their documented webhook protocol (not the real platforms).

One post per page naming everyone paged, DingTalk's signed mode, a robot per community, the 20-a-minute limit
with the fire page first, the platforms' rate-limit and server errors retried; time is a virtual clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from alerting.ladder import Contact
from backend.notify import DeliveryFailed, DeliveryStatus, Dispatcher, Message, Receipt, RetryPolicy
from backend.notify.robots import Robot, RobotChannel, dingtalk_sign
from backend.stream import CentreStream
from broker.clock import VirtualClock
from tests.notify.fakes import FakeRobots, serve

STATION = [Contact(f"mfs-{i}", name, phone=f"1390000000{i}") for i, name in enumerate(["王强", "李娜", "张伟"])]
SECRET = "SEC0123456789abcdef"


def page(alarm: str, contact: Contact, *, kind: str = "dingtalk", severity: str = "critical", life_safety: bool = False,
         building: str = "b1", rung: str = "fire_station") -> Message:
    return Message(key=f"{alarm}/{rung}/{contact.id}/0", alarm_id=alarm, contact=contact, channels=(kind,),
                   text=f"【守望】紧急烟感报警，{building}号楼。微型消防站：请立即处置。回复链接：http://x/r/secret-{contact.id}",
                   title="烟感报警", rung=rung, building=building, severity=severity, life_safety=life_safety)


async def until(pred: Callable[[], bool]) -> None:
    """Wait for something a real HTTP round trip or another task will make true (bounded)."""
    for _ in range(6000):  # 30 s at most: the machine is shared
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


@dataclass
class Rig:
    clock: VirtualClock
    fake: FakeRobots
    channel: RobotChannel
    dispatcher: Dispatcher
    receipts: list[Receipt]

    async def deliver(self, *messages: Message) -> list[asyncio.Task[list[Receipt]]]:
        return [asyncio.create_task(self.dispatcher.deliver(m)) for m in messages]

    async def finish(self, tasks: list[asyncio.Task[list[Receipt]]], step_s: float = 1.0) -> list[list[Receipt]]:
        """Run virtual time forward until every delivery is done, letting real HTTP answers arrive in between."""
        for _ in range(5000):
            if all(t.done() for t in tasks):
                return [t.result() for t in tasks]
            await asyncio.wait(tasks, timeout=0.005)
            await self.clock.run_for(step_s)
        raise AssertionError("deliveries never finished")


RigMaker = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rigs() -> AsyncIterator[RigMaker]:
    stack: list[Any] = []

    async def make(kind: str = "dingtalk", *, robots: dict[str, Robot] | None = None, fake_keys: dict[str, str | None] | None = None,
                   gather_s: float = 0.0, fake_limit: int = 20) -> Rig:
        clock = VirtualClock()
        robots = robots or {"*": Robot("*", "tok-all", SECRET if kind == "dingtalk" else None)}
        fake = FakeRobots(kind, clock.now_ms, fake_keys if fake_keys is not None else {r.key: r.secret for r in robots.values()}, limit=fake_limit)
        cm = serve(fake.handle)
        host = cm.__enter__()
        stack.append(cm)
        http = httpx.AsyncClient(timeout=5)
        stack.append(http)
        path = "/cgi-bin/webhook/send" if kind == "wecom" else "/robot/send"
        channel = RobotChannel(kind, f"http://{host}{path}", robots, http, clock, community_of=lambda b: {"b1": "c1", "b2": "c2"}.get(b or ""),
                               gather_s=gather_s)
        receipts: list[Receipt] = []

        async def record(r: Receipt) -> None:
            receipts.append(r)

        async def sleep(s: float) -> None:
            await clock.sleep_ms(round(s * 1000))

        dispatcher = Dispatcher({kind: channel}, CentreStream(), clock, sleep=sleep, retry=RetryPolicy(6, 0.5, 2.0, 30.0), record=record)
        return Rig(clock, fake, channel, dispatcher, receipts)

    yield make
    for thing in reversed(stack):
        if isinstance(thing, httpx.AsyncClient):
            await thing.aclose()
        else:
            thing.__exit__(None, None, None)


def test_dingtalk_sign_is_the_documented_hmac() -> None:
    # DingTalk's documented example computation: HMAC-SHA256 over "timestamp\nsecret", base64, then URL-encoded
    import base64
    import hashlib
    import hmac
    import urllib.parse

    ts = 1_767_225_600_000
    raw = base64.b64encode(hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()).decode()
    assert dingtalk_sign(SECRET, ts) == urllib.parse.quote_plus(raw)
    assert "%" in dingtalk_sign(SECRET, ts) or raw.isalnum()


async def test_one_signed_dingtalk_post_per_page_names_and_mentions_everyone_and_holds_no_link(rigs: RigMaker) -> None:
    rig = await rigs("dingtalk", gather_s=0.3)
    tasks = await rig.deliver(*(page("A1", c, life_safety=True) for c in STATION))
    await until(lambda: sum(len(p.messages) for p in rig.channel._gathering.values()) == 3)
    results = await rig.finish(tasks, step_s=0.1)
    assert len(rig.fake.posts) == 1, rig.fake.refusals  # signature accepted, one post
    post = rig.fake.posts[0]
    assert sorted(rig.fake.notified(post)) == sorted(c.phone for c in STATION if c.phone)
    for c in STATION:
        assert c.name in post["text"]["content"]
    assert "http" not in post["text"]["content"]
    assert "回复链接" not in post["text"]["content"]
    sent = [r for rs in results for r in rs if r.channel == "dingtalk"]
    assert [r.status for r in sent] == [DeliveryStatus.DELIVERED] * 3


async def test_a_wrong_dingtalk_secret_is_refused_by_the_signature_check_and_not_retried(rigs: RigMaker) -> None:
    rig = await rigs("dingtalk", robots={"*": Robot("*", "tok-all", "not-the-secret")}, fake_keys={"tok-all": SECRET})
    [result] = await rig.finish(await rig.deliver(page("A1", STATION[0])))
    [r] = [r for r in result if r.channel == "dingtalk"]
    assert r.status is DeliveryStatus.FAILED
    assert r.attempts == 1
    assert "310000" in (r.error or "")
    assert rig.fake.posts == []
    assert rig.fake.refusals[0]["errmsg"].startswith("sign not match")


async def test_each_community_pages_through_its_own_wecom_robot_with_mentioned_mobiles(rigs: RigMaker) -> None:
    robots = {"c1": Robot("c1", "key-c1"), "c2": Robot("c2", "key-c2")}
    rig = await rigs("wecom", robots=robots)
    await rig.finish(await rig.deliver(page("A1", STATION[0], kind="wecom", building="b1"), page("A2", STATION[1], kind="wecom", building="b2")))
    assert sorted((p["robot"], tuple(rig.fake.notified(p))) for p in rig.fake.posts) == [
        ("key-c1", (STATION[0].phone,)), ("key-c2", (STATION[1].phone,))]
    # a building whose community has no robot and no default robot: a permanent failure, said plainly
    [result] = await rig.finish(await rig.deliver(page("A3", STATION[2], kind="wecom", building="b9")))
    assert [r.status for r in result if r.channel == "wecom"] == [DeliveryStatus.FAILED]


async def test_a_throttled_robot_sends_the_fire_page_before_the_queued_minor_posts(rigs: RigMaker) -> None:
    rig = await rigs("dingtalk")
    first = await rig.deliver(*(page(f"M{i}", STATION[0], severity="minor") for i in range(20)))
    await until(lambda: all(t.done() for t in first))
    assert len(rig.fake.posts) == 20  # the minute's allowance is spent
    queued = await rig.deliver(*(page(f"Q{i}", STATION[1], severity="minor") for i in range(3)))
    await until(lambda: rig.channel.throttles["*"].waiting == 3)
    rig.clock.advance(10)
    fire = await rig.deliver(page("FIRE", STATION[2], severity="critical", life_safety=True))
    await until(lambda: rig.channel.throttles["*"].waiting == 4)
    await rig.finish([*queued, *fire])
    order = [p["text"]["content"] for p in rig.fake.posts[20:]]
    assert "王强" not in order[0]
    assert "张伟" in order[0]
    assert rig.fake.refusals == []  # the robot never went over its limit
    assert all(p["at_ms"] - rig.fake.posts[0]["at_ms"] >= 60_000 for p in rig.fake.posts[20:])


@pytest.mark.parametrize(("kind", "answer"), [
    ("wecom", (200, {"errcode": 45009, "errmsg": "api freq out of limit"})),
    ("dingtalk", (200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})),
    ("dingtalk", (429, {"errcode": 429, "errmsg": "too many requests"})),
    ("wecom", (503, {"errcode": -1, "errmsg": "system busy"})),
    ("wecom", (200, {"errcode": -1, "errmsg": "system busy"})),
])
async def test_the_platforms_rate_limit_and_server_errors_are_retried_not_final(rigs: RigMaker, kind: str, answer: tuple[int, dict[str, Any]]) -> None:
    rig = await rigs(kind)
    rig.fake.fail_next.append(answer)
    [result] = await rig.finish(await rig.deliver(page("A1", STATION[0], kind=kind, life_safety=True)))
    [r] = [r for r in result if r.channel == kind]
    assert r.status is DeliveryStatus.DELIVERED
    assert r.attempts == 2
    assert len(rig.fake.posts) == 1
    if answer[1]["errcode"] in (45009, 130101, 429):
        assert r.delayed_ms >= 60_000  # the robot waited out its window before trying again


async def test_a_message_redelivered_after_its_post_went_out_is_not_posted_twice(rigs: RigMaker) -> None:
    rig = await rigs("wecom", robots={"*": Robot("*", "k")})
    m = page("A1", STATION[0], kind="wecom")
    [a] = await rig.finish(await rig.deliver(m))
    [b] = await rig.finish(await rig.deliver(dataclasses.replace(m)))
    assert len(rig.fake.posts) == 1
    assert [r.status for r in a + b if r.channel == "wecom"] == [DeliveryStatus.DELIVERED] * 2


async def test_a_page_interrupted_while_it_gathers_fails_the_others_transiently_instead_of_leaving_them_waiting(rigs: RigMaker) -> None:
    rig = await rigs("dingtalk", gather_s=0.3)
    first = asyncio.create_task(rig.channel.send(page("A1", STATION[0])))
    second = asyncio.create_task(rig.channel.send(page("A1", STATION[1])))
    await until(lambda: sum(len(p.messages) for p in rig.channel._gathering.values()) == 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(DeliveryFailed) as failed:
        await asyncio.wait_for(second, 5)
    assert failed.value.transient
    assert rig.channel._gathering == {}
    assert rig.fake.posts == []
