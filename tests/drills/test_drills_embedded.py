"""Every shipped scenario runs to completion against the embedded system, and its report agrees with the store.

Time is compressed so each drill takes a few wall seconds; the agreement check reads the alarm store's own
database after the run (not the runner's view): every drill alarm of the drill's window is in the report,
and each figure is the difference of the store's timestamps that it claims to be.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backend.alarms.store import AlarmStore
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from simulators.drill.scenario import load_scenario
from simulators.drill.session import run_embedded_drill

pytestmark = [pytest.mark.slow]
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
WALL_S = 6.0  # each drill's wall time in the test (compressed further than the shipped speed when needed)


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 0.0015)


def check_report_against_store(report: dict, store: AlarmStore) -> None:  # type: ignore[type-arg]
    t = report["time"]
    end_ms = t["t0_ms"] + round(report["scenario"]["run_for_s"] * 1000)
    stored_drill = {a.id for a in store.list(limit=100_000, drill=True)  # raised inside, or reported inside and raised late (a backlog)
                    if t["t0_ms"] - 1000 <= a.raised_at_ms and (a.raised_at_ms <= end_ms or a.first_seen_ms <= end_ms)}
    in_report = {a["id"] for a in report["alarms"]}
    if not report["summary"]["store_still_changing"]:  # a backlogged system may write alarms after the reading; the report says so
        assert stored_drill <= in_report, f"drill alarms missing from the report: {stored_drill - in_report}"
    else:
        assert any("still changing" in n for n in report["notes"])
    hazards = {h["step"]: h for h in report["hazards"]}
    for h in report["hazards"]:
        assert h["hazard_ms"] == t["t0_ms"] + round(h["at_s"] * 1000)
    for a in report["alarms"]:
        s = store.get(a["id"])
        assert s is not None
        assert (a["raised_at_ms"], a["first_seen_ms"], a["drill"], a["type"]) == (s.raised_at_ms, s.first_seen_ms, s.drill, s.alarm_type)
        f = a["figures"]
        assert _close(f["report_to_alarm_s"], (s.raised_at_ms - s.first_seen_ms) / 1000)
        if a["step"] is not None:
            assert a["hazard_ms"] == hazards[a["step"]]["hazard_ms"]
            assert _close(f["hazard_to_alarm_s"], (s.raised_at_ms - a["hazard_ms"]) / 1000)
        audit = store.audit(a["id"])
        ack = next((e for e in audit if e.move == "acknowledge"), None)
        arrive = next((e for e in audit if e.move == "arrive"), None)
        assert _close(f["alarm_to_ack_s"], None if ack is None else (ack.at_ms - s.raised_at_ms) / 1000)
        assert _close(f["alarm_to_on_scene_s"], None if arrive is None else (arrive.at_ms - s.raised_at_ms) / 1000)
        assert [(p["move"], p["actor"], p["at_ms"]) for p in a["people"]] == [
            (e.move, e.actor, e.at_ms) for e in audit if e.move in {"acknowledge", "depart", "arrive", "finish", "verify_close", "mark_false"}]
        for c in a["checks"]:
            assert c["ok"] == (c["value_s"] is not None and c["value_s"] <= c["limit_s"])


@pytest.mark.parametrize("name", ["kitchen-fire", "electrical-fault-overnight", "elderly-sos-no-answer", "camera-outage-power-cut",
                                  "uplink-lost-during-fire", "alarm-storm-200"])
async def test_shipped_scenario_runs_and_its_report_agrees_with_the_store(name: str, small_site: SiteDirectory, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / f"{name}.yaml", small_site)
    speed = max(sc.speed, sc.run_for_s / WALL_S)
    _run, report, paths = await run_embedded_drill(sc, small_site, tmp_path / "report", speed=speed, data_dir=tmp_path / "var")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == report
    assert report["time"]["speed"] == speed
    assert report["scenario"]["name"] == name
    assert report["alarms"], "the drill raised no alarm at all"
    assert all(a["drill"] for a in report["alarms"] if a["device_id"] is not None and a["step"] is not None)
    store = AlarmStore(make_engine(sqlite_url(tmp_path / "var" / "alarms.db")))
    check_report_against_store(report, store)
    if name == "alarm-storm-200":
        assert sum(1 for a in report["alarms"] if a["type"] == "smoke") == 200
    if name == "elderly-sos-no-answer":
        sos = [a for a in report["alarms"] if a["type"] == "sos"]
        assert len(sos) == 1
        assert not sos[0]["checks"][-1]["ok"]
        assert any("60" in p["en"] for p in report["problems"])
    if name == "kitchen-fire":
        assert {a["type"] for a in report["alarms"]} >= {"smoke", "gateway_offline"}
        assert all(h["expected_alarm_raised"] for h in report["hazards"] if h["action"] == "smoke")


@pytest.mark.browser
async def test_the_report_opens_in_a_browser(small_site: SiteDirectory, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / "kitchen-fire.yaml", small_site)
    _, _, paths = await run_embedded_drill(sc, small_site, tmp_path / "report", speed=sc.run_for_s / WALL_S, data_dir=tmp_path / "var")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1280,2400",
                           paths["html"].as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    assert shot.stat().st_size > 50_000  # a rendered page with two charts, not a blank one
    html = paths["html"].read_text(encoding="utf-8")
    assert 'src="timeline.png"' in html
    assert 'src="latency.png"' in html
