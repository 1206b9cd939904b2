"""`shouwang drill run --system URL` against a running system (issue 21): its simulated responders act through the
running system's console API, every problem is printed with its reason, and a drill the system cannot serve is
refused before it starts, in one line saying why and what to do."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.settings import load_settings
from backend.sites import SiteDirectory, generate_site_document, parse_site_directory, write_site_document
from shouwang.system import System

REPO = Path(__file__).resolve().parents[2]

SHORT = """\
scenario: remote-short
title: {zh: 远程短演练, en: Short drill against a running system}
summary:
  zh: 1号楼一个烟感报警；网格员确认，值班员复核关闭。
  en: One smoke alarm in building 1; the grid worker acknowledges and the duty officer closes it.
speed: 1
run_for: 12s
seed: 5
responders:
  - {rung: grid_worker, alarms: [smoke], acknowledge: 2s..3s, close: true}
timeline:
  - {at: 0s, smoke: {building: 1, room: any}}
"""


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[System, Path]]:
    """A running system (embedded broker with its logins, backend, console API) serving a small site, no simulator."""
    site_file = tmp_path / "site.yaml"
    write_site_document(generate_site_document(1, grids=2, buildings_per_grid=3), site_file)
    sites: SiteDirectory = parse_site_directory(site_file.read_text(encoding="utf-8"), str(site_file))
    settings = load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": site_file}, broker={"embedded_port": 0})
    async with System(settings, sites) as system:
        yield system, site_file


async def _drill(system: System, site_file: Path, cwd: Path, scenario: str, *extra: str) -> tuple[int, str]:
    """`shouwang drill run` as a person types it, in its own process, against the system running in this test."""
    args = [sys.executable, "-m", "shouwang.cli", "drill", "run", scenario, "--system", system.backend.url, "--password", "test-pass",
            "--sites", str(site_file), "--report-dir", str(cwd / "report"), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")} | {"PYTHONPATH": str(REPO), "COLUMNS": "100"}
    proc = await asyncio.create_subprocess_exec(*args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _mqtt(system: System) -> str:
    return f"mqtt://{system.broker_host}:{system.broker_port}"


async def test_simulated_responders_act_through_the_running_systems_api(running: tuple[System, Path], tmp_path: Path) -> None:
    system, site_file = running
    (tmp_path / "short.yaml").write_text(SHORT, encoding="utf-8")
    assert system.access_file is not None
    code, out = await _drill(system, site_file, tmp_path, "short.yaml", "--mqtt", _mqtt(system), "--broker-access", str(system.access_file))
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    [row] = [r for r in report["alarms"] if r["type"] == "smoke"]
    assert row["drill"]
    acts = row["simulated_acts"]
    assert [a["move"] for a in acts] == ["acknowledge", "verify_close"]
    assert all(a["ok"] and a["via"] == "api" for a in acts), acts
    stored = system.backend.alarm_service.store.get(row["id"])
    assert stored is not None
    assert stored.state == "closed", "the drill's duty officer closed it on the running system"
    audit = system.backend.alarm_service.store.audit(row["id"])
    assert [e.move for e in audit if e.move in ("acknowledge", "finish", "verify_close")] == ["acknowledge", "finish", "verify_close"]
    ack = next(e for e in audit if e.move == "acknowledge")
    assert ack.actor == "admin", "the console login records it, on behalf of the grid worker (in its note)"
    assert "on behalf of" in ack.note
    assert "acknowledge" in [p["move"] for p in row["people"]], "the report reads the acknowledgement back from the system"
    assert "2 made, 0 refused" in out
    gateway_alarms = [a for a in system.backend.alarm_service.store.list(limit=100) if a.device_id is None and a.gateway_id]
    assert gateway_alarms == [], "the running system's gateways are still there: the drill leaves no offline status behind"
    for n, problem in enumerate(report["problems"], 1):  # every problem on the console with its reason, not only in report.json
        assert f"problem {n}: {problem['zh']}" in out, out
        assert problem["en"] in out, out
    for note in report["notes"]:
        assert note in out


async def test_a_scenario_whose_responders_must_arrive_is_refused_before_it_starts(running: tuple[System, Path], tmp_path: Path) -> None:
    system, site_file = running
    assert system.access_file is not None
    code, out = await _drill(system, site_file, tmp_path, "kitchen-fire", "--mqtt", _mqtt(system), "--broker-access", str(system.access_file))
    assert code == 2, out
    [line] = [ln for ln in out.splitlines() if "not started" in ln]
    assert "到场" in line
    assert "one-tap link" in line
    assert "--embedded" in line
    assert not (tmp_path / "report").exists()
    assert system.backend.alarm_service.store.list(limit=10) == [], "nothing was published: the drill never started"


async def test_a_broker_login_the_drill_lacks_is_refused_in_one_line(running: tuple[System, Path], tmp_path: Path) -> None:
    system, site_file = running
    elsewhere = tmp_path / "elsewhere"  # not beside the system's data folder (from there the drill finds var/broker-access.json)
    elsewhere.mkdir()
    (elsewhere / "short.yaml").write_text(SHORT, encoding="utf-8")
    code, out = await _drill(system, site_file, elsewhere, "short.yaml", "--mqtt", _mqtt(system))
    assert code == 1, out
    [line] = [ln for ln in out.splitlines() if "not started" in ln]
    assert "--broker-access" in line
    assert "Not authorized" in line
    assert not (elsewhere / "report").exists()
