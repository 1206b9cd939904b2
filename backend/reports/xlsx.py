"""The monthly report as an XLSX workbook (openpyxl), Chinese headers, times in the site's time zone: one sheet per
part of the report (概览, 按类型, 误报设备, 响应时间, 演练, 设备健康, 巡检), the same figures the console page draws."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from backend.history.words import local_time, type_word, zone_words

__all__ = ["OUTCOME_WORDS", "write_report_xlsx"]

OUTCOME_WORDS = {"closed": "已处置关闭", "false_alarm": "误报", "resolved": "自动恢复", "open": "未关闭", "other": "其他"}
_BOLD = Font(bold=True)
_RED = PatternFill("solid", fgColor="F8D0D0")


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


def _sec(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} 秒"


def _ok(v: bool) -> str:
    return "达标" if v else "未达标"


def write_report_xlsx(path: Path, r: dict[str, Any], tz: tzinfo, tz_name: str) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "概览"
    t, h, d, tc = r["totals"], r["health"], r["drills"], r["telecare"]
    ws.append([f"{r['community_name']} {r['month']} 月度统计报表"])
    ws["A1"].font = Font(bold=True, size=14)
    for row in (
        ["统计区间", f"{local_time(r['start_ms'], tz)} 至 {local_time(r['measured_until_ms'], tz)}（{zone_words(tz_name)}）"],
        ["真实告警", t["real"]], ["演练告警", t["drill"]], ["误报", t["false_alarm"]], ["已处置关闭", t["closed"]], ["自动恢复", t["resolved"]],
        ["未关闭", t["open"]],
        ["消防演练（次）", f"{d['fire_drills']} / 要求 {d['required']} · {_ok(d['meets_target'])}"],
        ["摄像头完好率", f"{_pct(h['camera_rate'])} / 目标 {_pct(h['camera_target'])} · {_ok(h['meets_target'])}"],
        ["一键呼救 60 秒内应答", f"{_pct(tc['targets'][0]['share'])} / 目标 {_pct(tc['targets'][0]['target'])}"],
        ["巡检心跳缺失（次）", r["patrol"]["misses"]],
    ):
        ws.append(row)
    ws.column_dimensions["A"].width = 22
    ws.column_dimensions["B"].width = 50

    s = wb.create_sheet("按类型")
    s.append(["类型", "合计", *OUTCOME_WORDS.values()])
    for row in r["by_type"]:
        s.append([type_word(row["alarm_type"], "zh", row["title"]), row["total"], *(row[k] for k in OUTCOME_WORDS)])

    s = wb.create_sheet("误报设备")
    rule = r["false_alarm_rule"]
    s.append([f"标记规则：当月误报不少于 {rule['min_false_alarms']} 次且占该设备告警的 {_pct(rule['min_rate'])} 以上"])
    s.append(["设备", "楼栋", "告警", "误报", "误报率", "超标"])
    for row in r["false_alarm_devices"]:
        s.append([row["device_id"], row["building_id"] or "", row["alarms"], row["false_alarms"], _pct(row["rate"]), "是" if row["flagged"] else "否"])
        if row["flagged"]:
            for cell in s[s.max_row]:
                cell.fill = _RED

    s = wb.create_sheet("响应时间")
    s.append(["梯队", "呼叫次数", "确认 p50", "确认 p90", "到场 p50", "到场 p90", "到场目标", "到场达标", "未应答"])
    for row in r["response"]:
        sc = row["on_scene"]
        s.append([row["label"], row["paged"], _sec(row["acknowledge"]["p50_s"]), _sec(row["acknowledge"]["p90_s"]), _sec(sc["p50_s"]),
                  _sec(sc["p90_s"]), _sec(sc["target_s"]), _ok(sc["meets_target"]) if "meets_target" in sc else "—", row["unanswered"]])
    s.append([])
    s.append(["一键呼救（养老服务）", f"{tc['sos_alarms']} 次，已应答 {tc['answered']}", f"p50 {_sec(tc['p50_s'])}", f"p90 {_sec(tc['p90_s'])}"])
    for tg in tc["targets"]:
        s.append([f"{tg['within_s']} 秒内应答", _pct(tg["share"]), f"目标 {_pct(tg['target'])}", _ok(tg["meets_target"])])
    if (cb := r.get("callbacks")) is not None:  # the SOS call-back (回访, issue 18)
        s.append([])
        o, ta = cb["by_outcome"], cb["time_to_answer"]
        s.append(["一键呼救回访", f"{cb['callbacks']} 次", f"接通·平安 {o['answered_fine']}", f"接通·需要帮助 {o['needs_help']}",
                  f"无人接听 {o['no_answer']}", f"误按 {o['false_press']}", f"超时未记录 {o['expired']}", f"未完成 {o['open']}"])
        s.append(["回访接通用时", f"p50 {_sec(ta['p50_s'])}", f"p90 {_sec(ta['p90_s'])}", f"{ta['target_s']} 秒内接通 {_pct(ta['share_within'])}",
                  f"目标 {_pct(ta['target_share'])}", _ok(ta["meets_target"])])
        for row in cb["false_press_devices"]:
            s.append(["误按（一键呼救按钮）", row["device_id"], row["building_id"] or "", f"{row['false_presses']} 次"])

    s = wb.create_sheet("演练")
    s.append(["开始", "结束", "告警数", "含火警", "类型"])
    for row in d["sessions"]:
        s.append([local_time(row["start_ms"], tz), local_time(row["end_ms"], tz), row["alarms"], "是" if row["fire"] else "否",
                  "、".join(type_word(x) for x in row["types"])])

    s = wb.create_sheet("设备健康")
    s.append(["摄像头", h["cameras"], "完好率", _pct(h["camera_rate"]), "目标", _pct(h["camera_target"])])
    s.append(["网关离线（次）", h["gateway_offline"], "停电（次）", h["power_outage"]])
    s.append([])
    s.append(["通信中断设备", "楼栋", "次数", "中断时长（分钟）", "仍未恢复"])
    for row in h["comm_lost"]:
        s.append([row["device_id"], row["building_id"] or "", row["alarms"], round(row["down_s"] / 60, 1), "是" if row["still_open"] else "否"])

    s = wb.create_sheet("巡检")
    p = r["patrol"]
    s.append(["巡检心跳缺失告警", p["alarms"], "缺失次数", p["misses"], "最长（分钟）", round(p["longest_s"] / 60, 1)])
    s.append(["网关", "缺失次数"])
    for row in p["gateways"]:
        s.append([row["gateway_id"], row["misses"]])
    for sheet in wb.worksheets[1:]:
        for cell in sheet[1]:
            cell.font = _BOLD
        sheet.column_dimensions["A"].width = 26
    wb.save(path)
