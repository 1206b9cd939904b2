"""The escalation runtime with the `[notify]` providers: a fire pages the micro fire station by Alibaba Cloud SMS and
voice (local fakes of the documented API, not the real cloud), each SMS with the place in words and a short link
that leads to the person's one-tap link, each notice with its receipt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from backend.escalation.runtime import EscalationRuntime
from backend.escalation.settings import EscalationSettings
from backend.notify import DeliveryStatus
from backend.notify.settings import DEFAULT_SMS_TEMPLATES, NotifySettings, SmsTemplateConfig
from backend.notify.shortlinks import ShortLinks
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock
from tests.escalation.helpers import THU_0900, fire
from tests.notify.fakes import FakeAliyun, serve

AK, AK_SECRET = "LTAI5tTestAccessKey", "aliyun-secret-0123456789"


@pytest.fixture
def aliyun() -> Iterator[tuple[FakeAliyun, str]]:
    templates = {f"SMS_{kind}": tuple(t["params"]) for kind, t in DEFAULT_SMS_TEMPLATES.items()}
    fake = FakeAliyun({AK: AK_SECRET}, {**templates, "TTS_1": ("severity", "title", "place", "action")})
    with serve(fake.handle) as host:
        yield fake, host


async def test_a_fire_pages_the_fire_station_by_provider_sms_and_voice_with_short_links_and_receipts(
        aliyun: tuple[FakeAliyun, str], tmp_path: Path, sample_site: SiteDirectory) -> None:
    fake, host = aliyun
    clock = VirtualClock(THU_0900)
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    notify = NotifySettings(
        sms_provider="aliyun", voice_provider="aliyun", aliyun_access_key_id=AK, aliyun_access_key_secret=SecretStr(AK_SECRET),
        aliyun_sms_endpoint=host, aliyun_voice_endpoint=host, aliyun_protocol="http", voice_tts_code="TTS_1", voice_show_number="057100000000",
        sms_templates={kind: SmsTemplateConfig(**{**t, "code": f"SMS_{kind}"}) for kind, t in DEFAULT_SMS_TEMPLATES.items()},
    )

    async def sleep(s: float) -> None:
        await clock.sleep_ms(round(s * 1000))

    def one_tap(alarm_id: str, round_: int, contact: object) -> str:
        return f"https://sw.example.cn/r/{alarm_id}.{round_}.{getattr(contact, 'id', '')}.{'s' * 80}"

    settings = EscalationSettings(link_base_url="https://sw.example.cn", poll_interval_s=5)
    async with EscalationRuntime(settings, engine, sample_site, clock, links=one_tap, sleep=sleep, notify=notify) as runtime:
        await runtime.service.start(fire(roster=runtime.roster))
        def settled() -> bool:  # every notice the fake took has its receipt, and nothing is left to claim
            sent = [r for r in runtime.receipts.for_alarm("A1") if r.channel in ("sms", "voice")]
            return bool(sent) and len(sent) == len(fake.sent)

        for _ in range(1000):  # the outbox loop and deliver_pending share the work; real HTTP and SDK threads in between
            if await runtime.service.deliver_pending() == 0 and settled():
                break
            await asyncio.sleep(0.01)
        receipts = runtime.receipts.for_alarm("A1")

    sms = [s for s in fake.sent.values() if "BizId" in s]
    calls = [s for s in fake.sent.values() if "CallId" in s]
    assert sms, fake.requests
    assert calls, fake.requests
    links = ShortLinks(engine)
    for s in sms:
        params = json.loads(s["TemplateParam"])
        assert s["TemplateCode"] == "SMS_page"
        assert params["place"] not in ("", "见值班台")  # the place in words reached the template
        code = params["link"].removeprefix("https://sw.example.cn/s/")
        target = links.resolve(code, now_ms=clock.now_ms())
        assert target is not None
        assert target.startswith("https://sw.example.cn/r/A1.")
    for c in calls:
        assert json.loads(c["TtsParam"])["title"] == "烟感报警"
    by_channel = {(r.channel, r.status) for r in receipts if r.channel in ("sms", "voice")}
    assert by_channel == {("sms", DeliveryStatus.DELIVERED), ("voice", DeliveryStatus.DELIVERED)}
    refs = {r.provider_ref for r in receipts if r.channel == "voice"}
    assert refs == {c["CallId"] for c in calls}
    engine.dispose()
