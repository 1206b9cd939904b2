"""转警 119 on the real path (alarm service, ladder, AlarmCore, forwarder) against local receivers on loopback ports."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from alerting.lifecycle import Move
from backend.forward.store import ForwardStore, Status, forward_id_of
from backend.forward.timeline import forward_timeline
from backend.sites import SiteDirectory
from backend.stream import Bulletin, Event
from broker.clock import VirtualClock
from tests.forward.receiver import Receiver
from tests.forward.rig import THU_0900, forward_settings, rig
from tests.processes import fresh_database

pytestmark = pytest.mark.asyncio


async def next_forward(queue: asyncio.Queue[Event], timeout_s: float) -> Bulletin:
    """The next `forward` bulletin on the centre's stream (what the live feed shows), within `timeout_s` of real time."""
    async with asyncio.timeout(timeout_s):
        while True:
            e = await queue.get()
            if isinstance(e, Bulletin) and e.kind == "forward":
                return e


async def test_a_verified_fire_is_forwarded_with_its_receipt_within_3_s(tmp_path: Path, sample_site: SiteDirectory) -> None:
    async with Receiver("primary") as rx, rig(tmp_path, sample_site, forward_settings(primary_url=rx.url, duty_phone="010-12345678",
                                                                                     token="t0ken", hmac_secret="s3cret")) as r:
        alarm_id = await r.raise_fire()
        assert rx.requests == []  # raised, not yet verified: nothing goes to 119
        with r.stream.tap() as q:
            t0 = time.monotonic()
            await r.verify(alarm_id, "duty1")
            b = await next_forward(q, 3.0)
            took = time.monotonic() - t0
        assert took < 3.0
        assert b.data["status"] == "receipted"
        assert b.data["receipt"] == "PRIMARY-0001"
        assert b.data["text"].startswith("已转警119（")
        assert "回执号 PRIMARY-0001" in b.data["text"]
        assert b.building_id == "c01-b01"
        assert b.community_id is not None
        [req] = rx.requests
        body = req.body
        assert body["forward_id"] == forward_id_of(alarm_id) == req.headers["idempotency-key"]
        assert body["alarm_type"] == "smoke"
        assert body["drill"] is False
        assert body["place"]["building_id"] == "c01-b01"
        assert body["place"]["unit"] == 2
        assert sample_site.buildings["c01-b01"].name in body["place"]["text"]
        assert "2单元" in body["place"]["text"]
        assert body["raised_at"].endswith("+08:00")
        assert body["raised_at_ms"] == THU_0900
        assert body["contact"]["phone"] == "010-12345678"
        assert body["verification"] == {"how": "verified", "by": "duty1", "at": body["verification"]["at"], "at_ms": THU_0900,
                                        "text": "verified by duty1"}
        assert req.headers["authorization"] == "Bearer t0ken"
        ts = req.headers["x-shouwang-timestamp"]
        assert req.headers["x-shouwang-signature"] == "sha256=" + hmac.new(b"s3cret", ts.encode() + b"." + req.raw, hashlib.sha256).hexdigest()
        rec = ForwardStore(r.engine).get(alarm_id)
        assert rec is not None
        assert rec.status == Status.RECEIPTED
        assert rec.receipt == "PRIMARY-0001"
        assert rec.channel == "primary"
        # on the alarm's timeline, in Chinese
        entries = forward_timeline(r.engine, alarm_id, "zh")
        assert [e["kind"] for e in entries] == ["attempt", "receipted"]
        assert entries[-1]["what"] == "已转警119"
        assert "PRIMARY-0001" in entries[-1]["note"]
        # verifying again (or the ladder's scan) sends nothing more
        await r.verify(alarm_id, "duty2")
        await r.forwarder.scan()
        await r.forwarder.settle()
        assert len(rx.requests) == 1


async def test_nobody_verifies_in_the_window_so_it_is_treated_as_real_and_forwarded(tmp_path: Path, sample_site: SiteDirectory) -> None:
    async with Receiver("primary") as rx, rig(tmp_path, sample_site, forward_settings(primary_url=rx.url)) as r:
        await r.raise_fire()
        r.clock.advance(119)
        await r.escalation.service.run_due()
        await r.forwarder.settle()
        assert rx.requests == []  # still inside the fire policy's 120 s verify window
        with r.stream.tap() as q:
            r.clock.advance(2)
            await r.escalation.service.run_due()  # the window ran out: treated as real
            b = await next_forward(q, 3.0)
        assert b.data["status"] == "receipted"
        [req] = rx.requests
        assert req.body["verification"]["how"] == "treated_real"
        assert req.body["verification"]["by"] is None
        assert req.body["verification"]["text"] == "unverified: treated as real"


