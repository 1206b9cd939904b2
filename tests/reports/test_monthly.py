"""The monthly report's figures on a hand-built November 2026 (Beijing time) whose answers are worked out by hand below."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from backend.reports.monthly import LadderEvent, MonthInput, ReportAlarm, monthly_report, percentile
from backend.reports.query import month_bounds

BJ = ZoneInfo("Asia/Shanghai")
S = 1000
H = 3600 * S
DAY = 24 * H


def at(day: int, hour: int = 0, minute: int = 0) -> int:
    """November 2026, Beijing time."""
    return int(datetime(2026, 11, day, hour, minute, tzinfo=BJ).timestamp() * 1000)


START, END = month_bounds("2026-11", BJ)
CLOSED = ((60, "verify_close", "closed"),)
FALSE = ((60, "mark_false", "false_alarm"),)


def alarm(i: str, kind: str, device: str, raised: int, path: tuple[tuple[int, str, str], ...] = (), *, drill: bool = False, gw: str = "g1",
          building: str = "b1", occurrences: int = 1) -> ReportAlarm:
    moves = tuple((raised + s * S, m, to) for s, m, to in path)
    return ReportAlarm(i, kind, "major", device, gw, building, drill, raised, moves[-1][0] if moves else raised, not path or path[-1][2] not in
                       ("closed", "false_alarm", "archived"), occurrences, f"{kind} · 1号楼", moves)


ALARMS = [
    alarm("s1", "smoke", "D1", at(3, 10), CLOSED),
    alarm("s2", "smoke", "D2", at(4, 10), FALSE),
    alarm("s3", "smoke", "D2", at(8, 22), FALSE),
    alarm("s4", "smoke", "D3", at(9, 1), FALSE),
    alarm("s5", "smoke", "D3", at(10, 1), CLOSED),
    alarm("p1", "sos", "P1", at(11, 9), ((400, "verify_close", "closed"),)),  # answered on the ladder at 30 s
    alarm("p2", "sos", "P2", at(12, 9), ((50, "acknowledge", "acknowledged"), (400, "verify_close", "closed"))),  # by the lifecycle at 50 s
    alarm("p3", "sos", "P3", at(13, 9), ((400, "verify_close", "closed"),)),  # on the ladder at 100 s
    alarm("p4", "sos", "P4", at(14, 9)),  # never answered, still open
    alarm("c1", "comm_lost", "C1", at(2), ((12 * 3600, "resolve", "closed"),)),  # camera C1 down 12 h
    alarm("c2", "comm_lost", "C2", int(datetime(2026, 10, 20, tzinfo=BJ).timestamp() * 1000)),  # C2 down since October, still
    alarm("d1", "smoke", "D1", at(5, 10), drill=True), alarm("d2", "sos", "P1", at(5, 10, 20), drill=True),  # drill 1 (one session)
    alarm("d3", "smoke", "D1", at(20, 15), drill=True),  # drill 2
    alarm("d4", "sos", "P1", at(25, 15), drill=True),  # a drill, but no fire alarm in it
    alarm("m1", "patrol_missed", "", at(16, 3), ((2 * 3600, "resolve", "closed"),), gw="G7", occurrences=3),
    alarm("x1", "smoke", "D9", at(1) - S),  # 31 October 23:59:59 Beijing: not November's
]
LADDER = [
    # as the ladder logs answers now: `observed`, with the field state reached (alerting.ladder.engine.observe)
    LadderEvent("s1", "paged", "fire_station", at(3, 10)),
    LadderEvent("s1", "observed", "fire_station", at(3, 10) + 40 * S, "m1: acknowledge", "acknowledged"),
    LadderEvent("s1", "observed", "fire_station", at(3, 10) + 150 * S, "m1: arrive", "on_scene"),
    LadderEvent("s1", "paged", "grid_worker", at(3, 10)), LadderEvent("s1", "response", "grid_worker", at(3, 10) + 20 * S, "gw: acknowledge"),
    # as logs written before issue 16 hold them: `response` notes
    LadderEvent("s5", "paged", "fire_station", at(10, 1)), LadderEvent("s5", "response", "fire_station", at(10, 1) + 60 * S, "m2: en_route"),
    LadderEvent("s5", "response", "fire_station", at(10, 1) + 240 * S, "m2: on_scene"),
    LadderEvent("s2", "paged", "fire_station", at(4, 10)),  # never answered: declined
    LadderEvent("s2", "response", "fire_station", at(4, 10) + 30 * S, "m3: decline (在外地)"),
    LadderEvent("p1", "paged", "grid_worker", at(11, 9)),
    LadderEvent("p1", "observed", "grid_worker", at(11, 9) + 30 * S, "gw: acknowledge", "acknowledged"),
    LadderEvent("p3", "paged", "grid_worker", at(13, 9)), LadderEvent("p3", "response", "grid_worker", at(13, 9) + 100 * S, "gw: acknowledge"),
    LadderEvent("d1", "paged", "fire_station", at(5, 10)), LadderEvent("d1", "response", "fire_station", at(5, 10) + 999 * S, "m: on_scene"),
]
CAMERAS = [("C1", "g1", "b1"), ("C2", "g1", "b1"), ("C3", "g1", "b1"), ("C4", "g2", "b2")]


@pytest.fixture
def report() -> dict[str, object]:
    inp = MonthInput("c01", "幸福里社区", "2026-11", START, END, at(1) + 40 * DAY, ALARMS, LADDER, CAMERAS, 20, {"fire_station": "微型消防站"})
    return monthly_report(inp)


def test_november_is_counted_in_beijing_time() -> None:
    assert datetime.fromtimestamp(START / 1000, BJ).isoformat() == "2026-11-01T00:00:00+08:00"
    assert END - START == 30 * DAY
    assert month_bounds("2026-12", BJ)[1] == int(datetime(2027, 1, 1, tzinfo=BJ).timestamp() * 1000)


def test_alarms_by_type_and_outcome(report: dict) -> None:  # type: ignore[type-arg]
    assert report["totals"] == {"real": 11, "drill": 4, "life_safety_types": 9, "closed": 5, "false_alarm": 3, "resolved": 2, "open": 1,
                                "other": 0}  # x1 is October's; c2 was raised in October
    by = {r["alarm_type"]: r for r in report["by_type"]}
    assert (by["smoke"]["total"], by["smoke"]["closed"], by["smoke"]["false_alarm"]) == (5, 2, 3)
    assert (by["sos"]["total"], by["sos"]["closed"], by["sos"]["open"]) == (4, 3, 1)
    assert (by["comm_lost"]["total"], by["comm_lost"]["resolved"]) == (1, 1)


def test_false_alarm_rate_per_device_flags_the_one_over_the_rule(report: dict) -> None:  # type: ignore[type-arg]
    rows = {r["device_id"]: r for r in report["false_alarm_devices"]}
    assert set(rows) == {"D2", "D3"}
    assert (rows["D2"]["alarms"], rows["D2"]["false_alarms"], rows["D2"]["rate"], rows["D2"]["flagged"]) == (2, 2, 1.0, True)
    assert (rows["D3"]["alarms"], rows["D3"]["false_alarms"], rows["D3"]["rate"], rows["D3"]["flagged"]) == (2, 1, 0.5, False)  # one is no pattern
    assert report["false_alarm_devices"][0]["device_id"] == "D2"  # flagged first


def test_response_times_per_rung_against_the_targets(report: dict) -> None:  # type: ignore[type-arg]
    rungs = {r["rung"]: r for r in report["response"]}
    fs = rungs["fire_station"]
    assert fs["label"] == "微型消防站"
    assert fs["paged"] == 3  # s1, s5, s2 (the drill d1 is not counted)
    assert fs["unanswered"] == 1
    assert (fs["acknowledge"]["p50_s"], fs["acknowledge"]["p90_s"]) == (40, 60)  # en_route implies the acknowledgement
    assert (fs["on_scene"]["p50_s"], fs["on_scene"]["p90_s"], fs["on_scene"]["target_s"]) == (150, 240, 180)
    assert fs["on_scene"]["meets_target"] is False
    assert fs["on_scene"]["within_target"] == 0.5
    gw = rungs["grid_worker"]
    assert (gw["acknowledge"]["n"], gw["acknowledge"]["p50_s"], gw["acknowledge"]["p90_s"]) == (3, 30, 100)


def test_telecare_answers_against_60_s_and_180_s(report: dict) -> None:  # type: ignore[type-arg]
    t = report["telecare"]
    assert (t["sos_alarms"], t["answered"], t["unanswered"]) == (4, 3, 1)
    assert (t["p50_s"], t["p90_s"]) == (50, 100)
    (t60, t180) = t["targets"]
    assert (t60["within_s"], t60["share"], t60["target"], t60["meets_target"]) == (60, 0.5, 0.975, False)  # 30 s and 50 s of 4
    assert (t180["within_s"], t180["share"], t180["meets_target"]) == (180, 0.75, False)  # the unanswered one counts against


def test_drills_held_against_two_a_month(report: dict) -> None:  # type: ignore[type-arg]
    d = report["drills"]
    assert [(s["alarms"], s["fire"]) for s in d["sessions"]] == [(2, True), (1, True), (1, False)]
    assert (d["fire_drills"], d["required"], d["meets_target"]) == (2, 2, True)


def test_camera_working_rate_from_comm_lost_durations(report: dict) -> None:  # type: ignore[type-arg]
    h = report["health"]
    assert h["cameras"] == 4
    assert h["camera_down_s"] == (12 * 3600) + 30 * 86400  # C1 12 h, C2 the whole month
    assert h["camera_rate"] == pytest.approx(1 - 30.5 / 120)
    assert h["meets_target"] is False
    assert [c["device_id"] for c in h["cameras_worst"]] == ["C2", "C1"]
    lost = {r["device_id"]: r for r in h["comm_lost"]}
    assert set(lost) == {"C1"}  # C2's alarm was raised in October: its downtime counts, the alarm is October's
    assert lost["C1"]["down_s"] == 12 * 3600


def test_patrol_results_from_patrol_missed_alarms(report: dict) -> None:  # type: ignore[type-arg]
    p = report["patrol"]
    assert (p["alarms"], p["misses"], p["gateways"], p["longest_s"]) == (1, 3, [{"gateway_id": "G7", "misses": 3}], 7200)


def test_the_current_month_is_measured_up_to_now() -> None:
    now = at(16)  # half of November gone: C2 has been down 15 days of 15
    inp = MonthInput("c01", "幸福里社区", "2026-11", START, END, now, ALARMS, LADDER, CAMERAS, 20)
    h = monthly_report(inp)["health"]
    assert h["period_s"] == 15 * 86400
    assert h["camera_rate"] == pytest.approx(1 - 15.5 / 60)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
