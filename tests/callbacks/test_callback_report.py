"""SOS call-back outcomes in the street office's monthly report: by outcome, time to an answered call against
telecare's 60 s / 97.5 %, and false presses per SOS button. A hand-built month (answers known in advance), then the
same figures read from a real store after call-backs recorded through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from openpyxl import load_workbook

from backend.reports.monthly import LadderEvent, MonthInput, ReportAlarm, monthly_report
from backend.reports.query import month_bounds, month_input
from backend.reports.xlsx import write_report_xlsx
from backend.sites import SiteDirectory
from tests.callbacks.test_callback_api import db, press, rig, session  # noqa: F401 (the db fixture)

BJ = timezone(timedelta(hours=8))
S = 1000


def at(day: int, hour: int = 9) -> int:
    return int(datetime(2026, 11, day, hour, tzinfo=BJ).timestamp() * 1000)


def sos(i: str, device: str, raised: int) -> ReportAlarm:
    return ReportAlarm(i, "sos", "critical", device, "g1", "b1", False, raised, raised, False, 1, "一键呼救", ((raised + 90 * S, "verify_close", "closed"),))


def callback(i: str, raised: int, outcome: str | None, after_s: int, *, expired: bool = False) -> list[LadderEvent]:
    out = [LadderEvent(i, "callback_opened", "grid_worker", raised)]
    if expired:
        out.append(LadderEvent(i, "callback_expired", "grid_worker", raised + 60 * S))
    if outcome is not None:
        out.append(LadderEvent(i, "callback_outcome", "grid_worker", raised + after_s * S, f"gw1: {outcome} (老人说没事)"))
    return out


def test_call_backs_by_outcome_time_to_answer_and_false_presses_per_button(tmp_path: Path) -> None:
    start, end = month_bounds("2026-11", BJ)
    alarms = [sos("p1", "P1", at(2)), sos("p2", "P1", at(3)), sos("p3", "P2", at(4)), sos("p4", "P3", at(5)), sos("p5", "P3", at(6)),
              sos("p6", "P4", at(7)), sos("p7", "P5", at(8))]
    ladder = [*callback("p1", at(2), "false_press", 20), *callback("p2", at(3), "false_press", 40), *callback("p3", at(4), "answered_fine", 30),
              *callback("p4", at(5), "needs_help", 50), *callback("p5", at(6), "no_answer", 25),
              *callback("p6", at(7), "answered_fine", 90, expired=True), *callback("p7", at(8), None, 0, expired=True)]
    report = monthly_report(MonthInput("c01", "幸福里社区", "2026-11", start, end, end, alarms, ladder))
    got = report["callbacks"]
    assert got["callbacks"] == 7
    assert got["by_outcome"] == {"answered_fine": 2, "needs_help": 1, "no_answer": 1, "false_press": 2, "expired": 1, "open": 0}
    t = got["time_to_answer"]
    assert (t["n"], t["p50_s"], t["p90_s"], t["target_s"]) == (5, 40.0, 90.0, 60)  # picked up: 20, 30, 40, 50, 90 s
    assert t["share_within"] == 4 / 7  # no answer and the expired one count against 97.5 %
    assert t["meets_target"] is False
    assert got["false_press_devices"] == [{"device_id": "P1", "building_id": "b1", "false_presses": 2}]
    write_report_xlsx(tmp_path / "m.xlsx", report, BJ, "Asia/Shanghai")
    rows = [[str(c) for c in row if c is not None] for row in load_workbook(tmp_path / "m.xlsx")["响应时间"].iter_rows(values_only=True)]
    assert ["一键呼救回访", "7 次", "接通·平安 2", "接通·需要帮助 1", "无人接听 1", "误按 2", "超时未记录 1", "未完成 0"] in rows
    assert ["误按（一键呼救按钮）", "P1", "b1", "2 次"] in rows


async def test_the_report_reads_the_outcomes_recorded_through_the_api(db: sa.Engine, sample_site: SiteDirectory) -> None:  # noqa: F811
    async with rig(db, sample_site) as (c, api):
        fine = await press(c)
        silent = await press(c, "c01-b01-1-301-sos", "c01-b01-1-301")
        c.clock.advance(12)
        r1 = await api.client.post(f"/api/alarms/{fine}/callback", json={"outcome": "false_press", "note": "碰到了按钮"}, headers=api.duty)
        r2 = await api.client.post(f"/api/alarms/{silent}/callback", json={"outcome": "no_answer"}, headers=session(c, api, "gw1"))
        assert (r1.status_code, r2.status_code) == (200, 200)
        month = datetime.fromtimestamp(c.clock.now_ms() / 1000, UTC).astimezone(BJ).strftime("%Y-%m")
        inp = month_input(db, c.site, "c01", month, tz=BJ, now_ms=c.clock.now_ms())
        got = monthly_report(inp)["callbacks"]
        assert got["by_outcome"]["false_press"] == 1
        assert got["by_outcome"]["no_answer"] == 1
        assert got["time_to_answer"]["p50_s"] == 12.0
        assert got["false_press_devices"] == [{"device_id": "c01-b01-1-102-sos", "building_id": "c01-b01", "false_presses": 1}]
