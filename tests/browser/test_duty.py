"""Duty on the console in a real browser against the real system (issue 17).

1. A shift handover: two duty officers log in to their shifts (the header's "on duty now" is red with GB 25506's
   warning while fewer than two are on duty, and names both after); the outgoing officer writes a handover that lists
   the open smoke alarm and the maintenance window in force, with notes; the incoming officer, in another browser,
   accepts it with an objection; it shows as accepted, stored with who accepted it and when.
2. A roster override taking effect on the next alarm: the officer enters the grid worker's sick leave in the roster
   panel; the grid's seat shows the deputy at once; the next smoke alarm in that grid pages the deputy (the alarm's
   ladder in the detail pane names them, via the deputy), with no restart.

Screenshots at 1280 px and 360 px under test-artifacts/browser/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from alerting.directory import Seat
from backend.duty.store import DutyStore, HandoverRecord
from backend.sites import SiteDirectory
from shouwang.system import System
from tests.browser.conftest import PASSWORD
from tests.browser.test_console import log_in, publish_smoke, smoke_detector
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def open_part(page: Page, part: str) -> None:
    if not await page.locator("#dt-panel").is_visible():
        await page.click("#duty-link")
        await expect(page.locator("#dt-panel")).to_be_visible()
    await page.click(f'#duty .dt-parts button[data-part="{part}"]')
    await expect(page.locator(f'#duty .dt-parts button[data-part="{part}"]')).to_have_class("active")


async def test_a_handover_written_by_one_officer_is_accepted_by_another(system: System, browser: Browser, sample_site: SiteDirectory,
                                                                        shots: Path) -> None:
    system.backend.users.add("duty2", PASSWORD, "duty_officer", "值班员李娜")
    outgoing = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    outgoing.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(outgoing, system.backend.url, "duty1")
    now_badge = outgoing.locator("#duty-now")
    await expect(now_badge).to_contain_text("在岗 0 · 不足 2 人（GB 25506）")
    await expect(now_badge).to_have_attribute("title", "当前在岗值班员 0 人，少于 GB 25506 要求的每班不少于 2 人")
    await expect(now_badge).to_have_class("short")

    await open_part(outgoing, "now")
    await outgoing.click("#dt-shift")
    await expect(outgoing.locator("#dt-shift")).to_have_text("结束值班（下岗）")
    await expect(now_badge).to_contain_text("在岗 1：值班员徐静")
    await expect(outgoing.locator("#duty .dt-warn")).to_contain_text("当前在岗值班员 1 人")
    await outgoing.screenshot(path=shots / "duty-01-one-officer-warning-1280.png")

    incoming = await browser.new_page(viewport={"width": 360, "height": 780}, locale="zh-CN")
    incoming.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(incoming, system.backend.url, "duty2")
    await expect(incoming.locator("#duty-now")).to_contain_text("在岗 1：值班员徐静")
    await incoming.screenshot(path=shots / "duty-02a-header-360.png")
    await open_part(incoming, "now")
    await incoming.click("#dt-shift")
    await expect(incoming.locator("#duty-now")).to_contain_text("在岗 2：值班员徐静、值班员李娜")
    await expect(incoming.locator("#duty-now")).not_to_have_class("short")
    await expect(incoming.locator("#duty .dt-warn")).to_have_count(0)

    # something to hand over: an open smoke alarm and a maintenance window in force
    device = smoke_detector(sample_site, "c01-g1")
    await publish_smoke(system, device, "browser-duty-handover")
    await expect(outgoing.locator(f'#alarms tr[data-building="{device.building}"]')).to_be_visible(timeout=5_000)
    windows = system.backend.alarm_service.maintenance
    w = await windows.create(building_id="c01-b05", scope="building", author="duty1", reason="电梯年检", ends_ms=int(time.time() * 1000) + 2 * 3600_000)

    await open_part(outgoing, "handover")
    building = sample_site.buildings[device.building].name
    await expect(outgoing.locator("#dt-body")).to_contain_text(building)
    await outgoing.fill("#dt-notes", "1号楼烟感未复核，请跟进；5号楼电梯年检至结束")
    await outgoing.click("#dt-write")
    row = outgoing.locator("#duty .handover").first
    await expect(row).to_contain_text("待接班")
    await expect(row).to_contain_text("1号楼烟感未复核")
    await outgoing.screenshot(path=shots / "duty-02-handover-written-1280.png")
    [h] = duty_handovers(system)
    assert h.author == "duty1"
    assert [a["building"] for a in h.snapshot["open_alarms"]] == [building]
    assert [x["id"] for x in h.snapshot["windows"]] == [w.id]
    assert h.snapshot["windows"][0]["ends_local"] == windows.local(w.ends_ms), "the site's time zone"

    await open_part(incoming, "handover")
    theirs = incoming.locator(f'#duty .handover[data-id="{h.id}"]')
    await expect(theirs).to_contain_text("待接班")
    await theirs.locator(".dt-objections").fill("5号楼年检单未见")
    await incoming.screenshot(path=shots / "duty-03-handover-to-accept-360.png", full_page=True)
    await theirs.locator(".dt-accept").click()
    await expect(theirs).to_contain_text("已接班")
    await expect(theirs).to_contain_text("接班人：duty2")
    await expect(theirs).to_contain_text("5号楼年检单未见")
    await expect(theirs.locator(".dt-accept")).to_have_count(0)
    await incoming.screenshot(path=shots / "duty-04-handover-accepted-360.png", full_page=True)
    [h] = duty_handovers(system)
    assert (h.accepted_by, h.objections) == ("duty2", "5号楼年检单未见")

    # the audit part lists the shifts, the handover and its acceptance
    await open_part(incoming, "audit")
    audit = incoming.locator("#dt-audit")
    await expect(audit).to_contain_text("接班")
    await expect(audit).to_contain_text("填写交班")
    await expect(audit).to_contain_text("开始值班")
    await incoming.screenshot(path=shots / "duty-05-audit-360.png", full_page=True)
    assert errors == []


def duty_handovers(system: System) -> list[HandoverRecord]:
    """The handovers as stored in the backend's database (read by a store of our own over the same engine)."""
    return DutyStore(system.backend.db).handovers()


