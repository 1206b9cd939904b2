"""Working an alarm together (协同处置, issue 17) on two duty consoles, in a real browser against the real system: an
electrical warning arrives over MQTT; the duty officer (1280 px) assigns it to the grid worker and comments with a
photo; the grid worker's console (360 px, a phone) sees the assignee on its board and the comment with its photo
in the open detail, live, without a reload; the officer closes the alarm as false and archives it by hand, and the
other console sees it archived. The photo is on disk under the data folder, named by its SHA-256. Screenshots under
test-artifacts/browser/."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiomqtt
import pytest
from playwright.async_api import Browser, FilePayload, Page, expect

from backend.alarms.collab import AlarmCollab
from backend.sites import SiteDirectory
from backend.sites.model import Device
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
    payload = encode(DeviceEvent(msg_id="browser-collab-electrical", source_ts_ms=now, received_ts_ms=now, event=EventKind.ELECTRICAL_ALARM))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)


async def console(browser: Browser, url: str, username: str, width: int, errors: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 900 if width > 400 else 780}, locale="zh-CN", timezone_id="UTC")
    page.on("pageerror", lambda e: errors.append(f"{username}: {e}"))
    await page.goto(url)
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "on", timeout=10_000)
    return page


async def test_two_consoles_assign_comment_with_photo_and_archive(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                shots: Path, tmp_path: Path) -> None:
    system.backend.users.add("gw1", PASSWORD, "grid_worker", "第1网格网格员", "c01-g1")
    device = breaker(sample_site)
    worker = next(r for r in sorted(sample_site.responders.values(), key=lambda r: r.id) if r.role.value == "grid_worker" and r.grid == "c01-g1")
    errors: list[str] = []
    officer = await console(browser, system.backend.url, "duty1", 1280, errors)
    field = await console(browser, system.backend.url, "gw1", 360, errors)

    await publish_warning(system, device)
    row = officer.locator(f'#alarms tr[data-building="{device.building}"]')
    await row.wait_for(timeout=10_000)
    alarm_id = await row.get_attribute("data-alarm-id")
    assert alarm_id
    field_row = field.locator(f'#alarms tr[data-alarm-id="{alarm_id}"]')
    await field_row.wait_for(timeout=10_000)
    await field_row.click()  # the grid worker has the alarm open on the phone
    await expect(field.locator("#collab-comments")).to_have_text("暂无评论")

    # the officer assigns it: the detail and the board say so, and so does the other console, live
    await row.click()
    collab = officer.locator("#collab")
    await expect(collab.locator("#collab-assignee")).to_contain_text("当前负责人：未指派")
    # a live refresh redraws only what changed: the buttons under the officer's pointer are never swapped mid-click
    await officer.evaluate("() => document.querySelectorAll('#detail [data-action], #collab button').forEach(b => { b.dataset.probe = 'kept'; })")
    await officer.select_option("#collab-person", worker.id)
    await officer.click("#collab-assign")
    await expect(collab.locator("#collab-assignee")).to_contain_text(f"{worker.name}（网格员）")
    await expect(officer.locator("#collab-msg")).to_have_text(f"已指派给 {worker.name}")
    await expect(row.locator(".tag.assignee")).to_have_text(f"→ {worker.name}")
    await expect(field_row.locator(".tag.assignee")).to_have_text(f"→ {worker.name}")
    await expect(field.locator("#collab-assignee")).to_contain_text(worker.name)
    await expect(field.locator("#timeline li.assignment")).to_contain_text(f"指派给 {worker.name}（网格员）")

    # a comment with a photo: on the officer's timeline, and live on the phone with its photo
    photo = png(320, 240, (200, 120, 30))
    await officer.fill("#collab-text", "配电箱有焦味，已断电，请网格员到场核查")
    await officer.set_input_files("#collab-file", files=[FilePayload(name="scene.png", mimeType="image/png", buffer=photo)])
    await expect(officer.locator("#collab-files")).to_have_text("已选 1 张照片")
    await officer.click("#collab-send")
    await expect(officer.locator("#collab-msg")).to_have_text("评论已发表")
    await expect(officer.locator("#collab-comments li")).to_have_count(1)
    await expect(officer.locator("#collab-text")).to_have_value("")
    await expect(officer.locator("#timeline li.comment")).to_contain_text("评论（1 张照片）")
    kept = await officer.evaluate("() => [...document.querySelectorAll('#detail [data-action]')].map(b => b.dataset.probe || '')")
    assert kept, "the duty officer has action buttons"
    assert set(kept) == {"kept"}, f"the alarm's action buttons were redrawn by a live refresh: {kept}"
    comment = field.locator("#collab-comments li").first
    await expect(comment).to_contain_text("配电箱有焦味，已断电，请网格员到场核查", timeout=10_000)
    await expect(comment).to_contain_text("值班员徐静（duty1）")  # the officer by name, with the login
    await expect(comment.locator("img")).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    await field.wait_for_function("() => { const i = document.querySelector('#collab-comments img'); return i && i.complete && i.naturalWidth === 320; }")
    await expect(field.locator("#timeline li.comment")).to_contain_text("配电箱有焦味")
    [stored] = AlarmCollab(system.backend.alarm_service.store, system.backend.clock, tmp_path).comments(alarm_id)
    local = datetime.fromtimestamp(stored.at_ms / 1000, ZoneInfo("Asia/Shanghai"))  # the pages run in UTC: Beijing time is shown
    await expect(comment.locator(".dim").first).to_have_text(f"{local.year}/{local.month}/{local.day} {local:%H:%M:%S}")
    await officer.locator("#collab").scroll_into_view_if_needed()
    await officer.screenshot(path=shots / "01-officer-assigned-and-commented-1280.png")
    await field.locator("#collab").scroll_into_view_if_needed()
    await field.screenshot(path=shots / "02-field-sees-it-live-360.png")
    width = await field.evaluate("() => document.querySelector('#collab').getBoundingClientRect().right")
    assert width <= 360, "the collaboration block fits a 360 px phone"

    # the stored photo: under the data folder, named by its checksum
    files = list((system.settings.storage.data_dir / "alarm-photos").rglob("*.png"))
    assert [f.read_bytes() for f in files] == [photo]
    assert files[0].stem == hashlib.sha256(photo).hexdigest()

    # the phone starts to type; a live refresh of the pane keeps the draft
    await field.fill("#collab-text", "已到场")

    # archive: not while open; close as false, then archive by hand
    await expect(officer.locator("#collab-archive")).to_have_count(0)
    await officer.fill("#note", "住户电暖器短路，已处理")
    await officer.click('[data-action="close-false"]')
    await expect(officer.locator("#collab-archive")).to_be_visible()
    await expect(officer.locator("#collab")).to_contain_text("关闭后 7 天无新动态将自动归档")  # alarms.archive_after_days, from the server's settings
    await expect(field.locator('#detail .tag.state[data-state="false_alarm"]')).to_be_visible(timeout=10_000)
    await expect(field.locator("#collab-text")).to_have_value("已到场")  # the pane was redrawn live; the draft stayed
    await officer.click("#collab-archive")
    await expect(officer.locator("#collab-archived")).to_have_text("已归档：记录保留，可在“历史”中查询")
    await expect(officer.locator('#detail .tag.state[data-state="archived"]')).to_have_text("归档")
    await expect(field.locator('#detail .tag.state[data-state="archived"]')).to_have_text("归档", timeout=10_000)
    await expect(field.locator("#collab-text")).to_have_count(0)  # an archived record takes no more comments
    await officer.locator("#collab").scroll_into_view_if_needed()
    await officer.screenshot(path=shots / "03-archived-1280.png")
    await field.screenshot(path=shots / "04-archived-360.png", full_page=True)
    audit = system.backend.alarm_service.store.audit(alarm_id)
    assert [(e.move, e.actor) for e in audit][-2:] == [("mark_false", "duty1"), ("archive", "duty1")]
    assert errors == []
