"""Which alarms are the drill's (simulators/drill/report.py): a drill alarm whose device report came inside the drill is
in the report even when a backlogged system raised it after the drill ended (with its display check failed), so the
report says "late", never "no alarm"; what the simulator's shutdown causes after the end is not the drill's."""

from __future__ import annotations

from pathlib import Path

from backend.alarms.store import AlarmRecord
from backend.sites import SiteDirectory
from simulators.drill.report import build_report
from simulators.drill.runner import DrillRun
from simulators.drill.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
T0_MS = 1_796_536_800_000


def _alarm(id_: str, alarm_type: str, *, drill: bool, first_s: float, raised_s: float, device: str | None = "c01-b05-u1-box",
           gateway: str | None = None) -> AlarmRecord:
    first, raised = T0_MS + round(first_s * 1000), T0_MS + round(raised_s * 1000)
    return AlarmRecord(id=id_, key=f"{alarm_type}:{device or gateway}", alarm_type=alarm_type, severity="major", state="notified", title="t",
                       life_safety=False, device_id=device, gateway_id=gateway, building_id="c01-b05", unit=1, household_id=None,
                       grid_id=None, community_id="c01", drill=drill, occurrences=1, first_seen_ms=first, last_seen_ms=first,
                       raised_at_ms=raised, updated_ms=raised, needs_callback=False, flapping=False, silenced_until_ms=None,
                       silenced_by=None, cause=None, detail=None, is_open=True)


def test_a_late_drill_alarm_is_reported_late_not_missing(small_site: SiteDirectory) -> None:
    sc = load_scenario(SCENARIOS / "electrical-fault-overnight.yaml", small_site)  # run_for 20 min, steps at 0 s and 10 min
    end_s = sc.run_for_s
    alarms = [
        _alarm("A1", "electrical", drill=True, first_s=736, raised_s=end_s + 294),  # reported inside, raised 758 s late
        _alarm("A2", "cable_temperature", drill=True, first_s=end_s + 5, raised_s=end_s + 6),  # reported after the end
        _alarm("A3", "gateway_offline", drill=False, first_s=end_s + 10, raised_s=end_s + 10, device=None, gateway="c01-gw-b05"),
    ]
    run = DrillRun(sc, 200.0, "test", T0_MS, T0_MS + round((end_s + 400) * 1000), 0.0, 8.0,
                   {s.index: T0_MS + round(s.at_s * 1000) for s in sc.steps}, alarms, {}, {}, [], False, 100)
    report = build_report(run, small_site)
    assert [a["id"] for a in report["alarms"]] == ["A1"]
    late = report["alarms"][0]
    assert late["figures"]["report_to_alarm_s"] == 758.0
    display = next(c for c in late["checks"] if c["target"] == "display")
    assert display["value_s"] == 758.0
    assert not display["ok"]
    assert late["step"] == 1  # the cable heating (10 min) came before its report
    assert report["hazards"][1]["expected_alarm_raised"]
    assert report["hazards"][1]["alarms"] == ["A1"]
