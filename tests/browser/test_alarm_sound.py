"""No alarm goes unheard on the duty console, in a browser that plays no sound before a click (a real duty room's).

1. The console asks for that click whenever the browser holds the sound back, with or without a saved session:
   a full-width prompt covers the board until it is clicked; then the real AudioContext runs and an oscillator is
   connected to the speakers for an unacknowledged life-safety alarm, also after a reload with the saved session
   (before this, a reloaded console never made its audio context and stayed mute). Title flashing, one system
   notification, a banner with role="alert"; mute is visible, counts down, is on record with who muted, runs out by
   itself after 5 minutes (the page's clock fast-forwarded) and a new life-safety alarm ends it.
2. A mass outage of 2,000 minor alarms, newer than an open SOS, does not push the SOS off the board: it is the first
   row, with its banner and its sound; the outage is grouped by type and building, and the board says how many.
   The detail pane says per rung who still waits for their own answer and when each climbs; times are the site's
   (Beijing), whatever the browser's zone; Chinese by default, English on the toggle; it fits 360 px.

What the browser was asked to play is watched through `AUDIO_PROBE` (tests/browser/conftest.py).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from alerting.lifecycle import AlarmState
from alerting.model import Alarm, AlarmKey, AuditEntry, Persist, Place, Severity
from backend.sites import SiteDirectory
from backend.sites.model import Device
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import AUDIO_PROBE, GESTURE_AUDIO_POLICY, PASSWORD, broker_login
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BEIJING = timezone(timedelta(hours=8))
CRITICAL_CYCLE_MS = 1200  # the critical tone repeats this often (console.js TONES.critical.every)


def first_device(sites: SiteDirectory, grid: str, kind: DeviceKind) -> Device:
    building = sorted(b.id for b in sites.buildings.values() if b.grid == grid)[0]
    return next(d for d in sites.devices_by_building[building] if d.kind is kind)


async def publish(system: System, device: Device, event: EventKind, msg_id: str) -> None:
    now = int(time.time() * 1000)
    payload = encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now, event=event))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)


async def stored_alarm(system: System, device: Device) -> str:
    """The open alarm of a device, once the pipeline has stored it."""
    store = system.backend.alarm_service.store

    def found() -> str | None:
        return next((a.id for a in store.list(open_only=True, limit=5000) if a.device_id == device.id), None)

    alarm_id: str = await until(found, 10, f"the alarm of {device.id} in the store")
    return alarm_id


async def probe(page: Page) -> dict[str, Any]:
    got: dict[str, Any] = await page.evaluate("""() => ({ states: __probe.contexts.map(c => c.state), connected: __probe.oscillatorsConnected,
        speakers: __probe.toSpeakers, notifications: __probe.notifications, asked: __probe.permissionAsked })""")
    return got


async def audible_context(browser: Browser, *, viewport: dict[str, int] | None = None, **kw: Any) -> BrowserContext:
    ctx = await browser.new_context(viewport=viewport or {"width": 1500, "height": 950}, locale="zh-CN", **kw)  # type: ignore[arg-type]
    await ctx.add_init_script(AUDIO_PROBE)
    await ctx.add_init_script(GESTURE_AUDIO_POLICY)  # after the probe: it wraps the probed AudioContext
    return ctx


async def log_in(page: Page, user: str) -> None:
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "on", timeout=10_000)


async def enable_sound(page: Page) -> None:
    await page.click("#sound-enable")
    await page.wait_for_function("() => __probe.contexts.length === 1 && __probe.contexts[0].state === 'running'")
    await expect(page.locator("#sound-gate")).to_be_hidden()


async def test_the_alarm_sounds_after_a_reload_with_a_saved_session(system: System, strict_browser: Browser, sample_site: SiteDirectory,
                                                                     shots: Path) -> None:
    url = system.backend.url
    fire = first_device(sample_site, "c01-g1", DeviceKind.SMOKE)
    ctx = await audible_context(strict_browser)
    page = await ctx.new_page()
    await page.clock.install()  # the page's own clock flows as usual; the mute's expiry is then reached without waiting 5 min
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # a fresh console: the browser holds the sound back, so the prompt covers everything, in Chinese
    await page.goto(url)
    gate = page.locator("#sound-gate")
    await expect(gate).to_be_visible()
    await expect(page.locator("#sound-enable")).to_have_text("点击启用警报声")
    assert (await probe(page))["states"] == ["suspended"], "the page made its audio context as it loaded, held back by the browser"
    covered = await page.evaluate("() => !!document.elementFromPoint(innerWidth / 2, innerHeight / 2).closest('#sound-gate')")
    assert covered, "the prompt must cover the page until clicked"
    await page.screenshot(path=shots / "01-prompt-fresh.png")
    await enable_sound(page)
    assert (await probe(page))["asked"] == 1, "the notification permission is asked once, on the click"

    await ctx.grant_permissions(["notifications"], origin=url)
    await log_in(page, "duty1")
    await publish(system, fire, EventKind.SMOKE_ALARM, "sound-fire-1")
    banner = page.locator('#alert-banner[role="alert"]')
    await expect(banner).to_be_visible(timeout=5_000)
    await expect(banner).to_contain_text("烟感报警")
    await page.wait_for_function("() => __probe.oscillatorsConnected > 0 && __probe.toSpeakers > 0")
    await page.wait_for_function("() => document.title.startsWith('【警报】')")
    await page.wait_for_function("() => __probe.notifications.length === 1")
    assert "烟感报警" in (await probe(page))["notifications"][0]["body"]
    await expect(page.locator("body")).to_have_attribute("data-tone", "critical")
    await page.screenshot(path=shots / "02-alarm-sounding.png")

    # the duty room's browser restarts: the saved session comes back, the sound does not until a click
    await page.reload()
    await expect(gate).to_be_visible()
    await expect(page.locator(f'#alarms tr[data-building="{fire.building}"]')).to_be_attached()
    p = await probe(page)
    assert p["states"] == ["suspended"], p
    assert p["connected"] == 0, "nothing can play while the browser holds the sound back"
    await page.screenshot(path=shots / "03-prompt-after-reload.png")
    await enable_sound(page)
    await expect(banner).to_be_visible()
    await page.wait_for_function("() => __probe.oscillatorsConnected > 0 && __probe.toSpeakers > 0")
    await page.screenshot(path=shots / "04-sounding-after-reload.png")

    # mute: visible, counting down, on record with who muted; nothing plays while muted
    await page.click("#alert-mute")
    bar = page.locator("#mute-bar")
    await expect(bar).to_be_visible()
    await expect(bar).to_contain_text("duty1")
    await expect(page.locator("#mute-text")).to_contain_text("4:5")  # counts down from 5:00
    await expect(page.locator("body")).to_have_attribute("data-sound", "muted")
    await expect(banner).to_be_visible()  # the banner stays: only the sound is off
    before = (await probe(page))["connected"]
    await page.wait_for_timeout(CRITICAL_CYCLE_MS + 300)  # one full cycle of the tone: an absence needs its time
    assert (await probe(page))["connected"] == before, "the console played while muted"
    await page.screenshot(path=shots / "05-muted.png")
    fire_id = await stored_alarm(system, fire)
    async with httpx.AsyncClient(base_url=url) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        timeline = (await http.get(f"/api/alarms/{fire_id}", headers={"Authorization": f"Bearer {token}"})).json()["timeline"]
    muted = [e for e in timeline if e["what"] == "mute_sound"]
    assert [e["actor"] for e in muted] == ["duty1"], timeline

    # the mute runs out by itself: five minutes on, the sound is back
    await page.clock.fast_forward("05:01")
    await expect(bar).to_be_hidden()
    await page.wait_for_function(f"() => __probe.oscillatorsConnected > {before}")
    await expect(page.locator("body")).to_have_attribute("data-sound", "ready")
    await page.click("#alert-mute")
    await expect(bar).to_be_visible()
    before = (await probe(page))["connected"]

    # a new life-safety alarm ends the mute at once
    second = first_device(sample_site, "c01-g2", DeviceKind.SMOKE)
    await publish(system, second, EventKind.SMOKE_ALARM, "sound-fire-2")
    await expect(bar).to_be_hidden(timeout=5_000)
    await page.wait_for_function(f"() => __probe.oscillatorsConnected > {before}")
    await page.wait_for_function("() => __probe.notifications.length === 2")  # the second fire has its own notification
    await expect(page.locator("body")).to_have_attribute("data-sound", "ready")
    await page.screenshot(path=shots / "06-new-alarm-ends-mute.png")

    # the same detector alarming again (one more occurrence of an alarm already muted) ends the mute too
    await page.click("#alert-mute")
    await expect(bar).to_be_visible()
    before = (await probe(page))["connected"]
    await publish(system, second, EventKind.SMOKE_ALARM, "sound-fire-2-again")
    await expect(bar).to_be_hidden(timeout=5_000)
    await page.wait_for_function(f"() => __probe.oscillatorsConnected > {before}")
    await page.screenshot(path=shots / "07-recurrence-ends-mute.png")
    assert errors == [], f"JavaScript errors on the page: {errors}"
    await ctx.close()


def outage(sites: SiteDirectory, n: int, after_ms: int) -> list[Persist]:
    """n minor communication-lost alarms, all newer than `after_ms`: a community's devices going quiet."""
    devices = [d for d in sorted(sites.devices.values(), key=lambda d: d.id) if d.kind is not DeviceKind.SOS][:n]
    out = []
    for i, d in enumerate(devices):
        at = after_ms + 1000 + i
        a = Alarm(id=f"outage-{i:05d}", key=AlarmKey(f"outage:{d.id}", "comm_lost"), state=AlarmState.RAISED, severity=Severity.MINOR,
                  life_safety=False, title=f"通信中断 · {d.location}", place=Place(d.id, d.gateway, d.building, d.unit, d.household),
                  occurrences=1, first_seen_ms=at, last_seen_ms=at, raised_at_ms=at, updated_ms=at, audit_seq=1)
        out.append(Persist(a, (AuditEntry(a.id, 0, at, "system", "raise", None, AlarmState.RAISED),)))
    return out


