"""Write a drill report: report.json, timeline.png, latency.png and report.html (which shows both charts).

How this works: `write_report(report, folder)` renders the report dict of `simulators.drill.report` and
nothing else, so the HTML, the charts and the JSON cannot disagree. Charts use matplotlib's Agg backend
and Chinese labels in the first CJK font installed (`CJK_FONTS`; Debian's fonts-wqy-microhei is one); on a
machine without one they fall back to English rather than draw empty boxes. The HTML carries Chinese first,
English second. Every time of day a person reads is in the site's time zone (`report["time"]["time_zone"]`,
Beijing time by default): t = 0 is shown as that wall-clock time, never as epoch milliseconds.
Up to `PER_ALARM_MAX` alarms are drawn one row (or bar) each; beyond that (an alarm storm) the timeline
shows cumulative counts and the latency chart shows distributions, each with the target line.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend must be chosen before pyplot is imported
from matplotlib import font_manager

from simulators.drill.report import local_time

__all__ = ["CJK_FONTS", "PER_ALARM_MAX", "chart_language", "write_report"]

PER_ALARM_MAX: Final = 40
CJK_FONTS: Final = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "SimHei")
_MARKS: Final = {  # milestone -> (marker, colour)
    "hazard": ("^", "#d62728"), "raised": ("o", "#ff7f0e"), "acknowledge": ("s", "#1f77b4"), "arrive": ("*", "#2ca02c"), "verify_close": ("X", "#7f7f7f"),
}
_TEXT: Final[dict[str, dict[str, str]]] = {
    "zh": {
        "hazard": "注入险情", "raised": "报警入库", "acknowledge": "已确认", "arrive": "已到场", "verify_close": "已关闭", "not_drill": "（非演练）",
        "cumulative": "报警数（累计）", "x_timeline": "演练秒数（t = 0 为 {t0}，{zone}；压缩 {speed:g} 倍：实际秒数 = 演练秒数 ÷ {speed:g}）",
        "title_timeline": "{title}：每条报警的险情、报警、确认与到场", "never": "未发生", "target": "目标 {limit:g} 秒（{base}）",
        "alarms": "报警数", "met": "达标 {met} / {n}；未发生 {missing}", "x_latency": "秒（{base}）",
        "title_latency": "{title}：各项时延与目标（绿色达标，红色超时，斜线为未发生）", "drill": "演练时间", "wall": "实际时间",
    },
    "en": {
        "hazard": "hazard injected", "raised": "alarm in store", "acknowledge": "acknowledged", "arrive": "on scene", "verify_close": "closed",
        "not_drill": " (NOT drill)", "cumulative": "alarms (cumulative)",
        "x_timeline": "drill seconds after t = 0 ({t0}, {zone}; speed {speed:g}x: divide by it for wall seconds)",
        "title_timeline": "{title}: hazards, alarms, acknowledgements and on-scene per alarm", "never": "never", "target": "target {limit:g} s ({base})",
        "alarms": "alarms", "met": "met {met} of {n}; never: {missing}", "x_latency": "seconds ({base})",
        "title_latency": "{title}: latencies against targets (green met, red missed, hatched never happened)", "drill": "drill time", "wall": "wall time",
    },
}
_ZONE_NAME: Final = {"Asia/Shanghai": ("北京时间", "Beijing time"), "Asia/Chongqing": ("北京时间", "Beijing time"),
                     "Asia/Hong_Kong": ("香港时间", "Hong Kong time")}


@functools.cache
def _cjk_font() -> str | None:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def chart_language() -> str:
    """"zh" when a CJK font is installed (the charts are Chinese), else "en"."""
    return "zh" if _cjk_font() else "en"


def _rc() -> Any:
    font = _cjk_font()
    return {"font.sans-serif": [font, "DejaVu Sans"], "font.family": "sans-serif", "axes.unicode_minus": False} if font else {}


def _zone(report: dict[str, Any], lang: str) -> str:
    tz = report["time"].get("time_zone", "Asia/Shanghai")
    names = _ZONE_NAME.get(tz)
    return (names[0] if lang == "zh" else names[1]) + f" {tz}" if names else tz


def _t0(report: dict[str, Any]) -> str:
    t = report["time"]
    return str(t.get("t0_local") or local_time(t["t0_ms"], t.get("time_zone", "Asia/Shanghai")))


def _title(report: dict[str, Any], lang: str) -> str:
    sc = report["scenario"]
    return str(sc.get("title_zh") or sc["name"]) if lang == "zh" else str(sc.get("title_en") or sc["name"])


def _rel(report: dict[str, Any], ms: int | None) -> float | None:
    return None if ms is None else (ms - report["time"]["t0_ms"]) / 1000


def _timeline_png(report: dict[str, Any], path: Path) -> None:
    with plt.rc_context(_rc()):
        _timeline_chart(report, path, chart_language())


def _timeline_chart(report: dict[str, Any], path: Path, lang: str) -> None:
    tx = _TEXT[lang]
    alarms = report["alarms"]
    fig, ax = plt.subplots(figsize=(11, max(3.0, 0.42 * min(len(alarms), PER_ALARM_MAX) + 1.8)))
    for h in report["hazards"]:
        ax.axvline(h["at_s"], color="#d62728", lw=0.8, ls=":", alpha=0.6)
        ax.annotate(f"S{h['step'] + 1} {h['action']}", (h["at_s"], 1.0), xycoords=("data", "axes fraction"), rotation=35,
                    fontsize=7, va="bottom", ha="left", color="#d62728", annotation_clip=False)
    if len(alarms) <= PER_ALARM_MAX:
        used: set[str] = set()
        for y, a in enumerate(alarms):
            pts = {"hazard": _rel(report, a["hazard_ms"]), "raised": _rel(report, a["raised_at_ms"])}
            for p in a["people"]:
                if p["move"] in _MARKS and p["move"] not in pts:
                    pts[p["move"]] = _rel(report, p["at_ms"])
            xs = [x for x in pts.values() if x is not None]
            ax.plot([min(xs), max(xs)], [y, y], color="#bbbbbb", lw=1.5, zorder=1)
            for key, x in pts.items():
                if x is None:
                    continue
                marker, colour = _MARKS[key]
                label = tx[key]
                ax.scatter([x], [y], marker=marker, color=colour, s=70 if key == "arrive" else 45, zorder=3,
                           label=None if label in used else label)
                used.add(label)
        ax.set_yticks(range(len(alarms)))
        ax.set_yticklabels([f"{a['type']} {(a['device_id'] or a['gateway_id'] or '')[-22:]}{'' if a['drill'] else tx['not_drill']}" for a in alarms],
                           fontsize=8)
        ax.set_ylim(-0.7, len(alarms) - 0.3)
        ax.invert_yaxis()
    else:
        series = {"hazard": sorted(v for a in alarms if (v := _rel(report, a["hazard_ms"])) is not None),
                  "raised": sorted(v for a in alarms if (v := _rel(report, a["raised_at_ms"])) is not None)}
        for move in ("acknowledge", "arrive", "verify_close"):
            series[move] = sorted(v for a in alarms for p in a["people"] if p["move"] == move and (v := _rel(report, p["at_ms"])) is not None)
        for key, xs in series.items():
            if xs:
                marker, colour = _MARKS[key]
                label = tx[key]
                ax.step([0.0, *xs], list(range(len(xs) + 1)), where="post", color=colour, label=f"{label} ({len(xs)})")
        ax.set_ylabel(tx["cumulative"])
    ax.set_xlim(left=min(-2.0, -0.02 * report["scenario"]["run_for_s"]), right=report["scenario"]["run_for_s"])
    ax.set_xlabel(tx["x_timeline"].format(t0=_t0(report), zone=_zone(report, lang), speed=report["time"]["speed"]))
    ax.set_title(tx["title_timeline"].format(title=_title(report, lang)), pad=34)
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency_png(report: dict[str, Any], path: Path) -> None:
    with plt.rc_context(_rc()):
        _latency_chart(report, path, chart_language())


def _latency_chart(report: dict[str, Any], path: Path, lang: str) -> None:
    tx = _TEXT[lang]
    keys = [k for k in report["targets"] if any(c["target"] == k for a in report["alarms"] for c in a["checks"])]
    n = max(1, len(keys))
    rows = list(report["alarms"])
    per_alarm = len(rows) <= PER_ALARM_MAX
    height = max(2.6, 0.3 * len(rows) + 1.4) if per_alarm else 3.2
    fig, axes = plt.subplots(n, 1, figsize=(10, height * n), squeeze=False)
    for ax, key in zip(axes[:, 0], keys or ["display"], strict=True):
        target = report["targets"][key]
        cs = [(a, c) for a in rows for c in a["checks"] if c["target"] == key]
        limit = target["limit_s"]
        if per_alarm:
            labels = [f"{a['type']} {(a['device_id'] or a['gateway_id'] or '')[-22:]}" for a, _ in cs]
            values = [c["value_s"] if c["value_s"] is not None else limit * 1.1 for _, c in cs]
            colours = ["#2ca02c" if c["ok"] else "#d62728" for _, c in cs]
            bars = ax.barh(range(len(cs)), values, color=colours, hatch=None)
            for bar, (_, c) in zip(bars, cs, strict=True):
                text = tx["never"] if c["value_s"] is None else f"{c['value_s']:.3g} s"
                if c["value_s"] is None:
                    bar.set_hatch("//")
                ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0), textcoords="offset points",
                            va="center", fontsize=7)
            ax.set_yticks(range(len(cs)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.axvline(limit, color="black", ls="--", lw=1.2, label=tx["target"].format(limit=limit, base=tx.get(target["base"], target["base"])))
            ax.set_xlim(0, max([limit * 1.25, *[v * 1.15 for v in values]]))
        else:
            vals = [c["value_s"] for _, c in cs if c["value_s"] is not None]
            missing = sum(1 for _, c in cs if c["value_s"] is None)
            if vals:
                ax.hist(vals, bins=30, color="#1f77b4")
            ax.axvline(limit, color="black", ls="--", lw=1.2, label=tx["target"].format(limit=limit, base=tx.get(target["base"], target["base"])))
            met = sum(1 for _, c in cs if c["ok"])
            ax.set_ylabel(tx["alarms"])
            ax.text(0.99, 0.95, tx["met"].format(met=met, n=len(cs), missing=missing), transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.set_title(str(target.get(lang) or key), fontsize=10)
        ax.set_xlabel(tx["x_latency"].format(base=tx.get(target["base"], target["base"])))
        ax.legend(loc="lower right" if per_alarm else "upper left", fontsize=8)
    fig.suptitle(tx["title_latency"].format(title=_title(report, lang)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _html(report: dict[str, Any]) -> str:
    sc, t, summ = report["scenario"], report["time"], report["summary"]
    problems = report["problems"]
    prob_html = "".join(f"<li>{_e(p['zh'])}<br><span class=en>{_e(p['en'])}</span></li>" for p in problems) or (
        "<li>没有发现问题。<br><span class=en>Nothing went wrong.</span></li>")
    target_rows = "".join(
        f"<tr><td>{_e(v['zh'])}<br><span class=en>{_e(v['en'])}</span></td><td>{v['limit_s']:g} s ({_e(v['base'])})</td>"
        f"<td>{summ[k]['met']} / {summ[k]['checked']}</td><td>{_fmt(summ[k]['median_s'])}</td><td>{_fmt(summ[k]['max_s'])}</td>"
        f"<td>{_e(v['source'])}</td></tr>" for k, v in report["targets"].items())
    hazard_rows = "".join(
        f"<tr><td>S{h['step'] + 1}</td><td>{h['at_s']:g}</td><td>{_e(h['action'])}</td><td>{_e(h['place'])}</td><td>{len(h['devices']) or ''}</td>"
        f"<td>{_e(' / '.join(h['expect']))}</td><td class={'ok' if h['expected_alarm_raised'] else 'bad'}>{len(h['alarms'])}</td></tr>"
        for h in report["hazards"])
    alarm_rows = []
    for a in report["alarms"][:500]:
        f = a["figures"]
        checks = " ".join(f"<span class={'ok' if c['ok'] else 'bad'}>{_e(c['target'])}: {_fmt(c['value_s'])}</span>" for c in a["checks"])
        who = ", ".join(f"{p['move']} {p['actor']} +{p['after_alarm_s']:.1f}s" for p in a["people"])
        alarm_rows.append(
            f"<tr><td>{_e(a['id'])}</td><td>{_e(a['type'])}{'' if a['drill'] else ' <b>(not drill)</b>'}</td><td>{_e(a['place'])}</td>"
            f"<td>{'S' + str(a['step'] + 1) if a['step'] is not None else '—'}</td><td>{_fmt(f['hazard_to_alarm_s'])}</td>"
            f"<td>{_fmt(f['report_to_alarm_s'])} ({f['report_to_alarm_wall_s']:.3f})</td>"
            f"<td>{_fmt(f['alarm_to_ack_s'])}</td><td>{_fmt(f['alarm_to_on_scene_s'])}</td>"
            f"<td>{_e(a['state'])}</td><td>{checks}</td><td class=small>{_e(who)}</td></tr>")
    more = f"<p>… {len(report['alarms']) - 500} more alarms in report.json</p>" if len(report["alarms"]) > 500 else ""
    verdict = ("<p class=ok>所有目标均达成。<span class=en>Every target was met.</span></p>" if summ["all_targets_met"] and not problems else
               f"<p class=bad>发现 {len(problems)} 个问题。<span class=en>{len(problems)} problem(s) found.</span></p>")
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>演练报告 Drill report: {_e(sc['name'])}</title>
<style>
body{{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;color:#222;max-width:1200px}}
h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}} .en{{color:#555;font-size:90%}}
table{{border-collapse:collapse;font-size:13px;width:100%}} td,th{{border:1px solid #ddd;padding:3px 6px;vertical-align:top}}
th{{background:#f3f3f3}} .ok{{color:#18794e}} .bad{{color:#c0262d;font-weight:bold}} .small{{font-size:11px}}
.time{{background:#fff8e1;border:1px solid #f0d98c;padding:8px 12px}} img{{max-width:100%;border:1px solid #eee}}
</style></head><body>
<h1>演练报告：{_e(sc['title_zh'])}<br><span class=en>Drill report: {_e(sc['title_en'])}</span></h1>
<p>{_e(sc['summary_zh'])}<br><span class=en>{_e(sc['summary_en'])}</span></p>
<p class=small>scenario <code>{_e(sc['name'])}</code> ({_e(sc['file'])}) · seed {sc['seed']} · target: {_e(report['target_system'])} ·
simulated responders: {'yes' if report['simulated_responders'] else 'no (real people)'} · messages published: {report['messages_published']}</p>
<div class=time><b>时间说明 / Time</b><br>{_e(t['statement_zh'])}<br><span class=en>{_e(t['statement_en'])}</span><br>
<span class=small>drill seconds {t['drill_seconds']:.1f} · wall seconds {t['wall_seconds']:.1f} · speed {t['speed']:g}x ·
t = 0：{_e(_t0(report))}（{_e(_zone(report, "zh"))}，演练时钟 drill clock）</span></div>
{verdict}
<h2>问题 / What went wrong</h2><ul>{prob_html}</ul>
<h2>目标 / Targets</h2>
<table><tr><th>目标 target</th><th>limit</th><th>met</th><th>median s</th><th>max s</th><th>source</th></tr>{target_rows}</table>
<h2>时间线 / Timeline</h2>
<p class=en>Per alarm: ▲ hazard injected, ● alarm in the store, ■ acknowledged, ★ on scene, ✕ closed; dotted lines are the scenario's steps.</p>
<img src="timeline.png" alt="timeline of hazards, alarms, acknowledgements and on-scene per alarm">
<h2>时延与目标 / Latency against targets</h2>
<img src="latency.png" alt="latency bars against targets">
<h2>演练步骤 / Steps</h2>
<table><tr><th>step</th><th>t (drill s)</th><th>action</th><th>place</th><th>devices</th><th>expected alarm</th><th>alarms</th></tr>{hazard_rows}</table>
<h2>每条报警 / Per alarm</h2>
<p class=en>Seconds of drill time, from the alarm store: hazard→alarm, device report→alarm (display; wall seconds in brackets),
alarm→acknowledged, alarm→on scene.</p>
<table><tr><th>alarm</th><th>type</th><th>place</th><th>step</th><th>hazard→alarm</th><th>display</th><th>→ack</th><th>→on scene</th>
<th>state</th><th>checks</th><th>people</th></tr>{''.join(alarm_rows)}</table>{more}
<p class=small>report.json holds every figure with the store timestamps it was computed from.</p>
</body></html>
"""


def write_report(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "timeline": folder / "timeline.png", "latency": folder / "latency.png", "html": folder / "report.html"}
    paths["json"].write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    _timeline_png(report, paths["timeline"])
    _latency_png(report, paths["latency"])
    paths["html"].write_text(_html(report), encoding="utf-8")
    return paths
