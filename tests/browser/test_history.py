"""The history page of the duty console in a real browser against the real system: a filtered history (type, real
alarms only, a grid) exported as Excel and as CSV from the page, the downloaded files opened and their rows compared
with the filter's (worked out from the seeded alarms), times in Beijing time; one alarm's 处置记录单 opened from the
list. Screenshots at 1280 px and 360 px."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.async_api import Browser, Page, expect

from backend.sites import SiteDirectory
from broker.kinds import DeviceKind
from shouwang.system import System
from tests.browser.conftest import PASSWORD
from tests.history.seed import Seed, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DAY = 86_400_000
REAL = ((30, "acknowledge", "acknowledged"), (300, "finish", "handled"), (600, "verify_close", "closed"))
FALSE = ((60, "mark_false", "false_alarm"),)


def history(sites: SiteDirectory, now: int) -> list[Seed]:
    """Over the last 60 days: smoke, SOS and camera alarms in buildings of grids 1 and 2, some drills, some false."""
    blds = ["c01-b01", "c01-b02", "c01-b06", "c01-b07"]
    kinds = [("smoke", DeviceKind.SMOKE), ("sos", DeviceKind.SOS), ("comm_lost", DeviceKind.CAMERA)]
    out = []
    for i in range(36):
        kind, dk = kinds[i % 3]
        b = blds[i % 4]
        dev = next(d.id for d in sites.devices_by_building[b] if d.kind is dk)
        out.append(Seed(f"h{i:02d}", kind, dev, now - (i + 1) * 40 * 3600_000, FALSE if i % 5 == 0 else REAL, drill=i % 4 == 3))
    return out


async def log_in(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator('#tabs [data-tab="history"]')).to_be_visible(timeout=10_000)


async def test_a_filtered_history_exported_from_the_page_holds_the_filters_rows(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                                shots: Path, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    seeds = history(sample_site, now)
    seed(system.backend.alarm_service.store, sample_site, seeds)
    expected = [s for s in seeds if s.alarm_type == "smoke" and not s.drill and sample_site.devices[s.device].building in ("c01-b01", "c01-b02")]
    assert len(expected) >= 4

    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url)
    await page.click('#tabs [data-tab="history"]')
    await expect(page.locator("#view-history")).to_be_visible()
    await expect(page.locator("#h-rows tr")).to_have_count(36, timeout=10_000)
    await expect(page.locator("#h-count")).to_contain_text("共 36 条")
    await page.select_option('#h-form select[name="grid"]', "c01-g1")
    await page.select_option('#h-form select[name="type"]', "smoke")
    await page.select_option('#h-form select[name="drill"]', "false")
    await page.click("#h-search")
    await expect(page.locator("#h-count")).to_contain_text(f"共 {len(expected)} 条")
    rows = page.locator("#h-rows tr")
    await expect(rows).to_have_count(len(expected))
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.alarmId)") == [s.id for s in expected]
    first = expected[0]
    beijing = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(first.raised_ms / 1000 + 8 * 3600))
    await expect(rows.first.locator("td").first).to_have_text(beijing)
    await page.screenshot(path=shots / "01-history-filtered-1280.png", full_page=True)

    async with page.expect_download() as dl_info:
        await page.click("#h-xlsx")
    xlsx = tmp_path / "history.xlsx"
    await (await dl_info.value).save_as(xlsx)
    assert (await dl_info.value).suggested_filename.endswith(".xlsx")
    sheet = [tuple(row) for row in load_workbook(xlsx, read_only=True).worksheets[0].iter_rows(values_only=True)]
    assert sheet[0][:4] == ("编号", "报警时间", "类型", "级别")
    assert [r[0] for r in sheet[1:]] == [s.id for s in expected]  # exactly the filter's rows, in the list's order
    assert sheet[1][1] == beijing
    assert {r[2] for r in sheet[1:]} == {"烟感报警"}
    assert {r[6] for r in sheet[1:]} == {"否"}  # no drills
    assert {r[8] for r in sheet[1:]} == {"第1网格"}
    assert {r[5] for r in sheet[1:]} == {"是" if s.path == FALSE else "否" for s in expected}

    async with page.expect_download() as dl_info:
        await page.click("#h-csv")
    data = Path(await (await dl_info.value).path()).read_bytes().decode("utf-8")
    table = list(csv.reader(io.StringIO(data.lstrip("\ufeff"))))
    assert [r[0] for r in table[1:]] == [s.id for s in expected]

    async with page.expect_popup() as popup_info:
        await rows.first.locator("[data-record]").click()
    record = await popup_info.value
    await expect(record.locator("h1")).to_have_text("处置记录单")
    await expect(record.locator("table.fields")).to_contain_text(first.id)
    await expect(record.locator("table.log")).to_contain_text("复核关闭" if first.path == REAL else "误报")
    await expect(record.locator("table.fields")).to_contain_text(beijing)
    await record.set_viewport_size({"width": 900, "height": 900})
    await record.screenshot(path=shots / "02-record.png", full_page=True)

    await page.set_viewport_size({"width": 360, "height": 780})
    await page.screenshot(path=shots / "03-history-360.png", full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 380, f"the page is {width} px wide at 360 px"
    assert errors == []
