"""HTTP hygiene of a running backend: security headers on every kind of response (console, static files, API
errors, docs, probes, one-tap pages), HSTS only behind TLS or when configured; and the API documentation
(Swagger UI, ReDoc) rendering in Chromium with every request off this machine blocked: its assets are served
by the backend itself, not by a CDN."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Browser, Route, async_playwright

from backend.server import Backend
from backend.settings import load_settings
from backend.sites import SiteDirectory
from broker.process import MosquittoProcess
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import SAMPLE_SITE
from tests.ops.test_metrics import smoke_alarm

pytestmark = [pytest.mark.mosquitto]
PAGES = ["/", "/static/console.js", "/api/alarms", "/api/docs", "/api/redoc", "/api/openapi.json", "/readyz", "/livez", "/metrics", "/r/not-a-token",
         "/no-such-page"]


async def _backend(tmp_path: Path, sites: SiteDirectory, port: int, **ops: object) -> Backend:
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE}, patrol={"enabled": False}, ops=ops)
    return Backend(settings, sites, "127.0.0.1", port)


@pytest.fixture
async def backend(tmp_path: Path, sample_site: SiteDirectory, mosquitto: MosquittoProcess) -> AsyncIterator[Backend]:
    async with await _backend(tmp_path, sample_site, mosquitto.port) as b:
        yield b


async def test_every_response_carries_the_security_headers(backend: Backend) -> None:
    async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
        for path in PAGES:
            r = await http.get(path)
            h = r.headers
            assert h.get("x-frame-options") == "DENY", path
            assert h.get("x-content-type-options") == "nosniff", path
            assert h.get("referrer-policy") == "no-referrer", path
            csp = h.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, path
            assert "object-src 'none'" in csp, path
            assert "http" not in csp, f"{path}: the policy names no outside origin"
            assert "strict-transport-security" not in h, f"{path}: no HSTS over plain HTTP"
        console = (await http.get("/")).headers["content-security-policy"]
        assert "script-src 'self';" in console, "the console runs no inline script"
        behind_tls = await http.get("/", headers={"X-Forwarded-Proto": "https"})
        assert behind_tls.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_hsts_is_sent_on_every_response_when_configured(tmp_path: Path, sample_site: SiteDirectory, mosquitto: MosquittoProcess) -> None:
    async with await _backend(tmp_path, sample_site, mosquitto.port, hsts_max_age_s=600) as b, httpx.AsyncClient(base_url=b.url) as http:
        assert (await http.get("/livez")).headers["strict-transport-security"] == "max-age=600; includeSubDomains"


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


@pytest.mark.browser
async def test_api_docs_render_with_the_internet_blocked(backend: Backend, browser: Browser) -> None:
    blocked: list[str] = []

    async def loopback_only(route: Route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1"):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    page = await browser.new_page()
    await page.route("**/*", loopback_only)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{backend.url}/api/docs")
    await page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "Shouwang" in await page.inner_text(".swagger-ui .info .title")
    assert await page.locator(".opblock").count() > 20, "Swagger UI lists the API's operations"
    await page.goto(f"{backend.url}/api/redoc")
    await page.wait_for_selector("h1:has-text('Shouwang')", timeout=20_000)
    await page.close()
    assert blocked == [], f"the docs asked for outside resources: {blocked}"
    # ReDoc's footer logo points at its CDN: the policy blocks it before it leaves (the page needs nothing else).
    assert [e for e in errors if "Content Security Policy" in e and "cdn.redoc.ly/redoc/logo" not in e] == [], errors


CSP_PROBE = "window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"


@pytest.mark.browser
async def test_the_console_works_under_its_content_security_policy(backend: Backend, browser: Browser, sample_site: SiteDirectory,
                                                                  mosquitto: MosquittoProcess) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    await page.add_init_script(CSP_PROBE)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = await page.goto(backend.url)
    assert response is not None
    assert "script-src 'self';" in response.headers["content-security-policy"], "the console is served under its policy"
    await page.fill("#username", "admin")
    await page.fill("#password", "admin-pass-2026")
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#feed-status[data-state=on]", timeout=15_000)  # the live feed (server-sent events) streams
    device = await smoke_alarm(sample_site, mosquitto.port, "csp-smoke-1")
    row = page.locator(f'#alarms tr[data-building="{sample_site.devices[device].building}"]')
    await row.wait_for(timeout=10_000)
    await row.click()
    await page.wait_for_selector("#detail", state="visible")
    await page.click('#tabs button[data-tab="map"]')
    await page.wait_for_selector("#map rect[data-building]", timeout=10_000)
    violations = await page.evaluate("window.__csp")
    await page.close()
    assert violations == [], f"the console needs something its policy forbids: {violations}"
    assert errors == []
