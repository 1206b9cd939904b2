"""The SOS call-back box (回访) on the duty console, in a real browser against the real system (broker, ingest,
alarm service, ladder, API, console): an elderly resident's SOS press arrives over MQTT, the duty officer opens it
and sees the resident's phone as a tel: link, the family's, the four outcomes and a countdown to the deadline in
Beijing time (the page runs in UTC); 无人接听 is recorded and the ladder pages the family at once. A second press:
误按 without its reason is refused in Chinese, with the reason it closes as a false alarm. Screenshots under
test-artifacts/browser/."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from playwright.async_api import Browser, Page, expect

from backend.settings import load_settings
from backend.sites import SiteDirectory
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import PASSWORD, broker_login
from tests.conftest import SAMPLE_SITE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST, SECOND = "c01-b01-1-102", "c01-b01-1-301"  # vulnerable households of building 1, each with an SOS button
RESIDENT_PHONE = "021-61234567"


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    homes = {h: dataclasses.replace(sample_site.households[h], phone=RESIDENT_PHONE) for h in (FIRST, SECOND)}
    site = dataclasses.replace(sample_site, households={**sample_site.households, **homes})
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, site) as s:
        s.backend.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        yield s


async def press(system: System, household: str, msg_id: str) -> int:
    device = system.backend.sites.devices[f"{household}-sos"]
    now = int(time.time() * 1000)
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now,
                                                                                       event=EventKind.SOS_PRESS)), qos=1)
    return now


async def open_sos(page: Page, system: System, household: str) -> str:
    """Open the SOS alarm of `household` on the board, once its row is there (another household's SOS row may be there
    first: waiting for any SOS row raced the second press)."""
    rows = page.locator('#alarms tr[data-alarm-id][data-building="c01-b01"]')
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for i in range(await rows.count()):  # the press of this household
            alarm_id = await rows.nth(i).get_attribute("data-alarm-id")
            alarm = system.backend.alarm_service.store.get(alarm_id or "")
            if alarm is not None and alarm.place.household == household and alarm.alarm_type == "sos":
                await rows.nth(i).click()
                await expect(page.locator("#detail")).to_have_attribute("data-alarm-id", alarm_id or "")
                return alarm_id or ""
        await asyncio.sleep(0.2)
    raise AssertionError(f"no SOS alarm of {household} on the board")


async def test_the_duty_officer_calls_back_and_no_answer_pages_the_family(system: System, browser: Browser, shots: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN", timezone_id="UTC")  # the machine in UTC
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(system.backend.url + "/")
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#board")).to_be_visible(timeout=15_000)

    await press(system, FIRST, "browser-callback-1")
    await expect(page.locator("#alarms tr[data-alarm-id]").first).to_be_visible(timeout=15_000)
    alarm_id = await open_sos(page, system, FIRST)
    box = page.locator("#callback-box")
    await expect(box).to_contain_text("回访（一键呼救）", timeout=10_000)
    await expect(page.locator("#cb-tel")).to_have_attribute("href", f"tel:{RESIDENT_PHONE}")
    await expect(box.locator('a[href="tel:13491733095"]')).to_contain_text("徐涛（儿子）")
    await expect(box.locator("button[data-outcome]")).to_have_text(["接通·平安", "接通·需要帮助", "无人接听", "误按"])
    await expect(box.locator("#cb-deadline .countdown")).to_have_text(re.compile(r"^0:\d\d$"))  # under a minute left, counting down
    escalation = system.backend.escalation.service
    state = await escalation.get(alarm_id)
    assert state is not None
    assert state.callback is not None
    due = datetime.fromtimestamp((state.callback.opened_ms + 60_000) / 1000, UTC) + timedelta(hours=8)
    await expect(page.locator("#cb-deadline")).to_contain_text(due.strftime("%H:%M:%S"))  # Beijing time, not the page's UTC
    await page.screenshot(path=str(shots / "callback-box.png"), full_page=False)

    await box.locator('button[data-outcome="no_answer"]').click()
    await expect(page.locator("#cb-outcome")).to_have_attribute("data-outcome", "no_answer", timeout=10_000)
    await expect(page.locator("#cb-outcome")).to_contain_text("无人接听")
    await expect(page.locator("#cb-outcome")).to_contain_text("duty1")
    log = system.backend.escalation.service.store.log(alarm_id)
    paged = {e.contact for e in log if e.kind == "notify" and e.detail == "callback_failed"}
    assert {f"family:{FIRST}:0", "c01-b01-leader"} <= paged
    await expect(page.locator("#rung-status")).to_contain_text("家属", timeout=10_000)
    await page.screenshot(path=str(shots / "callback-no-answer.png"), full_page=False)

    # a second press: a false press needs its reason (refused in Chinese, nothing recorded), then closes as a false alarm
    await press(system, SECOND, "browser-callback-2")
    second = await open_sos(page, system, SECOND)
    box = page.locator("#callback-box")
    await expect(box.locator('button[data-outcome="false_press"]')).to_be_visible(timeout=10_000)
    await box.locator('button[data-outcome="false_press"]').click()
    await expect(page.locator("#cb-msg")).to_contain_text("误按需要写明原因")
    await page.screenshot(path=str(shots / "callback-false-press-refused.png"), full_page=False)
    await page.fill("#cb-note", "老人说挂绳被孙子碰到了")
    await box.locator('button[data-outcome="false_press"]').click()
    await expect(page.locator("#cb-outcome")).to_contain_text("误按", timeout=10_000)
    alarm = system.backend.alarm_service.store.get(second)
    assert alarm is not None
    assert alarm.state.value == "false_alarm"
    await page.screenshot(path=str(shots / "callback-false-press.png"), full_page=False)
    assert errors == []
