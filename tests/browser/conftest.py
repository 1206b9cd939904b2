"""The whole system in-process (broker, ingest, alarm service, ladder, API, console) and Debian's Chromium
driven by Playwright. Screenshots go to test-artifacts/browser/ (gitignored) for a person to look at.

`browser` lets pages play sound without a click (the board's own tests); `strict_browser` is a duty room's
browser as it really is: no sound before a click on the page, so a console that never asks for that click is
really mute. It is launched with `--autoplay-policy=user-gesture-required`, but Debian's Chromium 156 in
Playwright starts every AudioContext running whatever that switch says (measured: headless and headful on the
headless ozone platform alike), so `GESTURE_AUDIO_POLICY`, an init script, applies Chrome's rule inside the
page: a context made without a user activation (navigator.userActivation.isActive) is suspended, and resume()
without one stays pending, as Chrome does; with a click (real input events from Playwright) both work. The state
the tests read is the real AudioContext's. `AUDIO_PROBE` is an init script that watches the real
Web Audio and Notification calls of the page (contexts and their state, oscillators made and connected, nodes
connected to the speakers, notifications shown), so a test checks what the browser was asked to play, not a
counter the console keeps about itself."""

from __future__ import annotations

import contextlib
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
STRICT_AUDIO_ARGS = [a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy=")] + ["--autoplay-policy=user-gesture-required"]

AUDIO_PROBE = """
(() => {
  const probe = { contexts: [], oscillators: 0, oscillatorsConnected: 0, toSpeakers: 0, notifications: [], permissionAsked: 0 };
  Object.defineProperty(window, "__probe", { value: probe });
  const Base = window.BaseAudioContext || window.AudioContext;
  const Real = window.AudioContext;
  if (Real) {
    window.AudioContext = class extends Real { constructor(...a) { super(...a); probe.contexts.push(this); } };
    const make = Base.prototype.createOscillator;
    Base.prototype.createOscillator = function (...a) { const o = make.apply(this, a); probe.oscillators++; probeOsc.add(o); return o; };
    const probeOsc = new WeakSet();
    const connect = AudioNode.prototype.connect;
    AudioNode.prototype.connect = function (target, ...rest) {
      if (probeOsc.has(this)) probe.oscillatorsConnected++;
      if (target instanceof AudioDestinationNode) probe.toSpeakers++;
      return connect.call(this, target, ...rest);
    };
  }
  if (window.Notification) {
    const N = window.Notification;
    const W = function (title, opts) { probe.notifications.push({ title, body: opts && opts.body, tag: opts && opts.tag }); return new N(title, opts); };
    Object.defineProperty(W, "permission", { get: () => N.permission });
    W.requestPermission = (...a) => { probe.permissionAsked++; return N.requestPermission(...a); };
    W.prototype = N.prototype;
    window.Notification = W;
  }
})();
"""
GESTURE_AUDIO_POLICY = """
(() => {
  const Probed = window.AudioContext;
  if (!Probed) return;
  const allowed = () => navigator.userActivation.isActive;
  window.AudioContext = class extends Probed {
    constructor(...a) { super(...a); if (!allowed()) super.suspend(); }
    resume() { return allowed() ? super.resume() : new Promise(() => {}); }
  };
})();
"""


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, sample_site) as s:
        users = s.backend.users
        users.add("duty1", PASSWORD, "duty_officer", "值班员徐静")
        users.add("gw2", PASSWORD, "grid_worker", "第2网格网格员", "c01-g2")
        yield s


def broker_login(system: System) -> tuple[str | None, str | None]:
    """The system's service login on its broker (the embedded broker admits only its logins once issue 22 lands)."""
    return getattr(system, "broker_username", None), getattr(system, "broker_password", None)


@contextlib.asynccontextmanager
async def _chromium(args: list[str]) -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium), as the README's test command does")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with _chromium(CHROMIUM_ARGS) as b:
        yield b


@pytest.fixture
async def strict_browser() -> AsyncIterator[Browser]:
    """No sound before a click on the page, as in a real duty room's browser."""
    async with _chromium(STRICT_AUDIO_ARGS) as b:
        yield b


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    folder: Path = ARTIFACTS / str(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