async def test_a_drill_is_not_forwarded_unless_asked_and_then_only_to_the_drill_endpoint(tmp_path: Path, sample_site: SiteDirectory) -> None:
    async with Receiver("primary") as rx, rig(tmp_path, sample_site, forward_settings(primary_url=rx.url)) as r:
        alarm_id = await r.raise_fire(drill=True)
        with r.stream.tap() as q:
            await r.verify(alarm_id)
            b = await next_forward(q, 3.0)
        assert b.data["status"] == "not_forwarded"
        assert b.data["text"].startswith("未转警119：演练")
        await r.forwarder.scan()
        await r.forwarder.settle()
        assert rx.requests == []
        rec = ForwardStore(r.engine).get(alarm_id)
        assert rec is not None
        assert rec.status == Status.NOT_FORWARDED
        assert rec.reason == "not forwarded: drill"
    async with Receiver("primary") as rx, Receiver("drill") as drill, \
            rig(tmp_path, sample_site, forward_settings(primary_url=rx.url, drills=True, drill_url=drill.url), db="drills-on.db") as r:
        alarm_id = await r.raise_fire(drill=True)
        with r.stream.tap() as q:
            await r.verify(alarm_id)
            b = await next_forward(q, 3.0)
        assert b.data["status"] == "receipted"
        assert b.data["receipt"] == "DRILL-0001"
        assert rx.requests == []
        assert len(drill.requests) == 1
        assert drill.requests[0].body["drill"] is True


async def test_an_sos_verified_is_no_fire_and_goes_nowhere(tmp_path: Path, sample_site: SiteDirectory) -> None:
    async with Receiver("primary") as rx, rig(tmp_path, sample_site, forward_settings(primary_url=rx.url)) as r:
        alarm_id = await r.raise_fire("sos", "device:c01-b01-sos-1")
        await r.verify(alarm_id)
        await r.forwarder.settle()
        await r.forwarder.scan()
        await r.forwarder.settle()
        assert rx.requests == []
        assert ForwardStore(r.engine).get(alarm_id) is None


@pytest.mark.parametrize("primary_mode", ["fail", "down", "slow"])
async def test_the_fallback_answers_when_the_primary_fails_or_is_too_slow(tmp_path: Path, sample_site: SiteDirectory, primary_mode: str) -> None:
    async with Receiver("primary", mode=primary_mode, delay_s=10) as rx, Receiver("fallback") as fb, \
            rig(tmp_path, sample_site, forward_settings(primary_url=rx.url, fallback_url=fb.url)) as r:
        alarm_id = await r.raise_fire()
        with r.stream.tap() as q:
            t0 = time.monotonic()
            await r.verify(alarm_id)
            b = await next_forward(q, 3.0)
            took = time.monotonic() - t0
        assert b.data["status"] == "receipted"
        assert b.data["channel"] == "fallback"
        assert b.data["receipt"] == "FALLBACK-0001"
        assert took < 3.0
        assert len(rx.requests) == 1
        assert len(fb.requests) == 1
        assert rx.requests[0].body == fb.requests[0].body  # the same forward, the same id, on both channels
        attempts = ForwardStore(r.engine).attempts(alarm_id)
        outcome = {"slow": "timeout", "fail": "http_error", "down": "unreachable"}[primary_mode]
        assert [(a.channel, a.outcome) for a in attempts] == [("primary", outcome), ("fallback", "receipt")]
        if primary_mode == "slow":
            assert 900 <= attempts[0].took_ms < 1500  # attempt_timeout_s: 1 s


async def test_every_channel_down_is_a_critical_system_alarm_and_is_retried_with_the_same_id(tmp_path: Path, sample_site: SiteDirectory) -> None:
    async with Receiver("primary", mode="fail") as rx, Receiver("fallback", mode="down") as fb, \
            rig(tmp_path, sample_site, forward_settings(primary_url=rx.url, fallback_url=fb.url, retry_every_s=10)) as r:
        alarm_id = await r.raise_fire()
        with r.stream.tap() as q:
            t0 = time.monotonic()
            await r.verify(alarm_id)
            b = await next_forward(q, 4.0)
            took = time.monotonic() - t0
        assert 2.5 < took < 3.5  # channels tried in turn for the whole 3 s budget, then given up for this round
        assert b.data["status"] == "failed"
        assert b.data["critical"] is True
        assert b.data["text"].startswith("转警119失败（")
        assert "重试" in b.data["text"]
        assert len(rx.requests) >= 2
        assert len(fb.requests) >= 2
        store = ForwardStore(r.engine)
        rec = store.get(alarm_id)
        assert rec is not None
        assert rec.status == Status.FAILED
        assert rec.next_try_ms == r.clock.now_ms() + 10_000
        assert forward_timeline(r.engine, alarm_id, "zh")[-1]["what"] == "转警119失败"
        # not due yet: the scan leaves it
        sent = len(rx.requests) + len(fb.requests)
        await r.forwarder.scan()
        await r.forwarder.settle()
        assert len(rx.requests) + len(fb.requests) == sent
        # the receiver is back; ten seconds later the next round gets the receipt, with the same id
        rx.mode = "receipt"
        r.clock.advance(10)
        with r.stream.tap() as q:
            await r.forwarder.scan()
            b = await next_forward(q, 3.0)
        assert b.data["status"] == "receipted"
        assert b.data["receipt"] == "PRIMARY-0001"
        assert {req.headers["idempotency-key"] for req in rx.requests + fb.requests} == {forward_id_of(alarm_id)}
        rec = store.get(alarm_id)
        assert rec is not None
        assert rec.status == Status.RECEIPTED
        assert rec.rounds == 2


