"""Voice calls through Alibaba Cloud's SDK against a local fake of its documented API (not the real cloud), and the
keypress receipt ("press 1 to accept") fed back through the backend's route and the alarm service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from alerting.ladder import Contact
from alerting.lifecycle import AlarmState
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.notify import DeliveryStatus, Dispatcher, Message, Receipt, ReceiptStore, RetryPolicy
from backend.notify.providers import provider_channels
from backend.notify.settings import NotifySettings
from backend.notify.shortlinks import ShortLinks
from backend.sites import SiteDirectory
from backend.stream import CentreStream
from broker.clock import VirtualClock
from tests.api.conftest import ApiRig, make_rig
from tests.notify.fakes import FakeAliyun, finish, serve

AK, AK_SECRET = "LTAI5tTestAccessKey", "aliyun-secret-0123456789"
TTS, DRILL_TTS = "TTS_10001", "TTS_10002"
TTS_PARAMS = ("severity", "title", "place", "action")
REPORT_TOKEN = "vr-0123456789abcdef-secret"
LINK = "https://sw.example.cn/r/eyJhbGciOiJIUzI1NiJ9.payload.signature"


def call(key: str = "A1/mfs/c01-mfs-head/0", *, drill: bool = False, reason: str = "page") -> Message:
    return Message(key=key, alarm_id="A1", contact=Contact("c01-mfs-head", "王强", phone="13900000001"), channels=("voice",),
                   text=f"【守望】紧急火警，1号楼。微型消防站：请立即处置。回复链接：{LINK}", title="火警", link=LINK, drill=drill, severity="critical",
                   place="1号楼 2单元", life_safety=True, reason=reason)


@pytest.fixture
def aliyun() -> Iterator[tuple[FakeAliyun, str]]:
    fake = FakeAliyun({AK: AK_SECRET}, {TTS: TTS_PARAMS, DRILL_TTS: TTS_PARAMS})
    with serve(fake.handle) as host:
        yield fake, host


async def deliver(host: str, *messages: Message) -> list[list[Receipt]]:
    clock = VirtualClock()
    settings = NotifySettings(voice_provider="aliyun", aliyun_access_key_id=AK, aliyun_access_key_secret=SecretStr(AK_SECRET),
                              aliyun_voice_endpoint=host, aliyun_protocol="http", voice_tts_code=TTS, voice_drill_tts_code=DRILL_TTS,
                              voice_show_number="057100000000")
    async with httpx.AsyncClient() as http:
        channels = provider_channels(settings, http, clock)

        async def sleep(s: float) -> None:
            await clock.sleep_ms(round(s * 1000))

        dispatcher = Dispatcher(channels, CentreStream(), clock, sleep=sleep, retry=RetryPolicy(4, 0.5, 2.0, 30.0))
        return await finish(clock, [asyncio.create_task(dispatcher.deliver(m)) for m in messages])


def voice(receipts: list[Receipt]) -> Receipt:
    [r] = [r for r in receipts if r.channel == "voice"]
    return r


async def test_a_call_reads_the_approved_tts_template_with_parameters_and_no_link(aliyun: tuple[FakeAliyun, str]) -> None:
    fake, host = aliyun
    [receipts] = await deliver(host, call())
    r = voice(receipts)
    assert r.status is DeliveryStatus.DELIVERED, r.error  # the fake verified the ACS3-HMAC-SHA256 signature
    [sent] = fake.sent.values()
    assert r.provider_ref == sent["CallId"]
    assert sent["CalledNumber"] == "13900000001"
    assert sent["CalledShowNumber"] == "057100000000"
    assert sent["TtsCode"] == TTS
    assert sent["PlayTimes"] == "2"
    assert json.loads(sent["TtsParam"]) == {"severity": "紧急", "title": "火警", "place": "1号楼 2单元", "action": "请立即处置"}
    assert "http" not in sent["TtsParam"]


async def test_a_lost_answer_is_retried_with_the_same_out_id_and_the_phone_rings_once(aliyun: tuple[FakeAliyun, str]) -> None:
    fake, host = aliyun
    fake.lose_answer_next = 1
    [receipts] = await deliver(host, call())
    r = voice(receipts)
    assert r.status is DeliveryStatus.DELIVERED
    assert r.attempts == 2
    calls = [q for q in fake.requests if q["action"] == "SingleCallByTts"]
    assert len(calls) == 2
    assert calls[0]["OutId"] == calls[1]["OutId"]
    assert len(fake.sent) == 1


async def test_a_drill_call_uses_the_drill_template_and_a_storm_summary_is_never_a_call(aliyun: tuple[FakeAliyun, str]) -> None:
    fake, host = aliyun
    [drill, storm] = await deliver(host, call("D1/mfs/c/0", drill=True), call("storm/c/1", reason="storm"))
    assert voice(drill).status is DeliveryStatus.DELIVERED
    assert [s["TtsCode"] for s in fake.sent.values()] == [DRILL_TTS]
    assert voice(storm).status is DeliveryStatus.FAILED


# -- the keypress receipt, through the API and the alarm service ----------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[tuple[ApiRig, httpx.AsyncClient]]:
    async with make_rig(tmp_path, sample_site) as rig:
        deps = ApiDeps(**{**rig.deps.__dict__, "extras": {"notify": NotifySettings(voice_report_token=SecretStr(REPORT_TOKEN))}})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://api") as client:
            yield rig, client


def report(call_id: str, dtmf: str) -> dict[str, str]:
    return {"status_code": "200000", "status_msg": "用户听完挂断", "call_id": call_id, "out_id": "5f0e…", "dtmf": dtmf, "callee": "13900000001",
            "caller": "057100000000", "start_time": "2026-01-01 08:00:01", "end_time": "2026-01-01 08:00:31", "duration": "30"}


async def test_pressing_1_acknowledges_the_alarm_through_the_alarm_service(api: tuple[ApiRig, httpx.AsyncClient]) -> None:
    rig, client = api
    alarm_id = await rig.smoke(rig.device("c01-g1"))
    ReceiptStore(rig.deps.alarms.engine).record(Receipt(f"{alarm_id}/mfs/c01-mfs-head/0", alarm_id, "c01-mfs-head", "voice", DeliveryStatus.DELIVERED,
                                                        1, rig.clock.now_ms(), provider_ref="116012354148^102813780"))
    # another person's call, who pressed 2 (not accept), and a report for a call this centre never made
    ReceiptStore(rig.deps.alarms.engine).record(Receipt(f"{alarm_id}/gw/c01-g1-w1/0", alarm_id, "c01-g1-w1", "voice", DeliveryStatus.DELIVERED,
                                                        1, rig.clock.now_ms(), provider_ref="116012354149^102813781"))
    before = rig.service.store.get(alarm_id)
    assert before is not None
    assert before.state is not AlarmState.ACKNOWLEDGED

    wrong = await client.post("/api/notify/voice-report/not-the-token", json=[report("116012354148^102813780", "1")])
    assert wrong.status_code == 401
    assert "密钥不符" in wrong.json()["detail"]
    unchanged = rig.service.store.get(alarm_id)
    assert unchanged is not None
    assert unchanged.state is before.state

    pushed = [report("116012354149^102813781", "2"), report("999^999", "1"), report("116012354148^102813780", "1")]
    got = await client.post(f"/api/notify/voice-report/{REPORT_TOKEN}", json=pushed)
    assert got.status_code == 200, got.text
    assert got.json() == {"code": 0, "msg": "成功", "acknowledged": 1}
    after = rig.service.store.get(alarm_id)
    assert after is not None
    assert after.state is AlarmState.ACKNOWLEDGED
    [ack] = [e for e in rig.service.store.audit(alarm_id) if e.to_state is AlarmState.ACKNOWLEDGED]
    assert ack.actor == "c01-mfs-head"
    assert "按1" in ack.note

    again = await client.post(f"/api/notify/voice-report/{REPORT_TOKEN}", json=[report("116012354148^102813780", "1")])  # pushed twice
    assert again.json()["acknowledged"] == 0
    assert len([e for e in rig.service.store.audit(alarm_id) if e.to_state is AlarmState.ACKNOWLEDGED]) == 1


async def test_a_short_link_leads_to_its_one_tap_link_until_it_expires(api: tuple[ApiRig, httpx.AsyncClient]) -> None:
    rig, client = api
    links = ShortLinks(rig.deps.alarms.engine)
    code = links.shorten(LINK, "A1/gw/c01-g1-w1/0", now_ms=rig.clock.now_ms(), ttl_ms=60_000)
    got = await client.get(f"/s/{code}")
    assert got.status_code == 302
    assert got.headers["location"] == LINK
    rig.clock.advance(61)
    expired = await client.get(f"/s/{code}", headers={"Accept": "text/html"})
    assert expired.status_code == 401
    assert "请向值班室索取新的链接" in expired.text
    unknown = await client.get("/s/AAAAAAAAAAAA")
    assert unknown.status_code == 401
    assert "新的链接" in unknown.json()["detail"]
    english = await client.get("/s/AAAAAAAAAAAA", headers={"Accept-Language": "en"})
    assert "ask the duty room" in english.json()["detail"]
