"""转警 119 on the duty console, in a real browser against the real system (broker, ingest, alarm service, ladder, API,
console) with the 119 hand-off on, pointed at a local receiving system on a loopback port (tests/forward/receiver.py):
a smoke alarm arrives over MQTT, the duty officer opens it and verifies it (核实属实), and the alarm's detail says
已转警119 with the receiver's receipt number and the time in Beijing time; the receiver got the forward once.
Then the receiver goes down for a second fire: the console shows 转警失败 in the detail and a red strip. Screenshots
under test-artifacts/browser/."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from playwright.async_api import Browser, expect

from backend.settings import load_settings
from backend.sites import SiteDirectory
from backend.sites.model import Device
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import PASSWORD, broker_login
from tests.conftest import SAMPLE_SITE
from tests.forward.receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver("rx119") as rx:
        yield rx


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory, receiver: Receiver) -> AsyncIterator[System]:
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE},
                             forward={"enabled": True, "primary_url": receiver.url, "duty_phone": "010-87654321", "retry_every_s": 60})
    async with System(settings, sample_site) as s:
        s.backend.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        yield s


def smoke_detectors(sites: SiteDirectory) -> list[Device]:
    return sorted((d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE), key=lambda d: d.id)


async def smoke_alarm(system: System, device: Device, msg_id: str) -> None:
    now = int(time.time() * 1000)
    payload = encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)


async def test_a_duty_officer_verifies_a_fire_and_sees_it_forwarded_to_119_with_its_receipt(system: System, browser: Browser, receiver: Receiver,
                                                                                           sample_site: SiteDirectory, shots: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN", timezone_id="UTC")  # the machine in UTC
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(system.backend.url + "/")
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#board")).to_be_visible(timeout=15_000)

    detectors = smoke_detectors(sample_site)
    first = detectors[0]
    second = next(d for d in detectors if d.building != first.building)  # two in one unit would also raise a confirmed fire
    await smoke_alarm(system, first, "browser-119-smoke-1")
    row = page.locator(f'#alarms tr[data-alarm-id][data-building="{first.building}"]').first
    await row.wait_for(timeout=15_000)
    await row.click()
    await expect(page.locator('#detail [data-action="verify"]')).to_be_visible(timeout=10_000)
    assert receiver.requests == []  # nothing goes to 119 before a person verifies it (or its window runs out)
    await page.click('#detail [data-action="verify"]')

    line = page.locator("#forward-119")
    await expect(line).to_have_attribute("data-kind", "receipted", timeout=5_000)
    await expect(line).to_contain_text("已转警119")
    await expect(line).to_contain_text("回执号 RX119-0001")
    [req] = receiver.requests
    assert req.body["verification"]["by"] == "duty1"
    assert req.body["place"]["building_id"] == first.building
    assert req.body["contact"]["phone"] == "010-87654321"
    # the time shown is Beijing time (the page runs in UTC)
    receipted = datetime.fromtimestamp(req.body["verification"]["at_ms"] / 1000, UTC) + timedelta(hours=8)
    shown = await line.inner_text()
    m = re.search(r"(\d{1,2}):(\d{2}):(\d{2})", shown)
    assert m is not None, shown
    assert int(m.group(1)) == receipted.hour  # not the UTC hour, eight hours earlier
    # on the timeline, in Chinese, with the channel's attempt
    await expect(page.locator("#timeline li.forward")).to_have_count(2)
    await expect(page.locator("#timeline li.forward").last).to_contain_text("已转警119")
    await page.screenshot(path=str(shots / "forwarded-119.png"), full_page=False)

    # the receiving system is down: the next fire's forward fails on every channel; the console says so, in red
    receiver.mode = "fail"
    await smoke_alarm(system, second, "browser-119-smoke-2")
    row = page.locator(f'#alarms tr[data-alarm-id][data-building="{second.building}"]').first
    await row.wait_for(timeout=15_000)
    await row.click()
    await expect(page.locator("#detail h2")).not_to_contain_text("已转警")  # the second alarm's own detail
    await expect(page.locator("#forward-119")).to_have_count(0)
    await page.click('#detail [data-action="verify"]')
    strip = page.locator("#forward-strip")
    await expect(strip).to_be_visible(timeout=8_000)
    await expect(strip).to_contain_text("转警119失败")
    await expect(page.locator("#forward-119")).to_contain_text("转警失败", timeout=5_000)
    await expect(page.locator("#forward-119")).to_contain_text("正在重试")
    await page.screenshot(path=str(shots / "forward-failed.png"), full_page=False)
    assert errors == []
