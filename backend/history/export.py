"""Files of the history: a filtered list as CSV or XLSX, and one alarm's record (处置记录单) as printable HTML or XLSX.

How this works: the list exports take the rows `backend.history.query.iter_rows` yields for a filter (the very rows
the console's list shows, page after page) and write one line per alarm with Chinese headers and times in the site's
time zone. CSV is produced line by line (`csv_lines`, a generator the API streams: a year of alarms never sits in
memory); XLSX uses openpyxl's write-only workbook, which also streams rows to a temporary file. CSV starts with a
UTF-8 byte-order mark so Excel opens the Chinese correctly.

The record page is self-contained HTML (inline CSS, no script, print styles), so a duty officer can print it or save
it as PDF from the browser.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Iterator
from datetime import tzinfo
from pathlib import Path
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.styles import Font

from backend.alarms.collab import ROLE_ZH
from backend.history.query import HistoryFilter, HistoryRow
from backend.history.record import AlarmSheet, RecordEntry
from backend.history.words import local_time, severity_word, state_word, type_word, zone_words
from backend.i18n import Lang, note_text, timeline_text
from backend.sites.model import SiteDirectory

__all__ = ["HEADERS", "csv_lines", "list_row", "record_html", "record_xlsx", "write_list_xlsx"]

HEADERS: Final = ("编号", "报警时间", "类型", "级别", "状态", "误报", "演练", "社区", "网格", "楼栋", "单元", "户", "设备", "标题", "详情",
                  "次数", "最后更新")
HEADERS_EN: Final = ("id", "raised at", "type", "severity", "state", "false alarm", "drill", "community", "grid", "building", "unit",
                     "household", "device", "title", "detail", "occurrences", "last updated")


def _yes(v: bool, lang: Lang) -> str:
    return ("是" if v else "否") if lang == "zh" else ("yes" if v else "no")


def place_names(sites: SiteDirectory | None, building: str | None, grid: str | None, community: str | None) -> tuple[str, str, str]:
    """(community, grid, building) names, as stored ids when the directory does not know them."""
    b = sites.buildings.get(building or "") if sites else None
    g = sites.grids.get(b.grid if b else (grid or "")) if sites else None
    cid = g.community if g else community
    c = sites.communities.get(cid or "") if sites else None
    return (c.name if c else cid or ""), (g.name if g else grid or ""), (b.name if b else building or "")


def list_row(r: HistoryRow, sites: SiteDirectory | None, tz: tzinfo, lang: Lang = "zh") -> list[Any]:
    community, grid, building = place_names(sites, r.building_id, r.grid_id, r.community_id)
    hh = sites.households.get(r.household_id or "") if sites else None
    return [r.id, local_time(r.raised_at_ms, tz), type_word(r.alarm_type, lang, r.title), severity_word(r.severity, lang),
            state_word(r.state, lang), _yes(r.was_false, lang), _yes(r.drill, lang), community, grid, building,
            "" if r.unit is None else r.unit, hh.room if hh else (r.household_id or ""), r.device_id or "", r.title, r.detail or "",
            r.occurrences, local_time(r.updated_ms, tz)]


def filter_lines(f: HistoryFilter, tz: tzinfo, tz_name: str) -> list[str]:
    """What the file holds, for its first lines / sheet title: the filter in words."""
    parts = [f"{k}={v}" for k, v in f.as_json().items() if k not in ("from_ms", "to_ms")]
    if f.from_ms is not None or f.to_ms is not None:
        parts.insert(0, f"报警时间 {local_time(f.from_ms, tz) or '…'} 至 {local_time(f.to_ms, tz) or '…'}（{tz_name}）")
    return parts


def csv_lines(rows: Iterable[HistoryRow], sites: SiteDirectory | None, tz: tzinfo, lang: Lang = "zh") -> Iterator[str]:
    """The CSV file, line by line (a UTF-8 BOM first, then the header)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")

    def line(values: list[Any]) -> str:
        buf.seek(0)
        buf.truncate()
        w.writerow(values)
        return buf.getvalue()

    yield "\ufeff" + line(list(HEADERS if lang == "zh" else HEADERS_EN))
    for r in rows:
        yield line(list_row(r, sites, tz, lang))


