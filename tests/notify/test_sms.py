"""SMS through the providers' own SDKs against local fakes of their documented APIs (not the real clouds).

The SDKs are pointed at the fakes through their documented configuration (Alibaba Config(endpoint, protocol="http"),
Tencent HttpProfile(endpoint, protocol="http")); the fakes check the signatures (ACS3-HMAC-SHA256, TC3-HMAC-SHA256),
the templates and the idempotency keys, and answer errors and throttling in the providers' shapes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alerting.ladder import Contact
from backend.notify import DeliveryStatus, Dispatcher, Message, Receipt, RetryPolicy
from backend.notify.providers import ProviderMisconfigured, provider_channels
from backend.notify.settings import DEFAULT_SMS_TEMPLATES, NotifySettings, SmsTemplateConfig
from backend.notify.shortlinks import ShortLinks
from backend.notify.sms import SMS_PART_CHARS, SmsTemplate, fit_one_part, render, sms_params
from backend.store.db import make_engine, sqlite_url
from backend.stream import CentreStream
from broker.clock import VirtualClock
from tests.notify.fakes import FakeAliyun, FakeTencentSms, finish, serve

AK, AK_SECRET = "LTAI5tTestAccessKey", "aliyun-secret-0123456789"
SID, SKEY = "AKIDtestsecretid", "tencent-secret-key-0123456789"
TENCENT_APP = "1400000001"
PAGE_PARAMS = tuple(DEFAULT_SMS_TEMPLATES["page"]["params"])
LINK_BASE = "https://sw.example.cn"
FULL_LINK = "https://sw.example.cn/r/eyJhbGciOiJIUzI1NiJ9.eyJhIjoiQTEiLCJjIjoiYzAxLWcxLXcxIiwiZXhwIjoxNzY3MjI3NDAwfQ.c2lnbmF0dXJl"


def templates(prefix: str) -> dict[str, SmsTemplateConfig]:
    return {kind: SmsTemplateConfig(**{**t, "code": f"{prefix}{i}"}) for i, (kind, t) in enumerate(DEFAULT_SMS_TEMPLATES.items(), start=1)}


def page(key: str = "A1/gw/c01-g1-w1/0", *, phone: str | None = "13986665755", drill: bool = False, title: str = "烟感报警",
         place: str = "1号楼 2单元 301") -> Message:
    return Message(key=key, alarm_id="A1", contact=Contact("c01-g1-w1", "杨敏", phone=phone), channels=("sms",),
                   text="【守望】紧急烟感报警，1号楼 2单元 301。网格员：请立即处置。回复链接：" + FULL_LINK, title=title, link=FULL_LINK,
                   drill=drill, severity="critical", place=place, life_safety=True)


@dataclass
class Rig:
    clock: VirtualClock
    dispatcher: Dispatcher
    links: ShortLinks
    receipts: list[Receipt]

    async def deliver(self, *messages: Message) -> list[list[Receipt]]:
        return await finish(self.clock, [asyncio.create_task(self.dispatcher.deliver(m)) for m in messages])


async def make_rig(settings: NotifySettings, tmp_path: Path, http: httpx.AsyncClient) -> Rig:
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "notify.db"))
    channels = provider_channels(settings, http, clock, engine=engine, link_base_url=LINK_BASE, link_ttl_s=1800)
    receipts: list[Receipt] = []

    async def record(r: Receipt) -> None:
        receipts.append(r)

    async def sleep(s: float) -> None:
        await clock.sleep_ms(round(s * 1000))

    dispatcher = Dispatcher(channels, CentreStream(), clock, sleep=sleep, retry=RetryPolicy(4, 0.5, 2.0, 30.0), record=record)
    return Rig(clock, dispatcher, ShortLinks(engine), receipts)


@pytest.fixture
def aliyun() -> Iterator[tuple[FakeAliyun, str]]:
    fake = FakeAliyun({AK: AK_SECRET}, {t.code: tuple(t.params) for t in templates("SMS_46").values()})
    with serve(fake.handle) as host:
        yield fake, host


@pytest.fixture
def tencent() -> Iterator[tuple[FakeTencentSms, str]]:
    fake = FakeTencentSms({SID: SKEY}, TENCENT_APP, {t.code: len(t.params) for t in templates("20").values()}, time.time)
    with serve(fake.handle) as host:
        yield fake, host


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient() as client:
        yield client


def aliyun_settings(host: str, secret: str = AK_SECRET) -> NotifySettings:
    return NotifySettings(sms_provider="aliyun", aliyun_access_key_id=AK, aliyun_access_key_secret=SecretStr(secret), aliyun_sms_endpoint=host,
                          aliyun_protocol="http", sms_templates=templates("SMS_46"))


def tencent_settings(host: str, key: str = SKEY) -> NotifySettings:
    return NotifySettings(sms_provider="tencent", tencent_secret_id=SID, tencent_secret_key=SecretStr(key), tencent_endpoint=host,
                          tencent_protocol="http", tencent_sms_app_id=TENCENT_APP, sms_templates=templates("20"))


def sms_of(_rig: Rig, receipts: list[Receipt]) -> Receipt:
    [r] = [r for r in receipts if r.channel == "sms"]
    return r


# -- one SMS part ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("title", ["烟感报警", "电气火灾监控探测器剩余电流超限报警", "一键通紧急呼叫（老人独居，需要回访）"])
@pytest.mark.parametrize("place", ["1号楼", "幸福里社区 12号楼 3单元 1502室（东侧楼梯间旁）"])
def test_a_page_with_its_short_link_is_one_sms_part(title: str, place: str) -> None:
    template = SmsTemplate("SMS_1", DEFAULT_SMS_TEMPLATES["page"]["text"], PAGE_PARAMS)
    link = f"{LINK_BASE}/s/{'x' * 12}"  # the short link as the route makes it
    params = fit_one_part(template, sms_params(page(title=title, place=place), link), "守望")
    text = render(template, params, "守望")
    assert len(text) <= SMS_PART_CHARS, text
    assert params["link"] == link  # the link is never cut
    assert text.startswith("【守望】紧急")
    assert len(render(template, sms_params(page(title=title, place=place), FULL_LINK), "守望")) > SMS_PART_CHARS  # the full link never fits


async def test_a_provider_without_its_template_codes_or_secrets_stops_the_start(http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderMisconfigured, match=r"notify.sms_templates.page.code"):
        provider_channels(NotifySettings(sms_provider="aliyun", aliyun_access_key_id=AK, aliyun_access_key_secret=SecretStr("x")), http,
                          VirtualClock())
    with pytest.raises(ProviderMisconfigured, match=r"notify.tencent_secret_key"):
        provider_channels(NotifySettings(sms_provider="tencent", tencent_secret_id=SID, sms_templates=templates("20")), http, VirtualClock())


# -- Alibaba Cloud -----------------------------------------------------------------------------------------------------


async def test_aliyun_sends_the_approved_template_with_parameters_a_short_link_and_an_out_id(
        aliyun: tuple[FakeAliyun, str], tmp_path: Path, http: httpx.AsyncClient) -> None:
    fake, host = aliyun
    rig = await make_rig(aliyun_settings(host), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert r.status is DeliveryStatus.DELIVERED, r.error  # the fake verified the ACS3-HMAC-SHA256 signature
    [(out_id, sent)] = fake.sent.items()
    assert r.provider_ref == sent["BizId"]
    assert sent["SignName"] == "守望"
    assert sent["TemplateCode"] == "SMS_461"
    assert sent["PhoneNumbers"] == "13986665755"
    params = json.loads(sent["TemplateParam"])
    assert params["severity"] == "紧急"
    assert params["place"] == "1号楼 2单元 301"
    assert params["action"] == "请立即处置"
    assert "回复链接" not in sent["TemplateParam"]  # never the free text of the notice
    code = params["link"].removeprefix(f"{LINK_BASE}/s/")
    assert rig.links.resolve(code, now_ms=rig.clock.now_ms()) == FULL_LINK
    assert len(render(SmsTemplate("SMS_461", DEFAULT_SMS_TEMPLATES["page"]["text"], PAGE_PARAMS), params, "守望")) <= SMS_PART_CHARS
    assert len(out_id) == 32


async def test_aliyun_a_lost_answer_is_retried_with_the_same_out_id_and_sent_once(
        aliyun: tuple[FakeAliyun, str], tmp_path: Path, http: httpx.AsyncClient) -> None:
    fake, host = aliyun
    fake.lose_answer_next = 1  # accepted, but the answer is a 503
    rig = await make_rig(aliyun_settings(host), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert r.status is DeliveryStatus.DELIVERED
    assert r.attempts == 2
    sends = [q for q in fake.requests if q["action"] == "SendSms"]
    assert len(sends) == 2
    assert sends[0]["OutId"] == sends[1]["OutId"]
    assert sends[0]["TemplateParam"] == sends[1]["TemplateParam"]  # the same short link on the retry
    assert len(fake.sent) == 1  # one SMS reached the phone
    assert r.provider_ref == next(iter(fake.sent.values()))["BizId"]


@pytest.mark.parametrize(("answer", "delivered", "attempts"), [
    ((200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}), True, 2),
    ((400, {"Code": "Throttling.User", "Message": "Request was denied due to user flow control."}), True, 2),
    ((500, {"Code": "InternalError", "Message": "The request processing has failed due to some unknown error."}), True, 2),
    ((200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}), False, 1),
    ((200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "该账号下找不到对应模板"}), False, 1),
])
async def test_aliyun_throttling_and_server_errors_are_retried_refusals_are_final(
        aliyun: tuple[FakeAliyun, str], tmp_path: Path, http: httpx.AsyncClient, answer: tuple[int, dict[str, Any]], delivered: bool,
        attempts: int) -> None:
    fake, host = aliyun
    fake.fail_next.append(answer)
    rig = await make_rig(aliyun_settings(host), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert (r.status is DeliveryStatus.DELIVERED) is delivered, r.error
    assert r.attempts == attempts
    assert len(fake.sent) == int(delivered)


async def test_aliyun_a_wrong_access_key_secret_fails_the_signature_check(aliyun: tuple[FakeAliyun, str], tmp_path: Path,
                                                                         http: httpx.AsyncClient) -> None:
    fake, host = aliyun
    rig = await make_rig(aliyun_settings(host, secret="not-the-secret"), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert r.status is DeliveryStatus.FAILED
    assert r.attempts == 1
    assert "SignatureDoesNotMatch" in (r.error or "")
    assert fake.sent == {}


async def test_a_drill_uses_the_drill_template_and_a_contact_without_phone_is_a_permanent_failure(
        aliyun: tuple[FakeAliyun, str], tmp_path: Path, http: httpx.AsyncClient) -> None:
    fake, host = aliyun
    rig = await make_rig(aliyun_settings(host), tmp_path, http)
    [drill, nophone] = await rig.deliver(page("D1/gw/c/0", drill=True), page("A2/gw/c/0", phone=None))
    assert sms_of(rig, drill).status is DeliveryStatus.DELIVERED
    assert [s["TemplateCode"] for s in fake.sent.values()] == ["SMS_462"]
    assert sms_of(rig, nophone).status is DeliveryStatus.FAILED


# -- Tencent Cloud -----------------------------------------------------------------------------------------------------


async def test_tencent_sends_the_template_parameters_in_order_with_a_session_context(
        tencent: tuple[FakeTencentSms, str], tmp_path: Path, http: httpx.AsyncClient) -> None:
    fake, host = tencent
    rig = await make_rig(tencent_settings(host), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert r.status is DeliveryStatus.DELIVERED, r.error  # the fake verified the TC3-HMAC-SHA256 signature
    [(ctx, sent)] = fake.sent.items()
    assert r.provider_ref == sent["SerialNo"]
    assert sent["PhoneNumberSet"] == ["+8613986665755"]
    assert sent["SmsSdkAppId"] == TENCENT_APP
    assert sent["TemplateId"] == "201"
    severity, title, place, action, link = sent["TemplateParamSet"]
    assert (severity, title, place, action) == ("紧急", "烟感报警", "1号楼 2单元 301", "请立即处置")
    assert rig.links.resolve(link.removeprefix(f"{LINK_BASE}/s/"), now_ms=rig.clock.now_ms()) == FULL_LINK
    assert sent["SessionContext"] == ctx


async def test_tencent_a_lost_answer_is_retried_with_the_same_session_context_and_sent_once(
        tencent: tuple[FakeTencentSms, str], tmp_path: Path, http: httpx.AsyncClient) -> None:
    fake, host = tencent
    fake.lose_answer_next = 1
    rig = await make_rig(tencent_settings(host), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert r.status is DeliveryStatus.DELIVERED
    assert r.attempts == 2
    assert len(fake.requests) == 2
    assert fake.requests[0]["SessionContext"] == fake.requests[1]["SessionContext"]
    assert len(fake.sent) == 1


@pytest.mark.parametrize(("answer", "delivered", "attempts"), [
    ({"Error": {"Code": "RequestLimitExceeded", "Message": "请求的次数超过了频率限制。"}}, True, 2),
    ({"Error": {"Code": "InternalError.RequestTimeException", "Message": "请求发起时间不正常"}}, True, 2),
    ({"SendStatusSet": [{"SerialNo": "", "PhoneNumber": "+8613986665755", "Fee": 0, "SessionContext": "", "IsoCode": "CN",
                         "Code": "LimitExceeded.PhoneNumberThirtySecondLimit", "Message": "单个手机号30秒内下发短信条数超过设定的上限"}]}, True, 2),
    ({"Error": {"Code": "FailedOperation.TemplateIncorrectOrUnapproved", "Message": "模板未审批或内容不匹配"}}, False, 1),
])
async def test_tencent_throttling_and_server_errors_are_retried_refusals_are_final(
        tencent: tuple[FakeTencentSms, str], tmp_path: Path, http: httpx.AsyncClient, answer: dict[str, Any], delivered: bool,
        attempts: int) -> None:
    fake, host = tencent
    fake.fail_next.append(answer)
    rig = await make_rig(tencent_settings(host), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert (r.status is DeliveryStatus.DELIVERED) is delivered, r.error
    assert r.attempts == attempts
    assert len(fake.sent) == int(delivered)


async def test_tencent_a_wrong_secret_key_fails_the_signature_check(tencent: tuple[FakeTencentSms, str], tmp_path: Path,
                                                                   http: httpx.AsyncClient) -> None:
    fake, host = tencent
    rig = await make_rig(tencent_settings(host, key="not-the-key"), tmp_path, http)
    [receipts] = await rig.deliver(page())
    r = sms_of(rig, receipts)
    assert r.status is DeliveryStatus.FAILED
    assert "AuthFailure.SignatureFailure" in (r.error or "")
    assert fake.sent == {}