async def test_a_roster_override_takes_effect_on_the_next_alarm(system: System, browser: Browser, sample_site: SiteDirectory, shots: Path) -> None:
    roster = system.backend.escalation.roster
    now = int(time.time() * 1000)
    [holder] = [c.id for c in roster.fill_scope(Seat.GRID_WORKER, "c01-g1", now).contacts]
    deputy = next(s.deputy for s in sample_site.shifts if s.seat is Seat.GRID_WORKER and s.scope == "c01-g1" and s.responder == holder)
    assert deputy is not None
    holder_name, deputy_name = sample_site.responders[holder].name, sample_site.responders[deputy].name

    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, system.backend.url, "duty1")
    await open_part(page, "roster")
    await page.select_option("#dt-seat-filter", "grid_worker")
    seat = page.locator('#dt-seats .dt-row[data-scope="c01-g1"]')
    await expect(seat.locator(".holders")).to_have_text(holder_name)

    await page.select_option("#dt-kind", "sick")
    await page.select_option("#dt-responder", holder)
    await page.fill("#dt-hours", "8")
    await page.fill("#dt-reason", "发烧就医")
    await page.click("#dt-add")
    await expect(page.locator("#dt-overrides .dt-row").first).to_contain_text(f"{holder_name} 病假")
    await page.select_option("#dt-seat-filter", "grid_worker")
    await expect(seat.locator(".holders")).to_have_text(deputy_name)
    await expect(seat).to_contain_text("代班")
    await page.screenshot(path=shots / "duty-06-roster-override-1280.png")

    # the next alarm in that grid pages the deputy: no restart
    await page.click("#dt-close")
    device = smoke_detector(sample_site, "c01-g1")
    await publish_smoke(system, device, "browser-duty-override")
    row = page.locator(f'#alarms tr[data-building="{device.building}"]')
    await row.wait_for(timeout=5_000)
    [alarm] = [a for a in system.backend.alarm_service.store.list(open_only=True) if a.device_id == device.id]

    async def paged() -> bool:
        s = await system.backend.escalation.service.get(alarm.id)
        return s is not None and any(e.rung == "grid_worker" for e in s.engagements)

    await until(paged, 10, "the alarm's ladder to page the grid worker")
    engaged = (await system.backend.escalation.service.timeline(alarm.id)).engaged["grid_worker"]
    assert (engaged["contacts"], engaged["via"]) == ([deputy], "deputy")
    await row.click()
    rungs = page.locator("#rungs")
    await expect(rungs).to_contain_text(deputy_name)
    await expect(rungs).not_to_contain_text(holder_name)
    await page.evaluate("document.querySelector('#rungs').scrollIntoView()")  # the detail pane re-renders: no element handle kept
    await page.screenshot(path=shots / "duty-07-next-alarm-pages-deputy-1280.png")

    small = await browser.new_page(viewport={"width": 360, "height": 780}, locale="zh-CN")
    small.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(small, system.backend.url, "duty1")
    await open_part(small, "roster")
    await expect(small.locator("#dt-overrides .dt-row").first).to_contain_text("生效中")
    await small.screenshot(path=shots / "duty-08-roster-360.png", full_page=True)
    await small.click("#dt-close")
    await small.click("#lang")  # English on request: the panel and the header follow
    await expect(small.locator("#duty-link")).to_have_text("Duty")
    await open_part(small, "roster")
    await expect(small.locator("#dt-title")).to_have_text("Duty and handover")
    await expect(small.locator("#dt-overrides .dt-row").first).to_contain_text("in_force")
    await small.screenshot(path=shots / "duty-09-roster-english-360.png")
    assert errors == []
