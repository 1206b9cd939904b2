"""A full alarm cycle in the Chinese duty console reads Chinese: raise, the ladder's page, the officer's
acknowledgement, the grid worker's en route / on scene / handled (their one-tap answers), closing. The timeline and
the detail pane show no untranslated English word (ids, usernames and units are allowed by shape or by name), the
same console in English shows English, and on a machine in UTC every time shown is Beijing time (backend/i18n.py)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.server import _secret
from backend.sites import SiteDirectory
from shouwang.system import System
from tests.browser.conftest import PASSWORD
from tests.browser.test_console import log_in, publish_smoke, smoke_detector

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Words a person may read in Latin letters in the Chinese console: the console's own unit and brand words. Ids
# (c01-g1-w1, A19b76daa800.2, duty1) carry digits and are allowed by shape; a word of letters only must be here.
ALLOWED = {"SOS", "ppm", "dBm", "mA", "kWh", "RSSI"}
WORD = re.compile(r"[A-Za-z0-9_.:\-]+")


def english_words(text: str) -> list[str]:
    return [w for w in WORD.findall(text) if re.fullmatch(r"[A-Za-z_]{2,}", w) and w not in ALLOWED]


@pytest.fixture
def utc_machine() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


# every text node on its own, so a time and a name drawn side by side ("14:06:15" "backend") are two words
TEXT_NODES = """el => { const out = []; const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  while (w.nextNode()) out.push(w.currentNode.nodeValue); return out.join(" \\n "); }"""


async def _detail_text(page: Page) -> tuple[str, str]:
    return await page.locator("#timeline").evaluate(TEXT_NODES), await page.locator("#detail").evaluate(TEXT_NODES)


@pytest.mark.usefixtures("utc_machine")
async def test_full_alarm_cycle_reads_chinese_and_english_on_request(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                   shots: Path, tmp_path: Path) -> None:
    device = smoke_detector(sample_site, "c01-g1")
    page = await browser.new_page(viewport={"width": 1500, "height": 950}, locale="zh-CN", timezone_id="UTC")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url, "duty1")
    await expect(page.locator("#who")).to_contain_text("值班员")  # the role in words, not its id (duty_officer)
    assert not english_words(await page.locator("#who").inner_text()), await page.locator("#who").inner_text()
    row = page.locator(f'#alarms tr[data-building="{device.building}"]')
    await publish_smoke(system, device, "chinese-timeline-1")
    await row.wait_for(timeout=5_000)
    alarm_id = await row.get_attribute("data-alarm-id")
    assert alarm_id

    # the ladder pages the grid worker; the officer acknowledges on the console
    await row.click()
    await expect(page.locator('#timeline li[data-what="paged"]').first).to_be_visible(timeout=10_000)
    await page.click('#detail [data-action="acknowledge"]')
    await expect(page.locator('#timeline li[data-what="acknowledge"]')).to_contain_text("duty1")
    await expect(page.locator("#action-msg")).to_have_text(re.compile(r"已完成.*已确认"))
    assert not english_words(await page.locator("#action-msg").inner_text())

    # the grid worker answers en route, on scene, handled through their one-tap link (the responder's phone)
    links = OneTapLinks(TokenSigner(_secret(tmp_path / "var")), system.backend.clock)
    async with httpx.AsyncClient(base_url=system.backend.url) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        detail = (await http.get(f"/api/alarms/{alarm_id}", headers={"Authorization": f"Bearer {token}"})).json()
        worker = next(c["id"] for r in detail["ladder"]["rungs"] if r["rung"] == "grid_worker" for c in r["contacts"])
        link = links.token(alarm_id, worker)
        for move in ("acknowledge", "depart", "arrive", "finish"):  # the lifecycle's moves, by their names
            r = await http.post(f"/api/responses/{link}", json={"response": move})
            assert r.status_code == 200, r.text

    # the officer closes with a note
    await row.click()
    await expect(page.locator('#timeline li[data-what="finish"]')).to_have_count(1, timeout=10_000)
    await page.fill("#note", "厨房油锅起火，已扑灭")
    await page.click('#detail [data-action="close-real"]')
    await expect(page.locator('#timeline li[data-what="verify_close"]')).to_contain_text("duty1")
    await page.screenshot(path=shots / "01-closed-zh.png", full_page=True)

    timeline, pane = await _detail_text(page)
    whats = await page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.what)")
    assert {"paged", "acknowledge", "depart", "arrive", "finish", "verify_close", "observed", "close_real"} <= set(whats), whats
    assert english_words(timeline) == [], f"untranslated English in the Chinese timeline: {english_words(timeline)}\n{timeline}"
    assert english_words(pane) == [], f"untranslated English in the Chinese detail pane: {english_words(pane)}\n{pane}"
    assert "呼叫" in timeline
    assert "系统" in timeline

    # times shown are Beijing time although the machine and the browser run in UTC
    async with httpx.AsyncClient(base_url=system.backend.url) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        detail = (await http.get(f"/api/alarms/{alarm_id}", headers={"Authorization": f"Bearer {token}"})).json()
    first = detail["timeline"][0]["at_ms"]
    beijing = datetime.fromtimestamp(first / 1000, ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S")
    utc = datetime.fromtimestamp(first / 1000, ZoneInfo("UTC")).strftime("%H:%M:%S")
    assert (await page.locator("#timeline li .t").first.inner_text()).strip() == beijing, f"not Beijing time (UTC would be {utc})"

    # English on request: the same history, rendered in English
    await page.click("#lang")
    await expect(page.locator('#timeline li[data-what="verify_close"]')).to_contain_text("Closed")
    await page.screenshot(path=shots / "02-closed-en.png", full_page=True)
    timeline_en, _ = await _detail_text(page)
    await expect(page.locator("#who")).to_contain_text("duty officer")
    for words in ("paged", "system", "acknowledged", "en route", "on scene", "handled"):  # states as labels ("En route") or in notes
        assert words in timeline_en.lower(), f"{words!r} missing from the English timeline:\n{timeline_en}"
    assert "呼叫" not in timeline_en
    assert errors == [], f"JavaScript errors on the page: {errors}"
