"""A drill's simulated uplink cut (scenario uplink-lost-during-fire) is the drill's (issue 15, item 6): every alarm
the drill causes carries the drill mark, none is real, and device health counts no drill outage as real. Today the
cut's Last Will raised a real, unflagged gateway_offline and device health counted the gateway's devices offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.alarms.store import AlarmStore
from backend.api.console_views import device_health
from backend.sites import SiteDirectory, parse_site_directory
from backend.sites.generator import generate_site_document
from backend.store.db import make_engine, sqlite_url
from simulators.drill.scenario import load_scenario
from simulators.drill.session import run_embedded_drill

pytestmark = [pytest.mark.slow]
SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "uplink-lost-during-fire.yaml"
WALL_S = 6.0


@pytest.fixture
def small_site() -> SiteDirectory:
    return parse_site_directory(json.dumps(generate_site_document(1, grids=2, buildings_per_grid=3), ensure_ascii=False), "small-site")


async def test_a_drills_uplink_cut_raises_only_drill_alarms_and_no_real_outage(small_site: SiteDirectory, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIO, small_site)
    [cut_step] = [s for s in sc.steps if s.action == "uplink_cut"]
    run, report, _ = await run_embedded_drill(sc, small_site, tmp_path / "report", speed=max(sc.speed, sc.run_for_s / WALL_S),
                                              data_dir=tmp_path / "var")
    store = AlarmStore(make_engine(sqlite_url(tmp_path / "var" / "alarms.db")))
    every = store.list(limit=100_000)
    end_ms = run.t0_ms + round(sc.run_for_s * 1000)
    during = [a for a in every if run.t0_ms - 1000 <= a.raised_at_ms <= end_ms]
    cut = [a for a in during if a.alarm_type == "gateway_offline" and a.gateway_id == cut_step.gateway]
    assert cut, f"the cut of {cut_step.gateway} raised no gateway_offline: {[(a.alarm_type, a.gateway_id) for a in during]}"
    assert all(a.drill for a in cut), "the drill's uplink cut raised a real gateway_offline"
    # The embedded target is a fresh system whose devices speak only drill traffic, so none of them is ever heard for
    # real: past its absence window each gateway's info notice "not yet commissioned" is a true statement about the
    # real devices, not something the drill caused (a drill never commissions a device). Anything else real is.
    real = [(a.alarm_type, a.gateway_id, a.device_id) for a in during if not a.drill and a.alarm_type != "devices_uncommissioned"]
    assert real == [], f"the drill caused real alarms: {real}"
    assert not [p for p in report["problems"] if p.get("kind") == "not-drill-gateway"]
    health = device_health(store.list(open_only=True, limit=100_000), small_site)
    assert health.offline == {}, "device health counts a drill's outage as real"
