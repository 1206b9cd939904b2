"""Scenario files: the shipped ones resolve; places that do not exist are errors with file and line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from backend.sites import SiteDirectory
from simulators.drill.scenario import Delay, ScenarioError, load_scenario, parse_duration, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))


def test_six_scenarios_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} == {"kitchen-fire", "electrical-fault-overnight", "elderly-sos-no-answer", "camera-outage-power-cut",
                                         "uplink-lost-during-fire", "alarm-storm-200", "elderly-sos-callback"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_resolve_in_the_small_site_and_the_sample_community(path: Path, small_site: SiteDirectory,
                                                                                sample_site: SiteDirectory) -> None:
    for sites in (small_site, sample_site):
        sc = load_scenario(path, sites)
        assert sc.steps
        assert sc.run_for_s >= sc.steps[-1].at_s
        for step in sc.steps:
            assert all(d in sites.devices for d in step.devices)


def test_the_issue_timeline_resolves_to_the_devices_it_names(small_site: SiteDirectory) -> None:
    sc = load_scenario(SCENARIOS / "kitchen-fire.yaml", small_site)
    s = {step.index: step for step in sc.steps}
    assert s[0].devices == ("c01-b03-2-501-smoke",)
    assert s[1].devices == ("c01-b03-u2-f8-smoke",)
    assert s[2].devices == ("c01-b03-u2-box",)
    assert (s[3].gateway, s[3].duration_s) == ("c01-gw-b02", 300.0)
    assert [step.at_s for step in sc.steps] == [0, 20, 40, 60]


@pytest.mark.parametrize(("line", "step", "message"), [
    (5, '{at: 0s, smoke: {building: 9, unit: 2, room: "501"}}', "no building 9"),
    (5, '{at: 0s, smoke: {building: 3, unit: 7, room: "501"}}', "units 1..2"),
    (5, '{at: 0s, smoke: {building: 3, unit: 2, room: "1601"}}', "no room '1601'"),
    (5, '{at: 0s, sos: {building: 3, unit: 2, room: "501"}}', "has no sos device"),
    (5, '{at: 0s, smoke: {device: nope}}', "no device 'nope'"),
    (5, '{at: 0s, uplink_cut: {gateway: 42, for: 5m}}', "no gateway 42"),
    (5, '{at: soon, smoke: {building: 3, unit: 2, room: "501"}}', "not a duration"),
    (5, '{at: 0s, flood: {building: 3}}', "unknown key"),
    (5, '{at: 0s, smoke: {building: 3, unit: 2}}', "name a room"),
])
def test_a_place_that_does_not_exist_names_the_file_and_line(small_site: SiteDirectory, line: int, step: str, message: str) -> None:
    text = f"scenario: broken\nrun_for: 5m\ntimeline:\n  - {{at: 0s, smoke: {{building: 3, unit: 2, room: \"501\"}}}}\n  - {step}\n"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, small_site, "broken.yaml")
    assert err.value.line == line
    assert message in str(err.value)
    assert "broken.yaml:5:" in str(err.value)


def test_durations_and_delays() -> None:
    assert [parse_duration(x) for x in (20, "20s", "5m", "1m30s", "1h", "250ms")] == [20, 20, 300, 90, 3600, 0.25]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 minutes")
    rng = random.Random(1)
    assert Delay.parse("20s").draw(rng) == 20
    assert all(10 <= Delay.parse("10s..30s").draw(rng) <= 30 for _ in range(100))
    assert all(Delay.parse("5s±10s").draw(rng) >= 0 for _ in range(100))
