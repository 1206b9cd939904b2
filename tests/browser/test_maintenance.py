"""Maintenance windows on the duty console in a real browser against the real system: a smoke detector cannot be
silenced without the life-safety override (the refusal is shown in Chinese), with it the window opens and a
red strip stays on screen while it lasts; extending moves its end; ending it early brings the detector's alarm,
held meanwhile, back on the board with its banner. Screenshots of the panel at 1280 px and 360 px."""

from __future__ import annotations

import time
from pathlib import Path

import aiomqtt
import pytest
from playwright.async_api import Browser, Page, expect

from backend.sites import SiteDirectory
from backend.sites.model import Device
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import PASSWORD, broker_login
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def detector(sites: SiteDirectory) -> Device:
    building = sorted(b.id for b in sites.buildings.values() if b.grid == "c01-g1")[0]
    return next(d for d in sites.devices_by_building[building] if d.kind is DeviceKind.SMOKE)


async def publish_smoke(system: System, device: Device) -> None:
    now = int(time.time() * 1000)
    payload = encode(DeviceEvent(msg_id="browser-mw-smoke", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)


async def log_in(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#mw-toggle")).to_be_visible(timeout=10_000)


async def test_open_extend_and_end_a_window_on_a_smoke_detector_from_the_console(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                                  shots: Path) -> None:
    smoke = detector(sample_site)
    windows = system.backend.alarm_service.maintenance
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url)
    await expect(page.locator("#mw-toggle")).to_have_text("维护窗口")

    await page.click("#mw-toggle")
    await expect(page.locator("#mw-panel")).to_be_visible()
    await page.select_option("#mw-building", smoke.building)
    await page.select_option("#mw-scope", "device")
    await expect(page.locator(f'#mw-device option[value="{smoke.id}"]')).to_have_count(1)
    await page.select_option("#mw-device", smoke.id)
    await page.fill("#mw-minutes", "60")
    await page.fill("#mw-reason", "更换烟感 工单 7")
    await page.click("#mw-create")
    await expect(page.locator("#mw-error")).to_contain_text("生命安全设备")  # no override: refused, in Chinese
    assert windows.records() == []

    await page.check("#mw-override")
    await page.fill("#mw-override-reason", "拆下探头更换")
    await page.click("#mw-create")
    row = page.locator("#mw-list .mw-row").first
    await expect(row).to_contain_text("生命安全设备静默")
    await expect(page.locator("#mw-strip")).to_contain_text("生命安全设备静默中")
    [w] = windows.records()
    assert (w.device_id, w.author, w.life_safety_override, w.override_reason) == (smoke.id, "duty1", True, "拆下探头更换")
    await expect(row).to_contain_text(windows.local(w.ends_ms))  # the site's time zone, to the minute
    await page.screenshot(path=shots / "01-panel-1280.png")

    await row.locator(".mw-extend-min").fill("30")
    await row.locator(".mw-why").fill("零件未到")
    await row.locator(".mw-extend").click()
    extended = w.ends_ms + 30 * 60_000
    await expect(row).to_contain_text(windows.local(extended))
    assert [r.ends_ms for r in windows.records()] == [extended]

    # the detector alarms during the window: held, no banner; the strip stays
    await publish_smoke(system, smoke)
    store = system.backend.alarm_service.store
    await until(lambda: [a for a in store.list(open_only=True) if a.device_id == smoke.id], 10, "the detector's alarm")
    [held] = [a for a in store.list(open_only=True) if a.device_id == smoke.id]
    assert held.state == "silenced"
    await expect(page.locator("#alert-banner")).to_be_hidden()

    await page.set_viewport_size({"width": 360, "height": 780})
    await expect(page.locator("#mw-strip")).to_be_visible()
    await page.screenshot(path=shots / "02-panel-360.png", full_page=True)
    await page.click("#mw-close")  # the board at 360 px: the red strip stays above it
    await expect(page.locator("#mw-strip")).to_be_in_viewport()
    await page.screenshot(path=shots / "03-strip-360.png")
    await page.click("#mw-toggle")
    await page.set_viewport_size({"width": 1280, "height": 900})

    await row.locator(".mw-why").fill("换好了")
    await row.locator(".mw-end").click()
    await expect(page.locator("#mw-list")).to_contain_text("当前没有维护窗口")
    await expect(page.locator("#mw-ended .mw-row").first).to_contain_text("已结束")
    await expect(page.locator("#mw-strip")).to_have_count(0)
    await expect(page.locator("#mw-notice")).to_contain_text("维护窗口已结束")  # the duty room's notice
    audit = [a.action for a in windows.audit(w.id)]
    assert audit == ["create", "extend", "end"], audit
    # ended early with the detector still in alarm: it is live again, on the board with its banner
    back = store.get(held.id)
    assert back is not None
    assert back.state.value in ("raised", "notified"), "live again (notified once its ladder has paged)"
    assert [e.move for e in store.audit(held.id)][:3] == ["raise", "silence", "unsilence"]
    await page.click("#mw-close")
    await expect(page.locator("#alert-banner")).to_be_visible(timeout=5_000)
    await page.screenshot(path=shots / "04-ended-alarm-back-1280.png")
    assert errors == []
