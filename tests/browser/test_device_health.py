"""Device health per gateway on the console (issue 21 "Commissioning is a state", issue 15 item 6 "unknown, not
offline"): devices never heard since they were added show as not yet commissioned (未上线), devices behind a blind
bridge as unknown (未知), apart from devices offline (离线, heard once and lost); a drill's blind bridge counts
nowhere. Chinese first, English on request; screenshots at 1280 px and 360 px in test-artifacts/browser/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from backend.sites import SiteDirectory
from broker.kinds import AvailabilityState
from broker.schemas import DeviceAvailability, decode_uplink, encode
from broker.topics import availability_topic
from shouwang.system import System
from tests.browser.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def say(system: System, gateway: str, device: str, state: AvailabilityState, n: int, *, drill: bool = False) -> None:
    """The gateway's word about one device, through the real alarm service as ingest hands it over."""
    now = int(time.time() * 1000)
    msg = DeviceAvailability(msg_id=f"dh-{n}", source_ts_ms=now, received_ts_ms=now, state=state, drill=drill,
                             reason="zigbee2mqtt bridge offline" if state is AvailabilityState.UNKNOWN else None)
    await system.backend.alarm_service.on_uplink(decode_uplink(str(availability_topic(gateway, device)), encode(msg)), now)


async def log_in(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator('[data-tab="health"]')).to_be_visible(timeout=10_000)


async def test_device_health_shows_offline_unknown_and_not_yet_commissioned_per_gateway(system: System, browser: Browser,
                                                                                        sample_site: SiteDirectory, shots: Path) -> None:
    waiting_gw, blind_gw, lost_gw, drill_gw = sorted(sample_site.devices_by_gateway)[:4]
    n = 0
    for d in sample_site.devices_by_gateway[waiting_gw][:5]:  # a retained "offline" for devices never heard: waiting, not lost
        n += 1
        await say(system, waiting_gw, d.id, AvailabilityState.OFFLINE, n)
    blind = sample_site.devices_by_gateway[blind_gw]
    for d in blind:  # the bridge in front of them is gone
        n += 1
        await say(system, blind_gw, d.id, AvailabilityState.UNKNOWN, n)
    lost = sample_site.devices_by_gateway[lost_gw][0]
    for state in (AvailabilityState.ONLINE, AvailabilityState.OFFLINE):  # in service, then lost
        n += 1
        await say(system, lost_gw, lost.id, state, n)
    for d in sample_site.devices_by_gateway[drill_gw]:  # a drill's blind bridge: never a real figure
        n += 1
        await say(system, drill_gw, d.id, AvailabilityState.UNKNOWN, n, drill=True)

    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url)
    await page.click('[data-tab="health"]')
    card = page.locator("#health-gateways li")
    await expect(card).to_have_count(3)
    waiting = page.locator(f'#health-gateways li[data-gateway="{waiting_gw}"]')
    await expect(waiting.locator('[data-count="uncommissioned"]')).to_have_text("未上线 5")
    await expect(waiting.locator('[data-count="offline"]')).to_have_count(0)
    unknown = page.locator(f'#health-gateways li[data-gateway="{blind_gw}"]')
    await expect(unknown.locator('[data-count="unknown"]')).to_have_text(f"未知 {len(blind)}")
    await expect(unknown.locator('[data-count="offline"]')).to_have_count(0)
    await expect(page.locator(f'#health-gateways li[data-gateway="{lost_gw}"] [data-count="offline"]')).to_have_text("离线 1")
    await expect(page.locator(f'#health-gateways li[data-gateway="{drill_gw}"]')).to_have_count(0)
    await expect(page.locator('[data-total="unknown"]')).to_have_text(str(len(blind)))
    await expect(page.locator('[data-total="uncommissioned"]')).to_have_text("5")
    await expect(page.locator("#health-offline li")).to_have_count(1)
    await expect(page.locator("#health-offline li")).to_contain_text("通信中断")  # the reason in words, not comm_lost
    await expect(page.locator("#health-offline li")).to_contain_text("号楼")  # the building by its name
    assert "comm_lost" not in await page.locator("#health-offline li").inner_text()
    await page.screenshot(path=shots / "01-health-1280.png", full_page=True)

    await page.set_viewport_size({"width": 360, "height": 780})
    await expect(waiting.locator('[data-count="uncommissioned"]')).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360, "nothing wider than the phone's screen"
    box = await waiting.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 360
    await page.screenshot(path=shots / "02-health-360.png", full_page=True)

    await page.click("#lang")
    await expect(waiting.locator('[data-count="uncommissioned"]')).to_have_text("not yet commissioned 5")
    await expect(unknown.locator('[data-count="unknown"]')).to_have_text(f"unknown {len(blind)}")
    await expect(page.locator("#health-offline li")).to_contain_text("communication lost")
    await page.screenshot(path=shots / "03-health-360-en.png", full_page=True)
    assert errors == []