async def test_an_sos_stays_first_on_the_board_behind_2000_minor_alarms(system: System, strict_browser: Browser, sample_site: SiteDirectory,
                                                                          shots: Path) -> None:
    url = system.backend.url
    sos = first_device(sample_site, "c01-g1", DeviceKind.SOS)
    await publish(system, sos, EventKind.SOS_PRESS, "outage-sos-1")
    sos_id = await stored_alarm(system, sos)
    store = system.backend.alarm_service.store
    rec = next(a for a in store.list(open_only=True) if a.id == sos_id)
    store.apply(outage(sample_site, 2000, rec.raised_at_ms))  # all newer than the SOS: the old board's newest 500 had no room for it

    # the browser's own zone is London: the console must still show Beijing time; it starts in English
    ctx = await audible_context(strict_browser, timezone_id="Europe/London")
    await ctx.add_init_script("if (!sessionStorage.getItem('sw-lang-set')) { sessionStorage.setItem('sw-lang-set', '1'); "
                              "localStorage.setItem('sw-lang', 'en'); }")
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url)
    await expect(page.locator("#sound-enable")).to_have_text("Click to enable the alarm sound")
    await page.screenshot(path=shots / "01-prompt-english.png")
    await enable_sound(page)
    await log_in(page, "duty1")

    first = page.locator("#alarms tr").first
    await expect(first).to_have_attribute("data-alarm-id", sos_id)
    await expect(page.locator("#alert-banner")).to_contain_text("一键呼救")
    await page.wait_for_function("() => __probe.oscillatorsConnected > 0 && __probe.toSpeakers > 0")
    await expect(page.locator("#board-count")).to_have_attribute("data-total", "2001")
    await expect(page.locator("#board-count")).to_contain_text("2,001")
    groups = page.locator("#alarms tr.group")
    assert await groups.count() >= 2, "the outage is shown as groups by type and building"
    assert await page.locator("#alarms tr[data-alarm-id]").count() == 1, "only the life-safety alarm is a row of its own"
    await page.screenshot(path=shots / "02-sos-first-outage-grouped-english.png")

    # Chinese on the toggle; a group opens to its alarms
    await page.click("#lang")
    await expect(page.locator("#board-count")).to_contain_text("未关闭 共 2,001 条")
    group = groups.first
    n = int((await group.locator(".n").inner_text()).strip("× "))
    await group.click()
    await expect(page.locator("#alarms tr.member")).to_have_count(n)
    await expect(first).to_have_attribute("data-alarm-id", sos_id)
    await page.screenshot(path=shots / "03-group-open-chinese.png")

    # one by one: paged, the SOS still on top of every page
    await page.click("#mode-toggle")
    await expect(page.locator("#pager")).to_be_visible()
    await expect(page.locator("#page-text")).to_contain_text("共 2000 条")
    await page.click("#page-next")
    await expect(page.locator("#page-text")).to_contain_text("第 201–400 条")
    await expect(first).to_have_attribute("data-alarm-id", sos_id)
    await page.screenshot(path=shots / "04-paged-sos-on-top.png")

    # the detail: per rung who still waits for their own answer and when it climbs; Beijing time
    await first.click()
    status = page.locator("#rung-status")
    await expect(status).to_be_visible()
    await expect(status.locator('tr[data-waits="1"]').first).to_be_visible()
    await expect(status.locator("tbody tr").first.locator(".countdown").first).to_have_text(re.compile(r"\d:\d\d"))
    raised = datetime.fromtimestamp(rec.raised_at_ms / 1000, UTC).astimezone(BEIJING).strftime("%H:%M:%S")
    await expect(page.locator("#detail")).to_contain_text(raised)
    await page.screenshot(path=shots / "05-detail-rungs.png")

    # 360 px wide: nothing runs off the side, the SOS is still the first row
    await page.set_viewport_size({"width": 360, "height": 780})
    await page.click('#tabs button[data-tab="board"]')
    await expect(first).to_have_attribute("data-alarm-id", sos_id)
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 362, f"the page is {width} px wide at 360 px"
    await page.screenshot(path=shots / "06-phone-board.png", full_page=False)
    await page.locator("#detail").screenshot(path=shots / "07-phone-detail.png")
    assert errors == [], f"JavaScript errors on the page: {errors}"
    await ctx.close()


NO_SOUND_DEVICE = """
(() => {
  const Probed = window.AudioContext;
  window.AudioContext = class extends Probed {
    constructor(...a) { super(...a); super.suspend(); }
    resume() { return new Promise(() => {}); }  // a machine whose sound never starts, click or not
  };
})();
"""


async def test_a_console_whose_sound_cannot_start_says_so_and_is_not_locked(system: System, strict_browser: Browser, shots: Path) -> None:
    ctx = await audible_context(strict_browser)
    await ctx.add_init_script(NO_SOUND_DEVICE)
    page = await ctx.new_page()
    await page.goto(system.backend.url)
    await page.click("#sound-enable")
    await expect(page.locator("#sound-failed")).to_be_visible()
    await expect(page.locator("#sound-gate")).to_be_visible()
    await page.screenshot(path=shots / "01-sound-failed.png")
    await page.click("#sound-skip")
    await expect(page.locator("#sound-gate")).to_be_hidden()
    await expect(page.locator("#sound-off")).to_have_text("警报声不可用")
    await expect(page.locator("#login")).to_be_visible()
    await page.screenshot(path=shots / "02-going-on-silent.png")
    await ctx.close()
