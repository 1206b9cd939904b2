"""Delivery receipts end to end (issue 18): each notice's stage per person and channel, stored, published on the centre's
stream and listed on the alarm's timeline (GET /api/alarms/{id}); a person no channel reached is a `notice_failed`
alarm of its own, raised once through the alarm service and resolved by the next notice that gets through.

Against the real alarm service (SQLite, virtual clock), the real dispatcher and the Alibaba SMS and voice channels
pointed at the local fake of Alibaba's documented API (tests/notify/fakes.py); the providers' later reports are posted
to the backend's own report routes in the shapes Alibaba (SmsReport, VoiceReport) and Tencent document.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alerting.ladder import Contact
from alerting.lifecycle import AlarmState
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.notify import DeliveryStatus, Dispatcher, Message, Receipt, ReceiptStore, RetryPolicy
from backend.notify.failures import NOTICE_FAILED, NoticeFailures
from backend.notify.providers import provider_channels
from backend.notify.receipts import ReceiptStage
from backend.notify.reports import ReceiptReports, stage_of_aliyun_sms, stage_of_tencent_sms, stage_of_voice_report
from backend.notify.settings import DEFAULT_SMS_TEMPLATES, NotifySettings, SmsTemplateConfig
from backend.sites import SiteDirectory
from backend.store.alarms import AlarmRecord
from backend.stream import ReceiptRecorded
from tests.api.conftest import ApiRig, make_rig
from tests.notify.fakes import FakeAliyun, finish, serve

AK, AK_SECRET = "LTAI5tTestAccessKey", "aliyun-secret-0123456789"
TTS, DRILL_TTS = "TTS_10001", "TTS_10002"
TTS_PARAMS = ("severity", "title", "place", "action")
TOKEN = "rr-0123456789abcdef-secret"
GOOD_PHONE, BAD_PHONE = "13986665755", "139-8666-5755"  # the fake refuses a number that is not digits (isv.MOBILE_NUMBER_ILLEGAL), as Alibaba does


def sms_templates() -> dict[str, SmsTemplateConfig]:
    return {kind: SmsTemplateConfig(**{**t, "code": f"SMS_46{i}"}) for i, (kind, t) in enumerate(DEFAULT_SMS_TEMPLATES.items(), start=1)}


@pytest.fixture
def aliyun() -> Iterator[tuple[FakeAliyun, str]]:
    fake = FakeAliyun({AK: AK_SECRET}, {**{t.code: tuple(t.params) for t in sms_templates().values()}, TTS: TTS_PARAMS, DRILL_TTS: TTS_PARAMS})
    with serve(fake.handle) as host:
        yield fake, host


@dataclass
class Centre:
    rig: ApiRig
    client: httpx.AsyncClient
    dispatcher: Dispatcher
    receipts: ReceiptStore
    fake: FakeAliyun

    async def page(self, alarm_id: str, person: str = "c01-g1-w1", name: str = "杨敏", *, phone: str = GOOD_PHONE, n: int = 0,
                   channels: tuple[str, ...] = ("sms", "voice"), drill: bool = False) -> list[Receipt]:
        message = Message(key=f"{alarm_id}/gw/{person}/{n}", alarm_id=alarm_id, contact=Contact(person, name, phone=phone), channels=channels,
                          text="【守望】烟感报警，1号楼。网格员：请立即处置。", title="烟感报警", drill=drill, severity="major", place="1号楼 2单元")
        [receipts] = await finish(self.rig.clock, [asyncio.create_task(self.dispatcher.deliver(message))])
        return receipts

    async def timeline(self, alarm_id: str, lang: str = "zh") -> list[dict[str, Any]]:
        got = await self.client.get(f"/api/alarms/{alarm_id}", headers={**self.rig.auth("duty"), "Accept-Language": lang})
        assert got.status_code == 200, got.text
        return [e for e in got.json()["timeline"] if e["source"] == "receipt"]

    def failed_alarms(self, *, drill: bool | None = None) -> list[AlarmRecord]:
        return [a for a in self.rig.service.store.list(limit=1000, drill=drill) if a.alarm_type == NOTICE_FAILED]


@contextlib.asynccontextmanager
async def centre(tmp_path: Path, sites: SiteDirectory, aliyun: tuple[FakeAliyun, str]) -> AsyncIterator[Centre]:
    fake, host = aliyun
    settings = NotifySettings(sms_provider="aliyun", voice_provider="aliyun", aliyun_access_key_id=AK, aliyun_access_key_secret=SecretStr(AK_SECRET),
                              aliyun_sms_endpoint=host, aliyun_voice_endpoint=host, aliyun_protocol="http", sms_templates=sms_templates(),
                              voice_tts_code=TTS, voice_drill_tts_code=DRILL_TTS, voice_show_number="057100000000",
                              voice_report_token=SecretStr(TOKEN))
    async with make_rig(tmp_path, sites) as rig, httpx.AsyncClient() as http:
        engine = rig.deps.alarms.engine
        store = ReceiptStore(engine)
        stream = rig.service.stream

        async def record(r: Receipt) -> None:
            await asyncio.to_thread(store.record, r)

        async def sleep(s: float) -> None:
            await rig.clock.sleep_ms(round(s * 1000))

        channels = provider_channels(settings, http, rig.clock, engine=engine, link_base_url="https://sw.example.cn", link_ttl_s=1800)
        dispatcher = Dispatcher(channels, stream, rig.clock, sleep=sleep, retry=RetryPolicy(3, 0.5, 2.0, 30.0), record=record)
        deps = ApiDeps(**{**rig.deps.__dict__, "stream": stream, "extras": {"notify": settings}})
        async with NoticeFailures(rig.service, store, stream), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://api") as client:
            yield Centre(rig, client, dispatcher, store, fake)


def labels(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["actor_text"], e["label"]) for e in entries]


def heard(queue: asyncio.Queue[Any]) -> list[tuple[str, str, str]]:
    out = []
    while not queue.empty():
        e = queue.get_nowait()
        if isinstance(e, ReceiptRecorded):
            out.append((e.contact, e.channel, e.status))
    return out


async def test_each_stage_of_a_notice_is_stored_published_and_on_the_alarm_timeline(tmp_path: Path, sample_site: SiteDirectory,
                                                                                    aliyun: tuple[FakeAliyun, str]) -> None:
    async with centre(tmp_path, sample_site, aliyun) as c:
        alarm_id = await c.rig.smoke(c.rig.device("c01-g1"))
        with c.rig.service.stream.tap() as queue:
            receipts = await c.page(alarm_id)
            assert {r.channel: r.status for r in receipts} == {"console": DeliveryStatus.DELIVERED, "sms": DeliveryStatus.DELIVERED,
                                                                "voice": DeliveryStatus.DELIVERED}
            assert sorted(heard(queue)) == [("c01-g1-w1", "console", "delivered"), ("c01-g1-w1", "sms", "sent"), ("c01-g1-w1", "voice", "sent")]
            assert sorted(labels(await c.timeline(alarm_id))) == [("杨敏", "短信 已发送"), ("杨敏", "语音 已发送")]  # the console's own copy is not listed

            sms = next(r for r in receipts if r.channel == "sms")
            voice = next(r for r in receipts if r.channel == "voice")
            # Alibaba's SmsReport push: the SMS reached the phone
            report = [{"phone_number": GOOD_PHONE, "send_time": "2026-12-06 09:00:00", "report_time": "2026-12-06 09:00:03", "success": True,
                       "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": sms.provider_ref, "out_id": "x"}]
            wrong = await c.client.post("/api/notify/sms-report/not-the-token", json=report)
            assert wrong.status_code == 401
            got = await c.client.post(f"/api/notify/sms-report/{TOKEN}", json=report)
            assert got.status_code == 200, got.text
            assert got.json()["code"] == 0
            assert got.json()["recorded"] == 1
            assert (await c.client.post(f"/api/notify/sms-report/{TOKEN}", json=report)).json()["recorded"] == 0  # pushed again: no news
            assert heard(queue) == [("c01-g1-w1", "sms", "delivered")]

            # the person opened the one-tap link the SMS carried
            assert await ReceiptReports(c.receipts, c.rig.service.stream).opened(alarm_id, "c01-g1-w1", c.rig.clock.now_ms()) is not None
            assert heard(queue) == [("c01-g1-w1", "sms", "read")]

            # Alibaba's VoiceReport push: the call was picked up and 1 pressed; the alarm is acknowledged on their behalf
            call = [{"status_code": "200000", "status_msg": "用户听完挂断", "call_id": voice.provider_ref, "out_id": "y", "dtmf": "1",
                     "callee": GOOD_PHONE, "caller": "057100000000", "duration": "21"}]
            got = await c.client.post(f"/api/notify/voice-report/{TOKEN}", json=call)
            assert got.json()["acknowledged"] == 1
            assert ("c01-g1-w1", "voice", "answered") in heard(queue)

        entries = await c.timeline(alarm_id)
        assert sorted(labels(entries[:2])) == [("杨敏", "短信 已发送"), ("杨敏", "语音 已发送")]
        assert labels(entries[2:]) == [("杨敏", "短信 已送达"), ("杨敏", "短信 已读"), ("杨敏", "语音 已接听·按1确认")]
        assert all(e["contact"] == "c01-g1-w1" and e["at_ms"] > 0 for e in entries)
        assert [e["label"] for e in await c.timeline(alarm_id, "en")][2:] == ["SMS: delivered", "SMS: read", "voice: answered, pressed 1 to accept"]
        alarm = c.rig.service.store.get(alarm_id)
        assert alarm is not None
        assert alarm.state is AlarmState.ACKNOWLEDGED
        assert c.receipts.stages_of(sms.key) == {"console": ReceiptStage.DELIVERED, "sms": ReceiptStage.READ, "voice": ReceiptStage.ANSWERED}
        assert c.failed_alarms() == []


async def test_a_person_no_channel_reached_is_one_alarm_of_its_own_closed_by_the_next_notice_that_gets_through(
        tmp_path: Path, sample_site: SiteDirectory, aliyun: tuple[FakeAliyun, str]) -> None:
    async with centre(tmp_path, sample_site, aliyun) as c:
        alarm_id = await c.rig.smoke(c.rig.device("c01-g1"))
        paged = c.rig.service.store.get(alarm_id)
        assert paged is not None
        # one of two channels refused (the provider's first answer), the other went out: the person was reached, no alarm
        c.fake.fail_next = [(400, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"})]
        partly = await c.page(alarm_id, "c01-g1-w2", "王芳")
        assert sorted(r.status for r in partly if r.channel != "console") == [DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]
        assert c.failed_alarms() == []

        receipts = await c.page(alarm_id, phone=BAD_PHONE)
        assert {r.channel: r.status for r in receipts if r.channel != "console"} == {"sms": DeliveryStatus.FAILED, "voice": DeliveryStatus.FAILED}
        labels_now = labels(await c.timeline(alarm_id))
        assert ("杨敏", "短信 失败（Alibaba Cloud isv.MOBILE_NUMBER_ILLEGAL: 非法手机号）") in labels_now
        assert ("杨敏", "语音 失败（Alibaba Cloud isv.MOBILE_NUMBER_ILLEGAL: 非法手机号）") in labels_now

        [failed] = c.failed_alarms()
        assert failed.is_open
        assert not failed.drill
        assert not failed.life_safety
        assert failed.severity == "major"
        assert failed.key.startswith("contact:c01-g1-w1")
        assert "杨敏" in failed.title
        assert paged.title in failed.title
        assert failed.title.startswith("通知未送达")
        assert failed.building_id == paged.place.building
        # the board shows it like any other alarm
        board = await c.client.get("/api/alarms", headers=c.rig.auth("duty"))
        assert failed.id in [a["id"] for a in board.json()["alarms"]]

        await c.page(alarm_id, phone=BAD_PHONE, n=1)  # the repeat fails too: the same alarm, one more occurrence
        [again] = c.failed_alarms()
        assert again.id == failed.id
        assert again.occurrences == 2
        assert again.is_open

        await c.page(alarm_id, phone=GOOD_PHONE, n=2)  # a later notice gets through: the alarm closes by itself
        [closed] = c.failed_alarms()
        assert closed.id == failed.id
        assert not closed.is_open


async def test_an_sms_the_provider_took_but_could_not_deliver_raises_the_alarm_from_its_report(
        tmp_path: Path, sample_site: SiteDirectory, aliyun: tuple[FakeAliyun, str]) -> None:
    async with centre(tmp_path, sample_site, aliyun) as c:
        alarm_id = await c.rig.smoke(c.rig.device("c01-g1"))
        [sms] = [r for r in await c.page(alarm_id, channels=("sms",)) if r.channel == "sms"]
        assert c.failed_alarms() == []  # sent is not yet a failure
        report = [{"phone_number": GOOD_PHONE, "success": False, "err_code": "MK:0001", "err_msg": "用户关机", "biz_id": sms.provider_ref}]
        assert (await c.client.post(f"/api/notify/sms-report/{TOKEN}", json=report)).json()["recorded"] == 1
        assert labels(await c.timeline(alarm_id))[-1] == ("杨敏", "短信 失败（MK:0001 用户关机）")
        [failed] = c.failed_alarms()
        assert failed.is_open


async def test_a_drill_notice_that_fails_raises_a_drill_alarm_never_a_real_one(tmp_path: Path, sample_site: SiteDirectory,
                                                                              aliyun: tuple[FakeAliyun, str]) -> None:
    async with centre(tmp_path, sample_site, aliyun) as c:
        alarm_id = await c.rig.smoke(c.rig.device("c01-g1"), drill=True)
        await c.page(alarm_id, phone=BAD_PHONE, drill=True)
        assert c.failed_alarms(drill=False) == []
        [failed] = c.failed_alarms(drill=True)
        assert failed.drill
        assert failed.is_open
        await c.page(alarm_id, phone=GOOD_PHONE, drill=True, n=1)
        [closed] = c.failed_alarms(drill=True)
        assert not closed.is_open
        assert c.failed_alarms(drill=False) == []


def test_the_providers_reports_read_as_stages() -> None:
    assert stage_of_voice_report({"status_code": "200000", "dtmf": "1"}) == (ReceiptStage.ANSWERED, "pressed 1")
    assert stage_of_voice_report({"status_code": "200000", "dtmf": ""}) == (ReceiptStage.ANSWERED, "")
    assert stage_of_voice_report({"status_code": "200005", "status_msg": "用户未接听", "duration": "0"}) == (ReceiptStage.FAILED, "用户未接听")
    assert stage_of_aliyun_sms({"success": True, "err_code": "DELIVERED"}) == (ReceiptStage.DELIVERED, "")
    assert stage_of_aliyun_sms({"success": False, "err_code": "MK:0001", "err_msg": "用户关机"}) == (ReceiptStage.FAILED, "MK:0001 用户关机")
    tencent_ok = {"user_receive_time": "2026-12-06 09:00:03", "nationcode": "86", "mobile": GOOD_PHONE, "report_status": "SUCCESS",
                  "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "2019:-123"}
    assert stage_of_tencent_sms(tencent_ok) == (ReceiptStage.DELIVERED, "")
    assert stage_of_tencent_sms({**tencent_ok, "report_status": "FAIL", "errmsg": "MI:0013", "description": "空号"}) == (ReceiptStage.FAILED, "MI:0013 空号")