async def test_a_restart_between_verification_and_forward_sends_it_once(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock(THU_0900)
    async with Receiver("primary") as rx:
        # the process that verified it had no hand-off running (it crashed before, or ran without it)
        async with rig(tmp_path, sample_site, forward_settings(enabled=False, primary_url=rx.url), clock=clock) as r:
            alarm_id = await r.raise_fire()
            await r.verify(alarm_id, "duty1")
        assert rx.requests == []
        clock.advance(30)
        for _ in range(2):  # and it starts again, twice: the first start sends it, the second finds the receipt
            async with rig(tmp_path, sample_site, forward_settings(primary_url=rx.url), clock=clock) as r:
                await r.forwarder.settle()
        [req] = rx.requests
        assert req.body["forward_id"] == forward_id_of(alarm_id)
        assert req.body["verification"]["by"] == "duty1"
        assert req.body["verification"]["at_ms"] == THU_0900  # the verification's own time, not the restart's


async def test_a_crash_in_the_middle_of_a_round_resends_the_same_id_once(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock(THU_0900)
    async with Receiver("primary", mode="slow", delay_s=30) as rx:
        async with rig(tmp_path, sample_site, forward_settings(primary_url=rx.url, attempt_timeout_s=20, budget_s=20), clock=clock) as r:
            alarm_id = await r.raise_fire()
            await r.verify(alarm_id)
            while not rx.requests:  # the request is at the receiver, its answer not yet back
                await asyncio.sleep(0.01)
            for task in list(r.forwarder._inflight.values()):  # the process dies here
                task.cancel()
            await r.forwarder.settle()
        rec = ForwardStore(r.engine).get(alarm_id)
        # claimed and never finished; or not even written (the first POST goes while its forward is written): both resend
        assert rec is None or rec.status == Status.SENDING
        rx.mode = "receipt"
        clock.advance(60)  # the round's lease has run out
        for _ in range(2):
            async with rig(tmp_path, sample_site, forward_settings(primary_url=rx.url), clock=clock) as r:
                await r.forwarder.settle()
        assert [q.headers["idempotency-key"] for q in rx.requests] == [forward_id_of(alarm_id)] * 2
        rec = ForwardStore(r.engine).get(alarm_id)
        assert rec is not None
        assert rec.status == Status.RECEIPTED
        assert rec.receipt == "PRIMARY-0001"
        assert json.loads(rec.payload)["forward_id"] == forward_id_of(alarm_id)


async def test_a_fire_found_after_the_fact_and_already_closed_is_not_forwarded(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A verification found by the scan (the hand-off just enabled, or a long outage) whose fire is over is not sent to 119."""
    clock = VirtualClock(THU_0900)
    async with Receiver("primary") as rx:
        async with rig(tmp_path, sample_site, forward_settings(enabled=False, primary_url=rx.url), clock=clock) as r:
            closed = await r.raise_fire()
            await r.verify(closed, "duty1")  # verified (acknowledged), then handled and closed by the officer
            for m in (Move.ACKNOWLEDGE, Move.FINISH, Move.VERIFY_CLOSE):
                await r.alarms.move(closed, m, "duty1", note="扑灭")
            still_open = await r.raise_fire(subject="device:c01-b02-smoke-1")
            await r.verify(still_open, "duty1")
        async with rig(tmp_path, sample_site, forward_settings(primary_url=rx.url), clock=clock) as r:
            await r.forwarder.settle()
        assert [q.body["alarm_id"] for q in rx.requests] == [still_open]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None
    return fresh_database(request.getfixturevalue("postgres_server"), "forward")


async def test_a_verification_made_in_another_backend_is_found_in_the_store_and_forwarded(tmp_path: Path, sample_site: SiteDirectory,
                                                                                          db_url: str | None) -> None:
    """A cluster: the console's 核实 reached another backend, whose stream the rules leader's forwarder does not hear; the
    ladder's step log in the shared database is where it finds it (every forward.scan_every_s), and sends it once."""
    async with Receiver("primary") as rx, rig(tmp_path, sample_site, forward_settings(primary_url=rx.url, scan_every_s=0.2), url=db_url) as r:
        alarm_id = await r.raise_fire()
        r.stream.unsubscribe(r.forwarder.on_events)  # this process hears nothing of the verification
        with r.stream.tap() as q:
            t0 = time.monotonic()
            await r.verify(alarm_id, "duty2")
            b = await next_forward(q, 3.0)
        assert time.monotonic() - t0 < 3.0
        assert b.data["status"] == "receipted"
        [req] = rx.requests
        assert req.body["verification"]["by"] == "duty2"
        await r.forwarder.scan()
        await r.forwarder.settle()
        assert len(rx.requests) == 1
