"""The responder's phone view in Chromium with a phone's screen (360 x 740, touch, a phone's user agent), on the whole
system: a smoke alarm in a vulnerable resident's flat pages the grid worker; she opens her one-tap link, sees the address
and the resident's notes, has the call links, and goes 我已收到 → 出发 → 到场 → 处置完成 (the last with a photo); a duty
console open at the same time shows each move within a second. An expired link explains itself in Chinese with the duty
room's number. Screenshots in test-artifacts/browser/<test>/ for a person to look at.

Before issue 18 the link opened a bare page (a title, an alarm id, five buttons) and an expired link answered JSON."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from alerting.ladder import Contact
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.server import _secret
from backend.settings import load_settings
from backend.sites import SiteDirectory
from backend.sites.model import Device
from shouwang.system import System
from tests.browser.conftest import PASSWORD
from tests.browser.test_chinese_timeline import english_words
from tests.browser.test_console import log_in, publish_smoke
from tests.conftest import SAMPLE_SITE
from tests.workorders.images import png

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DUTY_PHONE = "0571-88880000"
PHONE_UA = "Mozilla/5.0 (Linux; Android 13; Pixel 5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"


async def phone_context(browser: Browser, timezone_id: str | None = None) -> BrowserContext:
    """A phone's screen, 360 CSS pixels wide (the narrowest common Android width), touch, a phone's user agent, Chinese."""
    return await browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=3, is_mobile=True, has_touch=True,
                                      user_agent=PHONE_UA, locale="zh-CN", timezone_id=timezone_id)


@pytest.fixture
async def phone_system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    """The whole system (as tests/browser/conftest.py's `system`) with the duty room's number set for the phone view."""
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026", "duty_phone": DUTY_PHONE},
                             storage={"data_dir": tmp_path / "var"}, simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, sample_site) as s:
        s.backend.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        yield s


def vulnerable_kitchen(sites: SiteDirectory, grid: str) -> Device:
    """The smoke detector of a flat in `grid` where a resident who lives alone has care notes."""
    return next(d for d in sorted(sites.devices.values(), key=lambda d: d.id)
                if d.kind == "smoke" and d.household and sites.buildings[d.building].grid == grid
                and (hh := sites.households[d.household]).vulnerable is not None and hh.vulnerable.lives_alone)


async def paged_grid_worker(url: str, alarm_id: str) -> str:
    """The grid worker the ladder paged (the console's timeline already shows the page)."""
    async with httpx.AsyncClient(base_url=url) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        detail = (await http.get(f"/api/alarms/{alarm_id}", headers={"Authorization": f"Bearer {token}"})).json()
    return str(next(c["id"] for r in detail["ladder"]["rungs"] if r["rung"] == "grid_worker" for c in r["contacts"]))


async def tap_move(phone: Page, console: Page, alarm_id: str, move: str, label: str, state: str, shots: Path, n: int) -> float:
    """Tap a move on the phone; the seconds from the phone's confirmation to the console's board showing the new state."""
    card = phone.locator(f'section.task[data-task-id="{alarm_id}"]')
    await card.locator(f'button[data-move="{move}"]').tap()
    await expect(phone.locator("#status")).to_have_text(f"已提交：{label}", timeout=5_000)
    t0 = time.monotonic()
    await expect(console.locator(f'#alarms tr[data-alarm-id="{alarm_id}"] .tag.state[data-state="{state}"]')).to_be_visible(timeout=1_000)
    took = time.monotonic() - t0
    await phone.screenshot(path=shots / f"0{n}-phone-{move}.png", full_page=True)
    return took


async def test_a_grid_worker_works_an_alarm_from_the_phone_and_the_console_follows(phone_system: System, browser: Browser,
                                                                                 sample_site: SiteDirectory, shots: Path, tmp_path: Path) -> None:
    system = phone_system
    device = vulnerable_kitchen(sample_site, "c01-g1")
    household = sample_site.households[device.household or ""]
    assert household.vulnerable is not None

    console = await browser.new_page(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    await log_in(console, system.backend.url, "duty1")
    await publish_smoke(system, device, "responder-phone-1")
    row = console.locator(f'#alarms tr[data-building="{device.building}"]')
    await row.wait_for(timeout=10_000)
    alarm_id = await row.get_attribute("data-alarm-id")
    assert alarm_id
    await row.click()  # the officer watches this alarm
    await expect(console.locator('#timeline li[data-what="paged"]').first).to_be_visible(timeout=10_000)
    worker = await paged_grid_worker(system.backend.url, alarm_id)

    # the grid worker opens her one-tap link on her phone (the SMS's link: signed by the server's key)
    links = OneTapLinks(TokenSigner(_secret(tmp_path / "var")), system.backend.clock, system.backend.url)
    context = await phone_context(browser, "UTC")  # a phone set to UTC still reads Beijing time
    phone = await context.new_page()
    errors: list[str] = []
    phone.on("pageerror", lambda e: errors.append(str(e)))
    await phone.goto(links.link(alarm_id, 1, Contact(worker, "")))
    card = phone.locator(f'section.task[data-task-id="{alarm_id}"]')
    await expect(card).to_be_visible(timeout=5_000)
    assert phone.url.endswith("/m/"), "a reload keeps the session, not the link"

    # the address in words, the resident's notes and key holder, the calls
    room = household.room
    place = await card.locator(".place").inner_text()
    assert "幸福里社区" in place
    assert f"{household.unit}单元" in place
    assert f"{room}室" in place
    assert f"{int(room[:-2])}层" in place
    resident = card.locator(".resident")
    await expect(resident).to_contain_text("独居")
    if household.vulnerable.notes:
        await expect(resident).to_contain_text(household.vulnerable.notes)
    await expect(resident.locator(".key-holder")).to_contain_text("张桂兰")
    calls = await card.locator(".calls a").evaluate_all("els => els.map(e => [e.textContent, e.getAttribute('href')])")
    hrefs = [h for _t, h in calls]
    assert f"tel:{DUTY_PHONE}" in hrefs
    assert f"tel:{household.vulnerable.family_contacts[0].phone}" in hrefs
    assert await card.locator("a.nav").get_attribute("href") == f"geo:0,0?q={quote('幸福里社区 ' + sample_site.buildings[device.building].name)}"
    await expect(phone.locator("#duty-call")).to_have_attribute("href", f"tel:{DUTY_PHONE}")
    # Beijing time, although the phone runs in UTC
    raised = await card.locator(".when").inner_text()
    beijing = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:")
    assert beijing in raised, f"not Beijing time: {raised!r} (Beijing now {beijing}..)"
    # big touch targets at 360 px, nothing wider than the screen
    for button in await card.locator("button.move").all():
        box = await button.bounding_box()
        assert box is not None
        assert box["height"] >= 48, box
        assert box["width"] >= 140, box
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 360
    text = " ".join([await phone.locator(sel).inner_text() for sel in ("#title", "#me", "#tasks", "footer")])  # all but the 中文/English toggle
    assert english_words(text) == [], f"untranslated English on the phone: {english_words(text)}"
    await phone.screenshot(path=shots / "01-phone-task.png", full_page=True)

    # the moves: each shows on the console's board within a second
    took = {"acknowledge": await tap_move(phone, console, alarm_id, "acknowledge", "我已收到", "acknowledged", shots, 2),
            "depart": await tap_move(phone, console, alarm_id, "depart", "出发", "en_route", shots, 3),
            "arrive": await tap_move(phone, console, alarm_id, "arrive", "到场", "on_scene", shots, 4)}
    await card.locator("textarea").fill("厨房油锅起火，已用灭火毯扑灭，老人无恙")
    await card.locator('input[type="file"]').set_input_files({"name": "scene.png", "mimeType": "image/png", "buffer": png(320, 240)})
    took["finish"] = await tap_move(phone, console, alarm_id, "finish", "处置完成", "handled", shots, 5)
    assert all(s < 1.0 for s in took.values()), took
    await expect(console.locator('#timeline li[data-what="finish"]')).to_have_count(1, timeout=5_000)
    # the phone's photo is on the console, live, in the alarm's comments, with the worker's words
    phone_comment = console.locator("#collab-comments li").first
    await expect(phone_comment).to_contain_text("厨房油锅起火，已用灭火毯扑灭，老人无恙", timeout=5_000)
    await expect(phone_comment).to_contain_text("（网格员）")
    await console.wait_for_function("() => { const i = document.querySelector('#collab-comments img'); return i && i.complete && i.naturalWidth === 320; }")
    await console.locator("#collab").screenshot(path=shots / "06-console-phone-photo.png")
    await console.screenshot(path=shots / "06-console.png", full_page=True)
    finished = card.locator('button[data-move="finish"]')
    await expect(finished).to_have_class(re.compile(r"\bdone\b"))
    await expect(finished).to_be_disabled()

    # the photo is on record with the move
    async with httpx.AsyncClient(base_url=system.backend.url) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        detail = (await http.get(f"/api/alarms/{alarm_id}", headers={"Authorization": f"Bearer {token}"})).json()
    notes = " ".join(str(e.get("note") or "") for e in detail["timeline"])
    assert "照片" in notes
    assert "灭火毯" in notes
    # English on request (the console's own toggle and choice)
    await phone.locator("#lang").tap()
    await expect(phone.locator("#title")).to_have_text("Shouwang · my tasks")
    await expect(card.locator('button[data-move="depart"]')).to_contain_text("Depart")
    await phone.screenshot(path=shots / "08-phone-en.png", full_page=True)
    assert errors == [], f"JavaScript errors on the phone: {errors}"

    # an expired link explains itself in Chinese, with the duty room's number
    expired = OneTapLinks(links.signer, system.backend.clock, system.backend.url, ttl_s=-60)
    stranger = await phone_context(browser)
    page = await stranger.new_page()
    answer = await page.goto(f"{system.backend.url}/r/{expired.token(alarm_id, worker)}")
    assert answer is not None
    assert answer.status == 401
    await expect(page.locator("h1")).to_contain_text("这个链接已过期")
    await expect(page.locator("a.call")).to_have_attribute("href", f"tel:{DUTY_PHONE}")
    await page.screenshot(path=shots / "07-expired-link.png", full_page=True)
    await stranger.close()
    await context.close()