def write_list_xlsx(path: Path, rows: Iterable[HistoryRow], sites: SiteDirectory | None, tz: tzinfo, lang: Lang = "zh") -> int:
    """Write the list to an XLSX file (write-only: rows stream to disk); returns the number of alarms written."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("告警历史" if lang == "zh" else "alarm history")
    ws.freeze_panes = "A2"
    ws.append(list(HEADERS if lang == "zh" else HEADERS_EN))
    n = 0
    for r in rows:
        ws.append(list_row(r, sites, tz, lang))
        n += 1
    wb.save(path)
    return n


# -- one alarm's record ------------------------------------------------------------------------------------------------

def _collab_or_forward_words(e: RecordEntry, lang: Lang) -> tuple[str, str, str]:
    zh = lang == "zh"
    system = "系统" if zh else "system"
    if e.what == "assigned":
        role = (ROLE_ZH.get(e.rung or "", e.rung or "") if zh else (e.rung or "").replace("_", " "))
        name, _, note = e.note.partition(" · ")
        return ("指派负责人" if zh else "assigned", e.actor, f"{name}（{role}）" + (f" · {note}" if note else "") if zh
                else f"{name} ({role})" + (f" · {note}" if note else ""))
    if e.what == "comment":
        photos = (f"（{e.photos} 张照片）" if zh else f" ({e.photos} photo{'s' if e.photos != 1 else ''})") if e.photos else ""
        return ("评论" if zh else "comment", e.actor, e.note + photos)
    if e.what == "forward_sent":
        how = {"verified": "核实属实后转警" if zh else "forwarded after verification",
               "treated_real": "核实时限内无人核实，视为属实转警" if zh else "forwarded: nobody verified in time, treated as real"}
        return ("转警119" if zh else "forwarded to 119", system if e.actor == "system" else e.actor, how.get(e.rung or "", e.rung or ""))
    if e.what == "forward_receipted":
        return ("119 已回执" if zh else "119 receipt", system, (f"回执号 {e.note}" if zh else f"receipt {e.note}") + (f" · {e.channel}" if e.channel else ""))
    if e.what == "forward_failed":
        return ("转警失败" if zh else "forward failed", system, note_text(e.note, lang))
    return ("未转警" if zh else "not forwarded", system, note_text(e.note, lang))


def _entry_words(e: RecordEntry, lang: Lang, sites: SiteDirectory | None) -> tuple[str, str, str]:
    """(what happened, who, note) of one record entry, in the reader's language."""
    if e.source in ("collab", "forward"):
        return _collab_or_forward_words(e, lang)
    rung_label = None
    if e.rung and sites is not None:
        rung_label = {"grid_worker": "网格员", "grid_worker_workorder": "网格员", "fire_station": "微型消防站", "building_leader": "楼栋长",
                      "volunteers_extinguisher": "志愿者", "volunteers_first_aid": "志愿者", "family": "家属/邻居", "duty_officer": "值班员",
                      "duty_console": "值班员"}.get(e.rung)
    words = timeline_text({"source": e.source, "what": e.what, "to_state": e.to_state if e.source == "lifecycle" else None, "note": e.note,
                           "actor": e.actor, "rung": e.rung, "rung_label": rung_label}, lang)
    label = words["label"]
    if e.source == "ladder" and e.rung:
        label = f"{label} · {words['rung_text']}"
    return label, words["actor_text"], words["note_text"]


def sheet_fields(sheet: AlarmSheet, sites: SiteDirectory | None, tz: tzinfo, lang: Lang = "zh") -> list[tuple[str, str]]:
    a = sheet.alarm
    community, grid, building = place_names(sites, a["building_id"], a["grid_id"], a["community_id"])
    hh = sites.households.get(a["household_id"] or "") if sites else None
    d = sites.devices.get(a["device_id"] or "") if sites else None
    closed = next((e.at_ms for e in sheet.entries if e.source == "lifecycle" and e.to_state in ("closed", "false_alarm", "archived")), None)
    zh = lang == "zh"
    return [
        ("编号" if zh else "id", a["id"]), ("标题" if zh else "title", a["title"]),
        ("类型" if zh else "type", type_word(a["alarm_type"], lang, a["title"])), ("级别" if zh else "severity", severity_word(a["severity"], lang)),
        ("当前状态" if zh else "state", state_word(a["state"], lang)), ("误报" if zh else "false alarm", _yes(sheet.was_false, lang)),
        ("演练" if zh else "drill", _yes(bool(a["drill"]), lang)),
        ("社区" if zh else "community", community), ("网格" if zh else "grid", grid), ("楼栋" if zh else "building", building),
        ("单元" if zh else "unit", "" if a["unit"] is None else str(a["unit"])), ("户" if zh else "household", hh.room if hh else (a["household_id"] or "")),
        ("设备" if zh else "device", " · ".join(x for x in (a["device_id"], d.location if d else None) if x)),
        ("首次报警" if zh else "first seen", local_time(a["first_seen_ms"], tz)), ("报警时间" if zh else "raised", local_time(a["raised_at_ms"], tz)),
        ("最近一次" if zh else "last seen", local_time(a["last_seen_ms"], tz)), ("关闭时间" if zh else "closed", local_time(closed, tz)),
        ("次数" if zh else "occurrences", str(a["occurrences"])), ("详情" if zh else "detail", note_text(a["detail"] or "", lang)),
    ]


