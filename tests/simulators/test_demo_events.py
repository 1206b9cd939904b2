"""The sample community shows a newcomer the system at work (issue 21): within the first simulated minutes a
residual-current pre-warning, a camera offline and back, a smoke detector's low battery; a demo smoke alarm
(drill-marked, 演示) only when asked for; nothing of it with `simulate.demo_events = false`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.settings import load_settings
from backend.sites import SiteDirectory, generate_site_document, parse_site_directory, write_site_document
from broker.kinds import AvailabilityState, EventKind
from shouwang.system import System
from simulators.fleet import Fleet
from simulators.live import DEMO_SMOKE_DETAIL, DemoEvents, DemoRounds
from simulators.signals import SimulationProfile
from tests.simulators.helpers import START, events, run
from tests.waiting import until

REPO = Path(__file__).resolve().parents[2]
SPEED = 40.0  # simulated seconds per wall second in the system tests: the first 7 minutes take about 10 s
FIRST_MINUTES_S = 7 * 60.0


def test_a_demo_round_on_simulated_time(sample_site: SiteDirectory) -> None:
    fleet = Fleet(sample_site, seed=7, start=START, profile=SimulationProfile.quiet())
    rounds = DemoRounds(DemoEvents(), fleet, fleet.gateways, seed=7)
    rounds.inject_due(fleet.t)
    steps = run(fleet, FIRST_MINUTES_S, step_s=10.0)
    got = events(steps)
    kinds = {e.event for e in got}
    assert EventKind.LOW_BATTERY in kinds
    assert EventKind.ELECTRICAL_ALARM in kinds, "the leakage rises past 300 mA"
    assert EventKind.ELECTRICAL_CLEAR in kinds, "then an electrician repairs it"
    alarm = next(e for e in got if e.event is EventKind.ELECTRICAL_ALARM)
    assert 300 <= (alarm.value or 0) < 500, "a pre-warning, never the critical level"
    assert sample_site.devices[alarm.device].household is None, "a unit's distribution box (one circuit), reporting each minute"
    avail = [(a.device, a.state) for s in steps for a in s.availability]
    cam = rounds.cameras[0]
    assert avail == [(cam, AvailabilityState.OFFLINE), (cam, AvailabilityState.ONLINE)]
    assert EventKind.SMOKE_ALARM not in kinds, "no smoke alarm unless asked for"
    assert not any(e.drill for e in got)
    # the next round comes every_s later, on other devices
    rounds.inject_due(fleet.t + DemoEvents().every_s)
    assert rounds.rounds == 2


def test_the_demo_smoke_alarm_is_drill_marked_and_says_so(sample_site: SiteDirectory) -> None:
    fleet = Fleet(sample_site, seed=7, start=START, profile=SimulationProfile.quiet())
    DemoRounds(DemoEvents(smoke=True), fleet, fleet.gateways, seed=7).inject_due(fleet.t)
    got = events(run(fleet, FIRST_MINUTES_S, step_s=10.0))
    [smoke] = [e for e in got if e.event is EventKind.SMOKE_ALARM]
    assert smoke.drill
    assert "演示" in (smoke.detail or "")
    assert [e.event for e in got if e.device == smoke.device] == [EventKind.SMOKE_ALARM, EventKind.SMOKE_CLEAR]


@pytest.fixture(scope="module")
def small_site_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SiteDirectory]:
    path = tmp_path_factory.mktemp("site") / "small.yaml"
    write_site_document(generate_site_document(1, grids=1, buildings_per_grid=2), path)
    return path, parse_site_directory(path.read_text(encoding="utf-8"), str(path))


async def _system(tmp_path: Path, site: tuple[Path, SiteDirectory], **simulate: Any) -> AsyncIterator[tuple[System, httpx.AsyncClient]]:
    settings = load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": True, "site_file": site[0], "speed": SPEED, **simulate})
    async with System(settings, site[1]) as s, httpx.AsyncClient(base_url=s.backend.url) as http:
        token = (await http.post("/api/login", json={"username": "admin", "password": "test-pass"})).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield s, http


async def _board(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await http.get("/api/alarms", params={"limit": 1000})).json()["alarms"]
    return [a for a in rows if a["alarm_type"] != "clock_skew"]  # the simulator runs ahead of the backend's wall clock here


@pytest.fixture
async def demo_system(tmp_path: Path, small_site_file: tuple[Path, SiteDirectory],
                      request: pytest.FixtureRequest) -> AsyncIterator[tuple[System, httpx.AsyncClient]]:
    async for pair in _system(tmp_path, small_site_file, **request.param):
        yield pair


@pytest.mark.parametrize("demo_system", [{}], indirect=True)
async def test_the_console_shows_a_pre_warning_a_camera_drop_and_a_low_battery_within_minutes(demo_system: tuple[System, httpx.AsyncClient]) -> None:
    system, http = demo_system
    sim = system.simulator
    started = sim.fleet.t

    last: list[dict[str, Any]] = []

    async def seen() -> dict[str, dict[str, Any]] | None:
        rows = last[:] = await _board(http)
        got = {a["alarm_type"]: a for a in rows}
        camera_back = any(a["alarm_type"] == "comm_lost" and a["state"] == "closed" for a in rows)
        return got if {"low_battery", "comm_lost"} <= got.keys() and {"electrical", "residual_current"} & got.keys() and camera_back else None

    try:
        got = await until(seen, FIRST_MINUTES_S / SPEED + 30, "a pre-warning, a camera offline and back, a low battery on the console")
    except AssertionError as exc:
        board = [(a["alarm_type"], a["state"], a["device_id"]) for a in last]
        raise AssertionError(f"{exc}; simulated {sim.clock.now_ms() / 1000 - started:.0f} s (lag {sim.stats.lag_s:.0f} s); board {board}") from None
    assert sim.clock.now_ms() / 1000 - started <= FIRST_MINUTES_S + 20 * SPEED
    pre = got.get("electrical") or got["residual_current"]
    assert pre["severity"] == "major"
    assert system.sites.devices[pre["device_id"]].kind == "electrical"
    assert system.sites.devices[got["comm_lost"]["device_id"]].kind == "camera"
    assert system.sites.devices[got["low_battery"]["device_id"]].kind == "smoke"
    assert not any(a["alarm_type"] in ("smoke", "confirmed_fire") for a in await _board(http)), "no smoke alarm unless asked for"


@pytest.mark.parametrize("demo_system", [{"demo_smoke": True}], indirect=True)
async def test_the_demo_smoke_alarm_only_on_request_and_marked_as_a_drill(demo_system: tuple[System, httpx.AsyncClient]) -> None:
    system, http = demo_system

    async def smoke() -> dict[str, Any] | None:
        return next((a for a in await _board(http) if a["alarm_type"] == "smoke"), None)

    alarm = await until(smoke, (DemoEvents().smoke_at_s + 60) / SPEED + 20, "the demo smoke alarm")
    assert alarm["drill"] is True, "the console shows it as a drill: drill notices never reach outside channels"
    assert alarm["detail"] == DEMO_SMOKE_DETAIL
    assert "演示" in alarm["detail"]
    esc = system.backend.escalation
    receipts = await until(lambda: esc.receipts.for_alarm(alarm["id"]) or None, 10, "the demo smoke's notices")
    assert all(r.drill for r in receipts), receipts
    outside = {kind for kind, channel in esc.service.dispatcher.channels.items() if channel.outside}
    assert not [r for r in receipts if r.channel in outside and r.status == "delivered"], receipts


@pytest.mark.parametrize("demo_system", [{"demo_events": False}], indirect=True)
async def test_demo_events_switched_off_leave_the_board_to_real_happenings(demo_system: tuple[System, httpx.AsyncClient]) -> None:
    system, http = demo_system
    sim = system.simulator
    end = sim.fleet.t + FIRST_MINUTES_S
    await until(lambda: sim.stats.sim_time >= end, FIRST_MINUTES_S / SPEED + 20, "seven simulated minutes")
    await sim.drained()
    rows = await _board(http)
    assert not [a for a in rows if a["alarm_type"] in ("low_battery", "electrical", "residual_current", "smoke")], rows


async def test_shouwang_run_with_demo_smoke_shows_it_on_the_console(tmp_path: Path, small_site_file: tuple[Path, SiteDirectory]) -> None:
    """The newcomer's command itself: `shouwang run --demo-smoke` (speed from the environment, as settings allow)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")} | {
        "PYTHONPATH": str(REPO), "SHOUWANG_SIMULATE__SPEED": str(SPEED), "SHOUWANG_BROKER__EMBEDDED_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shouwang.cli", "run", "--port", "0", "--data-dir", str(tmp_path / "var"), "--sites", str(small_site_file[0]),
        "--demo-smoke", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        info: dict[str, str] = {}
        async with asyncio.timeout(60):
            while "password" not in info:
                line = (await proc.stdout.readline()).decode()
                assert line, "shouwang run exited early:\n" + "".join(lines)
                lines.append(line)
                if m := re.search(r"console:\s+(http://\S+)/", line):
                    info["url"] = m.group(1)
                if m := re.search(r"login:\s+(\S+)\s+password (\S+)", line):
                    info["user"], info["password"] = m.group(1), m.group(2)
        async with httpx.AsyncClient(base_url=info["url"]) as http:
            token = (await http.post("/api/login", json={"username": info["user"], "password": info["password"]})).json()["token"]
            http.headers["Authorization"] = f"Bearer {token}"

            async def smoke() -> dict[str, Any] | None:
                return next((a for a in await _board(http) if a["alarm_type"] == "smoke"), None)

            alarm = await until(smoke, (DemoEvents().smoke_at_s + 60) / SPEED + 30, "the demo smoke alarm of `shouwang run --demo-smoke`")
        assert alarm["drill"] is True
        assert "演示" in alarm["detail"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(30):
                await proc.communicate()
