"""The monthly report page of the duty console in a real browser against the real system: last month (Beijing time)
with false alarms on one detector, two fire drills, a camera down 12 hours and the micro fire station's times from the
ladder's log; the cards, the charts (inline SVG) and the tables show the figures worked out by hand, and the Excel
download opens. A grid worker is not offered the page. Screenshots at 1280 px and 360 px."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from playwright.async_api import Browser, Page, expect

from backend.escalation.store import escalation_log
from backend.sites import SiteDirectory
from broker.kinds import DeviceKind
from shouwang.system import System
from tests.browser.conftest import PASSWORD
from tests.history.seed import Seed, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BJ = ZoneInfo("Asia/Shanghai")
CLOSED = ((30, "acknowledge", "acknowledged"), (300, "finish", "handled"), (600, "verify_close", "closed"))
FALSE = ((60, "mark_false", "false_alarm"),)


def last_month() -> tuple[str, datetime]:
    first = datetime.now(BJ).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return start.strftime("%Y-%m"), start


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


async def log_in(page: Page, url: str, user: str) -> None:
    await page.goto(url)
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator('#tabs [data-tab="history"]')).to_be_visible(timeout=10_000)


async def test_the_monthly_report_page(system: System, browser: Browser, sample_site: SiteDirectory, shots: Path, tmp_path: Path) -> None:
    month, start = last_month()
    smoke = [d.id for d in sample_site.devices_by_building["c01-b01"] if d.kind is DeviceKind.SMOKE]
    camera = next(d.id for d in sample_site.devices_by_building["c01-b05"] if d.kind is DeviceKind.CAMERA)

    def day(n: int, h: int = 10) -> int:
        return ms(start + timedelta(days=n - 1, hours=h))

    seed(system.backend.alarm_service.store, sample_site, [
        Seed("r1", "smoke", smoke[0], day(3), CLOSED), Seed("r2", "smoke", smoke[1], day(4), FALSE), Seed("r3", "smoke", smoke[1], day(9), FALSE),
        Seed("r4", "comm_lost", camera, day(2, 0), ((12 * 3600, "resolve", "closed"),), severity="minor"),
        Seed("r5", "smoke", smoke[0], day(5), CLOSED, drill=True), Seed("r6", "smoke", smoke[0], day(19, 15), CLOSED, drill=True),
    ])
    base = {"field_state": None, "contact": None, "due_ms": None, "drill": False, "worker": "t"}
    with system.backend.escalation.store.engine.begin() as conn:
        conn.execute(sa.insert(escalation_log), [
            {**base, "alarm_id": "r1", "step": 0, "n": 0, "kind": "paged", "rung": "fire_station", "detail": "mfs", "at_ms": day(3)},
            {**base, "alarm_id": "r1", "step": 1, "n": 0, "kind": "observed", "rung": "fire_station", "detail": "mfs: acknowledge", "at_ms": day(3) + 25_000,
             "field_state": "acknowledged"},
            {**base, "alarm_id": "r1", "step": 2, "n": 0, "kind": "observed", "rung": "fire_station", "detail": "mfs: arrive", "at_ms": day(3) + 140_000,
             "field_state": "on_scene"},
        ])

    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url, "duty1")
    tab = page.locator('#tabs [data-tab="reports"]')
    await expect(tab).to_be_visible()
    await expect(tab).to_have_text("统计报表")
    await tab.click()
    await expect(page.locator("#r-title")).to_contain_text("幸福里社区")
    await page.fill("#r-month", month)
    await page.click("#r-form button[type=submit]")
    await expect(page.locator("#r-title")).to_have_text(f"幸福里社区 · {month}")
    await expect(page.locator("#view-reports .cards")).to_contain_text("真实告警4")
    cards = page.locator("#view-reports .card")
    await expect(cards.nth(1)).to_contain_text("误报2")
    await expect(cards.nth(2)).to_contain_text("2 / 2")
    await expect(cards.nth(2)).to_contain_text("达标")
    cams = sum(1 for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA)
    rate = f"{(1 - 0.5 / (cams * (ms(datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=BJ)) - ms(start)) / 86_400_000)) * 100:.2f}%"
    await expect(cards.nth(3)).to_contain_text(rate)
    await expect(cards.nth(5)).to_contain_text("140 秒")
    await expect(cards.nth(5)).to_contain_text("达标")
    await expect(page.locator("#chart-types rect")).to_have_count(3)  # smoke: closed + false; comm_lost: resolved
    await expect(page.locator("#chart-types")).to_contain_text("烟感报警")
    await expect(page.locator("#chart-response")).to_contain_text("微型消防站")
    await expect(page.locator("#chart-camera")).to_be_visible()
    flagged = page.locator("#r-false tr.flag")
    await expect(flagged).to_have_count(1)
    await expect(flagged).to_contain_text(smoke[1])
    await expect(flagged).to_contain_text("1号楼")  # the building by name
    await expect(page.locator("#r-drills tbody tr")).to_have_count(2)
    await expect(page.locator("#r-drills tbody tr").first).to_contain_text(f"{month}-05 10:00")  # Beijing time
    await expect(page.locator("#view-reports")).to_contain_text("北京时间")
    await page.screenshot(path=shots / "01-report-1280.png", full_page=True)

    async with page.expect_download() as dl_info:
        await page.click("#r-xlsx")
    path = tmp_path / "report.xlsx"
    await (await dl_info.value).save_as(path)
    wb = load_workbook(path)
    assert wb.sheetnames == ["概览", "按类型", "误报设备", "响应时间", "演练", "设备健康", "巡检"]
    overview = {row[0]: row[1] for row in wb["概览"].iter_rows(values_only=True) if len(row) > 1}
    assert overview["真实告警"] == 4
    assert overview["误报"] == 2

    await page.set_viewport_size({"width": 360, "height": 780})
    # the charts are drawn again at the phone's width, so their text stays readable (not a 720 px drawing shrunk to half)
    await expect(page.locator("#chart-types")).to_have_attribute("viewBox", re.compile(r"^0 0 3\d\d "))
    await page.screenshot(path=shots / "02-report-360.png", full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 380, f"the page is {width} px wide at 360 px"
    assert errors == []

    grid_worker = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    await log_in(grid_worker, system.backend.url, "gw2")
    await expect(grid_worker.locator('#tabs [data-tab="history"]')).to_be_visible()
    await expect(grid_worker.locator('#tabs [data-tab="reports"]')).to_be_hidden()