def record_rows(sheet: AlarmSheet, sites: SiteDirectory | None, tz: tzinfo, lang: Lang = "zh") -> list[tuple[str, str, str, str, str]]:
    out = []
    for e in sheet.entries:
        label, who, note = _entry_words(e, lang, sites)
        source = {"lifecycle": "状态", "console": "值班台", "ladder": "升级", "collab": "协同", "forward": "转警"}[e.source] if lang == "zh" else e.source
        out.append((local_time(e.at_ms, tz), source, label, who, note))
    return out


_CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;color:#111}
h1{font-size:22px;margin:0 0 4px}.sub{color:#555;margin:0 0 16px}
table{border-collapse:collapse;width:100%;margin-bottom:18px}th,td{border:1px solid #999;padding:4px 6px;font-size:13px;text-align:left;
vertical-align:top}th{background:#eee;white-space:nowrap}.fields th{width:8em}.sign{margin-top:28px;display:flex;gap:48px}
@media print{body{margin:0}.noprint{display:none}}
"""


def record_html(sheet: AlarmSheet, sites: SiteDirectory | None, tz: tzinfo, *, tz_name: str, printed_ms: int, lang: Lang = "zh") -> str:
    zh = lang == "zh"
    e = html.escape
    fields = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in sheet_fields(sheet, sites, tz, lang))
    head = ("时间", "来源", "事项", "人员", "说明") if zh else ("time", "source", "what", "who", "note")
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in record_rows(sheet, sites, tz, lang))
    title = "处置记录单" if zh else "Alarm handling record"
    sign = ("<div class='sign'><span>值班员签字：＿＿＿＿＿＿</span><span>复核人签字：＿＿＿＿＿＿</span><span>日期：＿＿＿＿＿＿</span></div>" if zh
            else "<div class='sign'><span>Duty officer: ______</span><span>Reviewed by: ______</span><span>Date: ______</span></div>")
    tz_note = f"时间均为{zone_words(tz_name, lang)}" if zh else f"times in {zone_words(tz_name, lang)}"
    return (f"<!doctype html><html lang='{'zh-CN' if zh else 'en'}'><head><meta charset='utf-8'><title>{title} {e(sheet.alarm['id'])}</title>"
            f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
            f"<p class='sub'>{e(sheet.alarm['title'])} · {'打印时间' if zh else 'printed'} {e(local_time(printed_ms, tz))} · {e(tz_note)}</p>"
            f"<table class='fields'>{fields}</table><h2>{'处置过程' if zh else 'What was done'}</h2>"
            f"<table class='log'><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead><tbody>{rows}</tbody></table>"
            f"{sign}<p class='noprint'><button onclick='print()'>{'打印' if zh else 'Print'}</button></p></body></html>")


def record_xlsx(path: Path, sheet: AlarmSheet, sites: SiteDirectory | None, tz: tzinfo, lang: Lang = "zh") -> None:
    zh = lang == "zh"
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "处置记录单" if zh else "record"
    ws.append(["处置记录单" if zh else "Alarm handling record"])
    ws["A1"].font = Font(bold=True, size=14)
    for k, v in sheet_fields(sheet, sites, tz, lang):
        ws.append([k, v])
    ws.append([])
    ws.append(list(("时间", "来源", "事项", "人员", "说明") if zh else ("time", "source", "what", "who", "note")))
    for r in record_rows(sheet, sites, tz, lang):
        ws.append(list(r))
    ws.column_dimensions["A"].width = 20
    ws.column_dimensions["B"].width = 28
    ws.column_dimensions["C"].width = 22
    ws.column_dimensions["E"].width = 50
    wb.save(path)
