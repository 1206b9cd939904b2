"""The duty console in a real browser against the real system: a smoke alarm published over MQTT is on the
board within a second, sounds until acknowledged, the acknowledgement is in the timeline, the building turns
red on the map and green again after closing; a grid worker cannot see or act on another grid's alarms."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from backend.sites import SiteDirectory
from backend.sites.model import Device
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from shouwang.system import System
from tests.browser.conftest import AUDIO_PROBE, PASSWORD, broker_login
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def smoke_detector(sites: SiteDirectory, grid: str) -> Device:
    building = sorted(b.id for b in sites.buildings.values() if b.grid == grid)[0]
    return next(d for d in sites.devices_by_building[building] if d.kind == "smoke")


async def publish_smoke(system: System, device: Device, msg_id: str) -> float:
    now = int(time.time() * 1000)
    payload = encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))
    user, password = broker_login(system)
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=user, password=password) as mqtt:
        await mqtt.publish(event_topic(device.gateway, device.id), payload, qos=1)
        return time.monotonic()


async def log_in(page: Page, url: str, user: str) -> None:
    await page.goto(url)
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "on", timeout=10_000)


async def test_smoke_alarm_from_mqtt_to_board_ack_timeline_and_map(system: System, browser: Browser, sample_site: SiteDirectory, shots: Path) -> None:
    device = smoke_detector(sample_site, "c01-g1")
    page = await browser.new_page(viewport={"width": 1500, "height": 950}, locale="zh-CN")
    await page.add_init_script(AUDIO_PROBE)  # what the page really asks the browser to play
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(system.backend.url)
    await expect(page.locator("#login")).to_be_visible()
    await page.screenshot(path=shots / "01-login.png")
    await log_in(page, system.backend.url, "duty1")
    await expect(page.locator("#empty")).to_be_visible()
    await page.screenshot(path=shots / "02-board-empty.png")

    # the smoke alarm: on the board within one second of its MQTT message
    row = page.locator(f'#alarms tr[data-building="{device.building}"]')
    published = await publish_smoke(system, device, "browser-smoke-1")
    await row.wait_for(timeout=5_000)
    seen_after_s = time.monotonic() - published
    assert seen_after_s < 1.0, f"the alarm reached the board {seen_after_s:.2f} s after its MQTT message"
    await expect(page.locator("#alert-banner")).to_be_visible()
    banner = await page.locator("#alert-text").inner_text()
    building_name = sample_site.buildings[device.building].name
    assert "烟感报警" in banner, banner
    assert banner.count(building_name) == 1, f"the banner names the place once: {banner}"
    await expect(page.locator("body")).to_have_attribute("data-alerting", "1")
    # sounding means an oscillator connected on towards the speakers of a running context, not a counter the page keeps
    await page.wait_for_function("() => __probe.oscillatorsConnected > 0 && __probe.toSpeakers > 0 && __probe.contexts[0].state === 'running'")
    await expect(row).to_contain_text("烟感报警")
    await page.screenshot(path=shots / "03-alarm-on-board.png")

    # the map: the building is red
    await page.click('#tabs button[data-tab="map"]')
    rect = page.locator(f'#map rect[data-building="{device.building}"]')
    await expect(rect).to_have_attribute("data-level", "red")
    await rect.click()
    await expect(page.locator("#building-alarms")).to_contain_text("烟感报警")
    await page.screenshot(path=shots / "04-map-red.png")

    # acknowledge on screen: the alert stops, the timeline shows who acknowledged
    await page.click('#tabs button[data-tab="board"]')
    await row.click()
    await expect(page.locator("#detail")).to_be_visible()
    await page.click('#detail [data-action="acknowledge"]')
    ack = page.locator('#timeline li[data-what="acknowledge"]')
    await expect(ack).to_contain_text("duty1")
    await expect(page.locator("body")).to_have_attribute("data-alerting", "0")
    await expect(page.locator("body")).not_to_have_attribute("data-tone", re.compile("."))  # the sound loop stopped
    await expect(page.locator("#alert-banner")).to_be_hidden()
    await expect(row.locator("[data-state]")).to_have_attribute("data-state", "acknowledged")
    # the officer's acknowledgement is the command room's: the grid worker's rung still waits for its own answer, and
    # the pane says when it is re-paged and when it climbs (docs/escalation.md)
    waiting = page.locator('#rung-status tr[data-rung="grid_worker"]')
    await expect(waiting).to_have_attribute("data-waits", "1")
    await expect(waiting.locator(".countdown").last).to_have_text(re.compile(r"\d+:\d\d"))
    await page.screenshot(path=shots / "05-acknowledged-timeline.png")

    # close as real with a note: the building turns green again
    await page.fill("#note", "厨房油锅起火，已扑灭")
    await page.click('#detail [data-action="close-real"]')
    await expect(page.locator('#timeline li[data-what="verify_close"]')).to_contain_text("duty1")
    await page.screenshot(path=shots / "06-closed-timeline.png")
    await page.click('#tabs button[data-tab="map"]')
    await expect(rect).to_have_attribute("data-level", "green")
    await page.screenshot(path=shots / "07-map-green.png")

    # English on the toggle; device health renders
    await page.click("#lang")
    await page.click('#tabs button[data-tab="health"]')
    await expect(page.locator("#health-buildings tbody tr").first).to_be_visible()
    await expect(page.locator("header h1")).to_have_text("Shouwang · Duty console")
    await page.screenshot(path=shots / "08-health-english.png")
    assert errors == [], f"JavaScript errors on the page: {errors}"


async def test_an_alarm_committed_while_the_console_opens_its_feed_is_on_the_board(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                                 shots: Path) -> None:
    """The console reads the board over REST, then opens the live feed: a fire committed between the two is shown,
    because the feed resumes from the id the board's read named (the page's feed request is held until the fire is in)."""
    device = smoke_detector(sample_site, "c01-g2")
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    board_read = asyncio.Event()
    release = asyncio.Event()

    async def after_board(route: Route) -> None:
        await route.continue_()
        board_read.set()

    async def hold_feed(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route(re.compile(r"/api/alarms\?"), after_board)
    await page.route(re.compile(r"/api/feed$"), hold_feed)
    await page.goto(system.backend.url)
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await asyncio.wait_for(board_read.wait(), 10)
    await expect(page.locator("#empty")).to_be_visible()
    await publish_smoke(system, device, "browser-smoke-between")
    await until(system.backend.alarm_service.store.open_alarms, 10.0, "the fire to be stored")
    release.set()  # only now does the page's feed request go out
    await expect(page.locator(f'#alarms tr[data-building="{device.building}"]')).to_contain_text("烟感报警", timeout=5_000)
    await expect(page.locator("#feed-status")).to_have_attribute("data-state", "on")
    await page.screenshot(path=shots / "alarm-between-board-and-feed.png")
    await page.close()


async def test_grid_worker_cannot_read_or_act_on_another_grid(system: System, browser: Browser, sample_site: SiteDirectory, shots: Path) -> None:
    g1 = smoke_detector(sample_site, "c01-g1")
    g2 = smoke_detector(sample_site, "c01-g2")
    await publish_smoke(system, g1, "browser-g1")
    await publish_smoke(system, g2, "browser-g2")
    base = system.backend.url
    async with httpx.AsyncClient(base_url=base) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        for _ in range(100):
            alarms = (await http.get("/api/alarms?open=true", headers={"Authorization": f"Bearer {token}"})).json()["alarms"]
            if {a["building_id"] for a in alarms} >= {g1.building, g2.building}:
                break
            time.sleep(0.05)
        other = next(a["id"] for a in alarms if a["building_id"] == g1.building)
        gw = (await http.post("/api/login", json={"username": "gw2", "password": PASSWORD})).json()["token"]
        h = {"Authorization": f"Bearer {gw}"}
        assert (await http.get(f"/api/alarms/{other}", headers=h)).status_code == 404
        act = await http.post(f"/api/alarms/{other}/acknowledge", headers=h, json={})
        assert act.status_code == 404
        assert "辖区" in act.json()["detail"]
        assert {a["building_id"] for a in (await http.get("/api/alarms", headers=h)).json()["alarms"]} == {g2.building}

    page = await browser.new_page(viewport={"width": 1500, "height": 950}, locale="zh-CN")
    await log_in(page, base, "gw2")
    await expect(page.locator(f'#alarms tr[data-building="{g2.building}"]')).to_be_visible()
    await expect(page.locator(f'#alarms tr[data-building="{g1.building}"]')).to_have_count(0)
    await page.screenshot(path=shots / "01-grid2-board.png")
    fetch_js = "async id => (await fetch('/api/alarms/' + id, {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('sw-token')}})).status"
    status = await page.evaluate(fetch_js, other)
    assert status == 404
    await page.click('#tabs button[data-tab="map"]')
    await expect(page.locator(f'#map rect[data-building="{g2.building}"]')).to_have_attribute("data-level", "red")
    await expect(page.locator(f'#map rect[data-building="{g1.building}"]')).to_have_count(0)
    await page.screenshot(path=shots / "02-grid2-map.png")
