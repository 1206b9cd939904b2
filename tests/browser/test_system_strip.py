"""The duty console says when the alarm path itself is down: the alarm database stopped under a running backend
shows a red strip in Chinese naming it (alarms wait in the journal, nothing lost), and the strip goes when the
database is back; an alarm file whose sync to the disk fails says so too. Real PostgreSQL (its own server, stopped
and started by the test), real Mosquitto, Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from backend.server import Backend
from backend.settings import load_settings
from backend.sites import SiteDirectory
from backend.store.pg_local import LocalPostgres
from broker.process import MosquittoProcess
from tests.browser.conftest import PASSWORD
from tests.conftest import SAMPLE_SITE
from tests.ops.test_metrics import smoke_alarm
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.slow]


@pytest.fixture
def backend(backend_on_own_postgres: Backend) -> Backend:
    """A backend on its own PostgreSQL (tests/conftest.py), with a duty officer's login."""
    backend_on_own_postgres.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
    return backend_on_own_postgres


async def _console(browser: Browser, backend: Backend) -> Page:
    """The duty console, logged in as the duty officer, its board shown."""
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(backend.url + "/")
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#board")).to_be_visible(timeout=15_000)
    return page


async def test_the_console_shows_the_alarm_database_down_and_back(backend: Backend, own_postgres: LocalPostgres, browser: Browser, shots: Path) -> None:
    page = await _console(browser, backend)
    await expect(page.locator("#system-strip")).to_have_count(0)
    own_postgres.stop()
    try:
        strip = page.locator("#system-strip")
        await expect(strip).to_be_visible(timeout=20_000)
        await expect(strip).to_have_attribute("role", "alert")
        await expect(strip.locator("[data-check=database]")).to_contain_text("告警数据库无法连接")
        await expect(strip).to_contain_text("不会丢失")
        await page.screenshot(path=str(shots / "database-down.png"))
    finally:
        own_postgres.start()
    await expect(page.locator("#system-strip")).to_have_count(0, timeout=30_000)


async def test_a_console_act_while_the_alarm_database_is_down_is_refused_plainly_and_works_after(
    backend: Backend, own_postgres: LocalPostgres, mosquitto: MosquittoProcess,
) -> None:
    """Not a 500 with nothing said: 503, Retry-After, a sentence in Chinese that says the act was not recorded."""
    smoke = await smoke_alarm(backend.sites, mosquitto.port, "strip-act-smoke-1")
    alarm = await until(lambda: next((a for a in backend.alarm_service.store.open_alarms() if a.place.device == smoke), None), 30, "the smoke alarm")
    async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
        token = (await http.post("/api/login", json={"username": "duty1", "password": PASSWORD})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        own_postgres.stop()
        try:
            r = await http.post(f"/api/alarms/{alarm.id}/acknowledge", json={"note": "已电话核实"}, headers=auth)
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "5"
            assert "数据库暂时不可用" in r.json()["detail"], r.json()  # the login check meets the same PostgreSQL first
        finally:
            own_postgres.start()
        ok = await until(lambda: _acknowledged(http, alarm.id, auth), 60, "the acknowledgement once the database is back")
        assert ok


async def _acknowledged(http: httpx.AsyncClient, alarm_id: str, auth: dict[str, str]) -> bool | None:
    r = await http.post(f"/api/alarms/{alarm_id}/acknowledge", json={"note": "已电话核实"}, headers=auth)
    return True if r.status_code == 200 else None


@pytest.fixture
async def embedded(tmp_path: Path, sample_site: SiteDirectory, mosquitto: MosquittoProcess) -> AsyncIterator[Backend]:
    """A backend on its embedded SQLite alarm file, with a duty officer's login."""
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE}, patrol={"enabled": False})
    async with Backend(settings, sample_site, "127.0.0.1", mosquitto.port) as b:
        b.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        yield b


async def test_the_console_shows_the_alarm_file_not_reaching_the_disk_until_a_sync_works(
    embedded: Backend, mosquitto: MosquittoProcess, browser: Browser, shots: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk refuses the alarm file's sync (EIO, injected at the store's sync: no disk here fails on request): the smoke
    alarm is raised and shown all the same, the strip names the disk, and it goes once the next alarm's sync works."""
    store = embedded.alarm_service.store
    real_sync = store.sync

    def failing_sync() -> None:
        raise OSError(5, "Input/output error")

    page = await _console(browser, embedded)
    monkeypatch.setattr(store, "sync", failing_sync)
    await smoke_alarm(embedded.sites, mosquitto.port, "disk-smoke-1")
    strip = page.locator("#system-strip")
    await expect(strip).to_be_visible(timeout=20_000)
    await expect(strip.locator("[data-check=alarm_disk]")).to_contain_text("告警数据未能落盘")
    await expect(strip).to_contain_text("检查服务器磁盘")
    await expect(page.locator("#board")).to_contain_text("烟感")  # raised and shown all the same
    await page.screenshot(path=str(shots / "alarm-disk-failing.png"))
    monkeypatch.setattr(store, "sync", real_sync)
    await smoke_alarm(embedded.sites, mosquitto.port, "disk-smoke-2")
    await expect(page.locator("#system-strip")).to_have_count(0, timeout=20_000)
