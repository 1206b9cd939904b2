"""A hazard work order (隐患整改) on the duty console, in a real browser against the real system: an electrical
warning arrives over MQTT, the duty officer turns it into a work order from the alarm's detail, assigns the grid
worker, the work starts, finishing without a photo is refused in Chinese, a photo is uploaded and shown, the work
is finished, re-inspection sends it back once, then passes, and the order is closed. Every move is in the order's
record with the site's time; the photo is on disk under the data folder with its SHA-256. Screenshots at 1280 px
and 360 px."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import aiomqtt
import pytest
from playwright.async_api import Browser, FilePayload, Page, expect

from backend.sites import SiteDirectory
from backend.sites.model import Device
from backend.workorders import WorkOrderService
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import PASSWORD, broker_login
from tests.workorders.images import png

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def breaker(sites: SiteDirectory) -> Device:
    building = sorted(b.id for b in sites.buildings.values() if b.grid == "c01-g1")[0]
    return next(d for d in sites.devices_by_building[building] if d.kind is DeviceKind.ELECTRICAL)


async def publish_warning(system: System, device: Device) -> None:
    now = int(time.time() * 1000)
    payload = encode(DeviceEvent(msg_id="browser-wo-electrical", source_ts_ms=now, received_ts_ms=now, event=EventKind.ELECTRICAL_ALARM))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)


async def log_in(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#wo-toggle")).to_be_visible(timeout=10_000)


async def move(page: Page, label: str, state_zh: str) -> None:
    await page.click(f'#wo-moves button:text-is("{label}")')
    await expect(page.locator("#wo-detail h3").first).to_contain_text(state_zh)


async def test_a_work_order_from_an_electrical_warning_to_closed_with_a_photo(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                              shots: Path) -> None:
    device = breaker(sample_site)
    worker = next(r for r in sorted(sample_site.responders.values(), key=lambda r: r.id) if r.role.value == "grid_worker" and r.grid == "c01-g1")
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url)
    await expect(page.locator("#wo-toggle")).to_have_text("整改工单")

    await publish_warning(system, device)
    row = page.locator(f'#alarms tr[data-building="{device.building}"]')
    await row.wait_for(timeout=10_000)
    await row.click()
    await expect(page.locator("#wo-from-alarm")).to_have_text("转为整改工单")
    await page.screenshot(path=shots / "01-alarm-detail-with-button.png")
    await page.click("#wo-from-alarm")
    await expect(page.locator("#wo-create-form")).to_contain_text("由告警创建")
    await page.fill("#wo-desc", "配电箱漏电保护器动作，需检查线路并更换漏保")
    await page.click("#wo-create")
    detail = page.locator("#wo-detail")
    await expect(detail).to_contain_text("待派单")
    await expect(detail).to_contain_text("Asia/Shanghai")

    service = system.backend.workorders
    assert isinstance(service, WorkOrderService)
    [order] = service.records()
    alarm_id = order.alarm_id
    assert alarm_id is not None
    assert order.building_id == device.building
    await expect(page.locator("#wo-due")).to_contain_text(service.local(order.due_ms))  # Beijing time, to the minute

    await page.select_option("#wo-assign-to", worker.id)
    await move(page, "派单", "已派单")
    await expect(page.locator("#wo-assignee")).to_have_text(worker.name)
    await move(page, "开始整改", "整改中")
    await page.click('#wo-moves button:text-is("整改完成")')
    await expect(page.locator("#wo-error")).to_contain_text("照片")  # refused in Chinese: a photo first
    await page.screenshot(path=shots / "02-finish-refused-1280.png")

    photo = png(320, 240, (40, 140, 90))
    await page.set_input_files("#wo-file", files=[FilePayload(name="after.png", mimeType="image/png", buffer=photo)])
    await expect(page.locator("#wo-file-name")).to_have_text("after.png")
    await page.fill("#wo-caption", "更换漏保后")
    await page.click("#wo-upload")
    img = page.locator("#wo-photos img").first
    await expect(img).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    await page.wait_for_function("() => { const i = document.querySelector('#wo-photos img'); return i && i.complete && i.naturalWidth === 320; }")
    await move(page, "整改完成", "整改完成待复查")
    await page.fill("#wo-note", "漏保仍有跳闸")
    await move(page, "复查不合格（退回整改）", "整改中")
    await move(page, "整改完成", "整改完成待复查")
    await move(page, "复查合格", "复查合格")
    await page.screenshot(path=shots / "03-reinspected-1280.png", full_page=True)
    await move(page, "销号", "已销号")
    await expect(page.locator("#wo-moves")).to_have_count(0)  # the end: no move left
    await expect(page.locator("#wo-file")).to_have_count(0)
    audit = page.locator("#wo-audit li")
    await expect(audit).to_have_count(9)
    await expect(audit.nth(5)).to_contain_text("漏保仍有跳闸")

    [done] = service.records()
    assert done.state.value == "closed"
    assert [a["action"] for a in service.audit(done.id)] == ["create", "assign", "start", "photo", "finish", "reject", "finish", "reinspect",
                                                               "close"]
    assert [(a["action"], a["actor"]) for a in service.audit(done.id)][:2] == [("create", "duty1"), ("assign", "duty1")]
    [row_photo] = service.photo_rows(done.id)
    on_disk = system.settings.storage.data_dir / "workorder-photos" / row_photo["file_name"]
    assert on_disk.read_bytes() == photo
    assert row_photo["sha256"] == hashlib.sha256(photo).hexdigest()

    # the alarm's detail now leads to its order instead of opening a second one
    await page.click("#wo-close")
    await row.click()
    await expect(page.locator("#wo-from-alarm")).to_have_text("查看整改工单（已销号）")
    await page.click("#wo-from-alarm")
    await expect(page.locator("#wo-detail")).to_have_attribute("data-state", "closed")

    await page.set_viewport_size({"width": 360, "height": 780})
    await expect(page.locator("#wo-panel")).to_be_visible()
    width = await page.evaluate("() => document.querySelector('#wo-panel').getBoundingClientRect().width")
    assert width <= 360
    await page.screenshot(path=shots / "04-closed-360.png")
    await page.locator("#wo-audit").scroll_into_view_if_needed()
    await page.screenshot(path=shots / "05-closed-record-360.png")
    await page.click("#wo-back")
    await expect(page.locator("#wo-list .wo-row")).to_have_count(1)
    await expect(page.locator("#wo-list .wo-row").first).to_contain_text("已销号")
    await page.screenshot(path=shots / "06-list-360.png")
    assert errors == [], errors
