"""The whole system in-process (broker, ingest, alarm service, ladder, API, console) and Debian's Chromium
driven by Playwright. Screenshots go to test-artifacts/browser/ (gitignored) for a person to look at."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from backend.settings import load_settings
from backend.sites import SiteDirectory
from shouwang.system import System
from tests.conftest import REPO, SAMPLE_SITE

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "browser"
PASSWORD = "duty-pass-2026"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--lang=zh-CN"]


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, sample_site) as s:
        users = s.backend.users
        users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        users.add("gw2", PASSWORD, "grid_worker", "第2网格网格员", "c01-g2")
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium), as the README's test command does")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    folder: Path = ARTIFACTS / str(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
