"""The duty console says when the alarm path itself is down: the alarm database stopped under a running backend
shows a red strip in Chinese naming it (alarms wait in the journal, nothing lost), and the strip goes when the
database is back. Real PostgreSQL (its own server, stopped and started by the test), real Mosquitto, Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from backend.server import Backend
from backend.settings import load_settings
from backend.sites import SiteDirectory
from backend.store.pg_local import LocalPostgres
from broker.process import MosquittoProcess
from tests.browser.conftest import PASSWORD
from tests.conftest import SAMPLE_SITE

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.slow]


@pytest.fixture
def own_postgres(tmp_path: Path) -> Any:
    with LocalPostgres(tmp_path / "pg") as pg:
        yield pg


@pytest.fixture
async def backend(tmp_path: Path, sample_site: SiteDirectory, own_postgres: LocalPostgres, mosquitto: MosquittoProcess) -> AsyncIterator[Backend]:
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"},
                             storage={"data_dir": tmp_path / "var", "alarm_db_url": own_postgres.url},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE}, patrol={"enabled": False})
    async with Backend(settings, sample_site, "127.0.0.1", mosquitto.port) as b:
        b.users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        yield b


async def test_the_console_shows_the_alarm_database_down_and_back(backend: Backend, own_postgres: LocalPostgres, browser: Browser, shots: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(backend.url + "/")
    await page.fill("#username", "duty1")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#board")).to_be_visible(timeout=15_000)
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
