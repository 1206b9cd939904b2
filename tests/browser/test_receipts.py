"""Delivery receipts on the duty console (issue 18), in a real browser against the real system (broker, ingest, alarm
service, ladder, API, console) with Alibaba SMS and voice pointed at the local fake of Alibaba's documented API
(tests/notify/fakes.py): a smoke alarm pages its rungs, the officer's open detail lists each person's SMS as 已发送, and
when Alibaba's SmsReport says it reached the phone the open detail shows 已送达 by itself (the feed's `receipt` event),
with the time in Beijing time, and 已读 once the person opens the link the SMS carried. Then a notice to a person
whose number the provider refuses fails on every channel: a `notice_failed` alarm naming that person appears on the
board. Screenshots under test-artifacts/browser/."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import httpx
import pytest
from playwright.async_api import Browser, expect

from alerting.ladder import Contact
from backend.notify import DeliveryStatus, Message
from backend.notify.receipts import ReceiptStore
from backend.notify.settings import DEFAULT_SMS_TEMPLATES
from backend.settings import load_settings
from backend.sites import SiteDirectory
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import PASSWORD, broker_login
from tests.conftest import SAMPLE_SITE
from tests.notify.fakes import FakeAliyun, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AK, AK_SECRET = "LTAI5tTestAccessKey", "aliyun-secret-0123456789"
TTS = "TTS_10001"
TOKEN = "rr-browser-0123456789-secret"
CODES = {kind: f"SMS_46{i}" for i, kind in enumerate(DEFAULT_SMS_TEMPLATES, start=1)}


@pytest.fixture
def aliyun() -> Iterator[tuple[FakeAliyun, str]]:
    fake = FakeAliyun({AK: AK_SECRET}, {**{CODES[k]: tuple(t["params"]) for k, t in DEFAULT_SMS_TEMPLATES.items()},
                                        TTS: ("severity", "title", "place", "action")})
    with serve(fake.handle) as host:
        yield fake, host


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory, aliyun: tuple[FakeAliyun, str]) -> AsyncIterator[System]:
    _, host = aliyun
    notify = {"sms_provider": "aliyun", "voice_provider": "aliyun", "aliyun_access_key_id": AK, "aliyun_access_key_secret": AK_SECRET,
              "aliyun_sms_endpoint": host, "aliyun_voice_endpoint": host, "aliyun_protocol": "http",
              "sms_templates": {k: {**t, "code": CODES[k]} for k, t in DEFAULT_SMS_TEMPLATES.items()},
              "voice_tts_code": TTS, "voice_show_number": "057100000000", "voice_report_token": TOKEN}
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE}, notify=notify,
                             escalation={"retry_attempts": 2, "retry_base_s": 0.2})
    async with System(settings, sample_site) as s:
        s.backend.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        yield s


async def smoke_alarm(system: System, sites: SiteDirectory) -> str:
    device = sorted((d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE), key=lambda d: d.id)[0]
    now = int(time.time() * 1000)
    payload = encode(DeviceEvent(msg_id="browser-receipts-smoke-1", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)
    return device.building


async def test_the_open_detail_shows_an_sms_delivered_and_a_person_no_channel_reached_becomes_an_alarm(
        system: System, browser: Browser, sample_site: SiteDirectory, aliyun: tuple[FakeAliyun, str], shots: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 1000}, locale="zh-CN", timezone_id="UTC")  # the machine in UTC
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(system.backend.url + "/")
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#board")).to_be_visible(timeout=15_000)

    building = await smoke_alarm(system, sample_site)
    row = page.locator(f'#alarms tr[data-alarm-id][data-building="{building}"]').first
    await row.wait_for(timeout=15_000)
    alarm_id = await row.get_attribute("data-alarm-id")
    assert alarm_id is not None
    await row.click()
    # the ladder paged its rungs: each person's SMS is listed as sent, by name
    sent = page.locator('#timeline li.receipt[data-channel="sms"][data-what="sent"]')
    await expect(sent.first).to_be_visible(timeout=15_000)
    await expect(sent.first).to_contain_text("短信 已发送")

    store = ReceiptStore(system.backend.db)
    sms = next(r for r in store.for_alarm(alarm_id) if r.channel == "sms" and r.status is DeliveryStatus.DELIVERED)
    report = [{"phone_number": "13900000000", "send_time": "2026-12-06 09:00:00", "report_time": "2026-12-06 09:00:03", "success": True,
               "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": sms.provider_ref, "out_id": "x"}]
    async with httpx.AsyncClient(base_url=system.backend.url) as http:
        got = await http.post(f"/api/notify/sms-report/{TOKEN}", json=report)
    assert got.json()["recorded"] == 1
    # nobody reloads: the open detail hears the receipt on the feed and shows it
    delivered = page.locator(f'#timeline li.receipt[data-contact="{sms.contact}"][data-channel="sms"][data-what="delivered"]')
    await expect(delivered).to_have_count(1, timeout=5_000)
    await expect(delivered).to_contain_text("短信 已送达")
    await expect(delivered).to_contain_text(sms.contact_name)
    [change] = [c for c in store.changes_for(alarm_id) if c.key == sms.key and c.channel == "sms" and c.stage.value == "delivered"]
    beijing = datetime.fromtimestamp(change.at_ms / 1000, UTC) + timedelta(hours=8)
    shown = await delivered.locator(".t").inner_text()
    m = re.search(r"(\d{1,2}):(\d{2}):(\d{2})", shown)
    assert m is not None, shown
    assert (int(m.group(1)), int(m.group(2))) == (beijing.hour, beijing.minute)  # Beijing time, not the page's UTC
    # the person opens the link in that SMS (the short link, then their one-tap page): the SMS was read
    [sent_sms] = [p for p in aliyun[0].sent.values() if p.get("BizId") == sms.provider_ref]
    short = urlsplit(json.loads(sent_sms["TemplateParam"])["link"]).path
    async with httpx.AsyncClient(base_url=system.backend.url) as http:
        hop = await http.get(short)
        assert hop.status_code == 302, hop.text
        opened = await http.get(urlsplit(hop.headers["location"]).path, headers={"Accept": "text/html"})
    assert opened.status_code == 200, opened.text
    read = page.locator(f'#timeline li.receipt[data-contact="{sms.contact}"][data-channel="sms"][data-what="read"]')
    await expect(read).to_contain_text("短信 已读", timeout=5_000)
    await read.scroll_into_view_if_needed()
    await page.screenshot(path=str(shots / "sms-delivered-and-read.png"), full_page=False)

    # a person whose number the provider refuses: SMS and call both fail; that person is an alarm of their own
    dispatcher = system.backend.escalation.service.dispatcher
    message = Message(key=f"{alarm_id}/dispatch/c01-x-zhao/0", alarm_id=alarm_id, contact=Contact("c01-x-zhao", "赵磊", phone="139-0000-bad"),
                      channels=("sms", "voice"), text="烟感报警，请立即处置。", title="烟感报警", severity="major", place="1号楼")
    receipts = await asyncio.wait_for(dispatcher.deliver(message), timeout=30)
    assert sorted(r.status for r in receipts if r.channel != "console") == [DeliveryStatus.FAILED, DeliveryStatus.FAILED]
    failed_row = page.locator('#alarms tr[data-alarm-id]', has_text="通知未送达：赵磊")
    await expect(failed_row).to_have_count(1, timeout=8_000)
    await expect(page.locator('#timeline li.receipt[data-contact="c01-x-zhao"][data-what="failed"]')).to_have_count(2, timeout=5_000)
    await expect(page.locator('#timeline li.receipt[data-contact="c01-x-zhao"][data-channel="sms"]')).to_contain_text("短信 失败（")
    await page.locator('#timeline li.receipt[data-contact="c01-x-zhao"]').last.scroll_into_view_if_needed()
    await page.screenshot(path=str(shots / "notice-failed-timeline.png"), full_page=False)
    await failed_row.click()
    await expect(page.locator("#detail h2")).to_contain_text("通知未送达：赵磊")
    await expect(page.locator("#timeline li.lifecycle").first).to_contain_text("请电话联系本人")
    await page.screenshot(path=str(shots / "notice-failed-alarm.png"), full_page=False)
    assert errors == []
