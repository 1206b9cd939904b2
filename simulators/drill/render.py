"""Write a drill report: report.json, timeline.png, latency.png and report.html (which shows both charts).

How this works: `write_report(report, folder)` renders the report dict of `simulators.drill.report` and
nothing else, so the HTML, the charts and the JSON cannot disagree. Charts use matplotlib's Agg backend
and English labels (the machines have no CJK font; the HTML carries Chinese first, English second).
Up to `PER_ALARM_MAX` alarms are drawn one row (or bar) each; beyond that (an alarm storm) the timeline
shows cumulative counts and the latency chart shows distributions, each with the target line.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend must be chosen before pyplot is imported

__all__ = ["PER_ALARM_MAX", "write_report"]

PER_ALARM_MAX: Final = 40
_MARKS: Final = {  # milestone -> (marker, colour, label)
    "hazard": ("^", "#d62728", "hazard injected"),
    "raised": ("o", "#ff7f0e", "alarm in store"),
    "acknowledge": ("s", "#1f77b4", "acknowledged"),
    "arrive": ("*", "#2ca02c", "on scene"),
    "verify_close": ("X", "#7f7f7f", "closed"),
}
_CHECK_LABEL: Final = {"display": "device report -> alarm displayed (drill s)", "fire_on_scene": "alarm -> fire station on scene (drill s)",
                       "sos_answered": "alarm -> SOS answered (drill s)"}


def _rel(report: dict[str, Any], ms: int | None) -> float | None:
    return None if ms is None else (ms - report["time"]["t0_ms"]) / 1000


def _timeline_png(report: dict[str, Any], path: Path) -> None:
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
                marker, colour, label = _MARKS[key]
                ax.scatter([x], [y], marker=marker, color=colour, s=70 if key == "arrive" else 45, zorder=3,
                           label=None if label in used else label)
                used.add(label)
        ax.set_yticks(range(len(alarms)))
        ax.set_yticklabels([f"{a['type']} {(a['device_id'] or a['gateway_id'] or '')[-22:]}{'' if a['drill'] else ' (NOT drill)'}" for a in alarms],
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
                marker, colour, label = _MARKS[key]
                ax.step([0.0, *xs], list(range(len(xs) + 1)), where="post", color=colour, label=f"{label} ({len(xs)})")
        ax.set_ylabel("alarms (cumulative)")
    ax.set_xlim(left=min(-2.0, -0.02 * report["scenario"]["run_for_s"]), right=report["scenario"]["run_for_s"])
    ax.set_xlabel(f"drill seconds after t=0 (speed {report['time']['speed']:g}x: divide by it for wall seconds)")
    ax.set_title(f"{report['scenario']['name']}: hazards, alarms, acknowledgements and on-scene per alarm", pad=34)
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency_png(report: dict[str, Any], path: Path) -> None:
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
                text = "never" if c["value_s"] is None else f"{c['value_s']:.3g} s"
                if c["value_s"] is None:
                    bar.set_hatch("//")
                ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0), textcoords="offset points",
                            va="center", fontsize=7)
            ax.set_yticks(range(len(cs)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.axvline(limit, color="black", ls="--", lw=1.2, label=f"target {limit:g} s ({target['base']} time)")
            ax.set_xlim(0, max([limit * 1.25, *[v * 1.15 for v in values]]))
        else:
            vals = [c["value_s"] for _, c in cs if c["value_s"] is not None]
            missing = sum(1 for _, c in cs if c["value_s"] is None)
            if vals:
                ax.hist(vals, bins=30, color="#1f77b4")
            ax.axvline(limit, color="black", ls="--", lw=1.2, label=f"target {limit:g} s ({target['base']} time)")
            met = sum(1 for _, c in cs if c["ok"])
            ax.set_ylabel("alarms")
            ax.text(0.99, 0.95, f"met {met} of {len(cs)}; never: {missing}", transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.set_title(_CHECK_LABEL.get(key, key), fontsize=10)
        ax.set_xlabel(f"seconds ({target['base']} time)")
        ax.legend(loc="lower right" if per_alarm else "upper left", fontsize=8)
    fig.suptitle(f"{report['scenario']['name']}: latencies against targets (green met, red missed, hatched never happened)", fontsize=10)
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
t=0 at {t['t0_ms']} ms (drill clock)</span></div>
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
