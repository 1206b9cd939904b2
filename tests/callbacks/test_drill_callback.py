"""The SOS call-back drill (scenarios/elderly-sos-callback.yaml) against the embedded system: the simulated grid
worker records 无人接听 on the call-back and the ladder pages the family at once, long before any deadline.

Time is compressed (the drill's clock is scaled); what is checked is read from the stores after the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.alarms.store import AlarmStore
from backend.escalation import EscalationStore, load_policies
from backend.sites import SiteDirectory, generate_site_document
from backend.sites.loader import parse_site_directory
from backend.store.db import make_engine, sqlite_url
from simulators.drill.scenario import ScenarioError, load_scenario, parse_scenario
from simulators.drill.session import run_embedded_drill

pytestmark = [pytest.mark.slow]
SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "elderly-sos-callback.yaml"
WALL_S = 6.0


@pytest.fixture(scope="module")
def small_site() -> SiteDirectory:
    return parse_site_directory(json.dumps(generate_site_document(1, grids=2, buildings_per_grid=3), ensure_ascii=False), "small-site")


async def test_a_no_answer_call_back_climbs_to_the_family_at_once(small_site: SiteDirectory, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIO, small_site)
    assert sc.responders[0].callback is not None
    speed = max(sc.speed, sc.run_for_s / WALL_S)
    run, report, _paths = await run_embedded_drill(sc, small_site, tmp_path / "report", speed=speed, data_dir=tmp_path / "var")
    [sos] = [a for a in report["alarms"] if a["type"] == "sos"]
    [act] = [a for a in run.acts if a.move == "callback:no_answer"]
    assert act.ok, act.refused
    engine = make_engine(sqlite_url(tmp_path / "var" / "alarms.db"))
    log = EscalationStore(engine, load_policies()).log(sos["id"])
    outcome = next(e for e in log if e.kind == "callback_outcome")
    assert outcome.detail is not None
    assert outcome.detail.startswith("c01-g1-w1: no_answer")  # who (the grid worker), what; when is at_ms
    family = [e for e in log if e.kind == "notify" and e.detail == "callback_failed" and (e.contact or "").startswith(("family:", "neighbour:"))]
    assert family, [(e.kind, e.contact, e.detail) for e in log]
    assert all(e.at_ms == outcome.at_ms for e in family)  # paged in the same step as the outcome: at once
    assert outcome.at_ms - sos["raised_at_ms"] < 60_000  # before the call-back's own deadline would have climbed
    assert not any(e.kind == "callback_expired" for e in log)
    audit = AlarmStore(engine).audit(sos["id"])
    assert any(e.move == "acknowledge" and e.actor.startswith("family:") for e in audit)  # the family answered
    engine.dispose()


def test_a_call_back_outcome_that_does_not_exist_names_the_line(small_site: SiteDirectory) -> None:
    text = ("scenario: broken\nrun_for: 5m\nresponders:\n  - {rung: grid_worker, callback: {outcome: maybe}}\n"
            "timeline:\n  - {at: 0s, sos: {building: 1, room: any}}\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml:4:.*callback is"):
        parse_scenario(text, small_site, "broken.yaml")
