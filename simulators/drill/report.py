"""The drill report as data: per alarm, seconds from hazard to alarm, to acknowledgement, to on scene, each
against its target, and what went wrong in plain words (Chinese and English).

How this works: `build_report(run, sites)` is a pure function of a `DrillRun` (what the runner injected and
when, and what the alarm store holds afterwards). Every figure is a difference of two stamps on the drill
clock: the hazard's time (the runner's t=0 plus the step's `at`) and stamps read from the store (the alarm's
`first_seen_ms` and `raised_at_ms`, its audit entries' `at_ms`). A figure in drill seconds divided by the
speed is wall seconds; the report gives both and says which one each target is held against:

- every target is held against **drill** seconds: *display within 10 s* (GB 50440 test practice) from the
  device's report (`first_seen_ms`) to the alarm in the store (`raised_at_ms`, which the console shows), and
  people's targets (*micro fire station on scene within 3 min*, *elderly call answered within 60 s*) from the
  alarm. Delays the drill simulates (an uplink cut holding messages at the gateway) happen in drill time; the
  software's own latency is real time multiplied by the speed in drill seconds, so compression can only make
  it look worse, never better. The wall-second equivalent is reported next to it.

Alarms belong to a step when they name one of its devices, or (for building- and gateway-wide steps) its
building or gateway; the drill's gateways send their status with the drill flag (an uplink cut's Last Will
too), so a cut's gateway_offline is a drill alarm; a real one on a step's gateway is reported as not flagged.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from alerting.model import AuditEntry
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord
from simulators.drill.responders import rung_of_actor
from simulators.drill.runner import DrillRun
from simulators.drill.scenario import DrillStep

__all__ = ["TARGETS", "Problem", "Target", "build_report", "local_time"]

FIRE_TYPES: Final = frozenset({"smoke", "confirmed_fire"})
_PEOPLE_STEPS: Final = (("acknowledge", "acknowledged"), ("depart", "departed"), ("arrive", "on_scene"), ("finish", "handled"),
                        ("verify_close", "closed"), ("mark_false", "false_alarm"))


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    limit_s: float
    base: str  # "wall" or "drill"
    zh: str
    en: str
    source: str


TARGETS: Final = {
    "display": Target("display", 10.0, "drill", "报警到达监控中心显示 ≤ 10 秒", "alarm displayed in the monitoring centre within 10 s",
                      "GB 50440-2007; current test practice"),
    "fire_on_scene": Target("fire_on_scene", 180.0, "drill", "微型消防站 3 分钟内到场", "micro fire station on scene within 3 minutes",
                            "公消〔2015〕301号"),
    "sos_answered": Target("sos_answered", 60.0, "drill", "老人呼救 60 秒内应答", "elderly call answered within 60 s",
                           "telecare practice: 97.5 % within 60 s"),
}


@dataclass(frozen=True, slots=True)
class Problem:
    zh: str
    en: str
    alarm_id: str | None = None
    step: int | None = None
    kind: str = ""  # problems of one kind on many alarms are summed up in one line (an alarm storm)
    group_zh: str = ""
    group_en: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"zh": self.zh, "en": self.en, "alarm_id": self.alarm_id, "step": self.step, "kind": self.kind}


GROUP_OVER: Final = 5


def _grouped(problems: list[Problem]) -> list[dict[str, Any]]:
    by_kind: dict[str, list[Problem]] = {}
    for p in problems:
        if p.kind:
            by_kind.setdefault(p.kind, []).append(p)
    out, done = [], set()
    for p in problems:
        many = by_kind.get(p.kind, [])
        if p.kind and len(many) > GROUP_OVER:
            if p.kind not in done:
                done.add(p.kind)
                out.append({"zh": f"{len(many)} 条报警：{p.group_zh}（如 {many[0].zh}）", "en": f"{len(many)} alarms: {p.group_en} (e.g. {many[0].en})",
                            "alarm_id": None, "step": None, "kind": p.kind, "alarm_ids": [m.alarm_id for m in many]})
            continue
        out.append(p.as_json())
    return out


def _s(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def _belongs(alarm: AlarmRecord, step: DrillStep) -> bool:
    if alarm.device_id is not None and alarm.device_id in step.devices:
        return True
    if step.action == "uplink_cut":
        return alarm.gateway_id == step.gateway and alarm.device_id is None
    if step.action == "power_cut":
        return alarm.building_id == step.building
    # a building-wide alarm (two detectors agreeing: a confirmed fire) belongs to the step whose alarm type it expects
    return alarm.device_id is None and alarm.building_id == step.building and alarm.alarm_type in step.expect


def _step_of(alarm: AlarmRecord, steps: list[DrillStep], hazard_ms: dict[int, int]) -> DrillStep | None:
    """The latest step at or before the alarm that it belongs to (a device alarmed twice belongs to the second)."""
    best = None
    for s in steps:
        if _belongs(alarm, s) and hazard_ms[s.index] <= alarm.raised_at_ms + 1000:
            best = s
    return best


def _first(audit: list[AuditEntry], move: str) -> AuditEntry | None:
    return next((e for e in audit if e.move == move), None)


def _place(sites: SiteDirectory, a: AlarmRecord) -> str:
    b = sites.buildings.get(a.building_id or "")
    d = sites.devices.get(a.device_id or "")
    parts = [b.name if b else (a.building_id or a.gateway_id or "")]
    if d is not None and d.unit is not None:
        parts.append(f"{d.unit}单元")
    if d is not None and d.household in sites.households:
        parts.append(f"{sites.households[d.household].room}室")
    if d is not None and d.location:
        parts.append(d.location)
    return " ".join(p for p in parts if p)


def _check(target: Target, value_drill_s: float | None, speed: float, zh_none: str, en_none: str) -> dict[str, Any]:
    value = None if value_drill_s is None else (value_drill_s / speed if target.base == "wall" else value_drill_s)
    ok = value is not None and value <= target.limit_s
    return {"target": target.key, "limit_s": target.limit_s, "base": target.base, "value_s": None if value is None else round(value, 3),
            "ok": ok, "zh": target.zh, "en": target.en, "missing_zh": zh_none if value is None else "", "missing_en": en_none if value is None else ""}


def local_time(ms: int, time_zone: str) -> str:
    """A drill-clock instant as the site's wall-clock time a person reads (e.g. Beijing time), with its offset."""
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(time_zone)).isoformat(sep=" ", timespec="seconds")


def build_report(run: DrillRun, sites: SiteDirectory, time_zone: str = "Asia/Shanghai") -> dict[str, Any]:
    sc, speed = run.scenario, run.speed
    steps = list(sc.steps)
    problems: list[Problem] = []
    end_ms = run.t0_ms + round(sc.run_for_s * 1000)  # what the simulator's clean shutdown causes afterwards is not the drill's
    # A drill alarm whose device report came inside the drill is the drill's even when a backlogged system raised it
    # after the end: leaving it out would say "no alarm" where the truth is "a late alarm" (its display check fails).
    in_drill = [a for a in run.alarms if a.raised_at_ms <= end_ms or (a.drill and a.first_seen_ms <= end_ms)]
    drill_alarms = [a for a in in_drill if a.drill]
    related_real = [a for a in in_drill if not a.drill and any(_belongs(a, s) for s in steps if s.action in ("uplink_cut", "power_cut"))]
    other_real = [a for a in in_drill if not a.drill and a not in related_real]
    acts_by_alarm: dict[str, list[dict[str, Any]]] = {}
    for act in run.acts:
        acts_by_alarm.setdefault(act.alarm_id, []).append(act.as_json())
    rows: list[dict[str, Any]] = []
    for a in sorted(drill_alarms + related_real, key=lambda x: (x.raised_at_ms, x.id)):
        audit = run.audits.get(a.id, [])
        step = _step_of(a, steps, run.hazard_ms)
        hazard = run.hazard_ms[step.index] if step is not None else None
        people = [{"move": e.move, "actor": e.actor, "rung": rung_of_actor(sites, e.actor), "at_ms": e.at_ms,
                   "after_alarm_s": _s(e.at_ms - a.raised_at_ms), "after_hazard_s": _s(e.at_ms - hazard) if hazard else None}
                  for e in audit if e.move in dict(_PEOPLE_STEPS)]
        ack, arrive = _first(audit, "acknowledge"), _first(audit, "arrive")
        fire_arrive = next((e for e in audit if e.move == "arrive" and rung_of_actor(sites, e.actor) == "fire_station"), None)
        seen = run.observed_ms.get(a.id)
        figures = {
            "seen_by_drill_s": _s(seen - a.first_seen_ms) if seen is not None else None,
            "hazard_to_alarm_s": _s(a.raised_at_ms - hazard) if hazard is not None else None,
            "report_to_alarm_s": _s(a.raised_at_ms - a.first_seen_ms),
            "report_to_alarm_wall_s": round((a.raised_at_ms - a.first_seen_ms) / 1000 / speed, 4),
            "alarm_to_ack_s": _s(ack.at_ms - a.raised_at_ms) if ack else None,
            "alarm_to_on_scene_s": _s(arrive.at_ms - a.raised_at_ms) if arrive else None,
            "hazard_to_on_scene_s": _s(arrive.at_ms - hazard) if arrive and hazard is not None else None,
        }
        checks = [_check(TARGETS["display"], (a.raised_at_ms - a.first_seen_ms) / 1000, speed, "", "")]
        where = _place(sites, a)
        if seen is not None and (seen - a.raised_at_ms) / 1000 > TARGETS["display"].limit_s:
            problems.append(Problem(
                f"{where}「{a.alarm_type}」报警的时间戳是 {_s(a.raised_at_ms - a.first_seen_ms)} 秒，"
                f"但演练在 {_s(seen - a.first_seen_ms)} 秒后才在报警库中看到它（系统积压）。",
                f"The {a.alarm_type} alarm at {a.device_id or a.gateway_id} is stamped {_s(a.raised_at_ms - a.first_seen_ms)} s after the report, "
                f"but the drill saw it in the store only {_s(seen - a.first_seen_ms)} s after (a backlog in the system).", a.id,
                kind=f"{a.alarm_type}:backlog", group_zh=f"「{a.alarm_type}」报警写入报警库晚于其时间戳 10 秒以上（系统积压）",
                group_en=f"{a.alarm_type} alarms reached the store more than 10 s after their own timestamp (a backlog)"))
        if a.alarm_type in FIRE_TYPES:
            v = (fire_arrive.at_ms - a.raised_at_ms) / 1000 if fire_arrive else None
            checks.append(_check(TARGETS["fire_on_scene"], v, speed, "微型消防站未到场", "the micro fire station never arrived"))
        if a.alarm_type == "sos":
            v = (ack.at_ms - a.raised_at_ms) / 1000 if ack else None
            checks.append(_check(TARGETS["sos_answered"], v, speed, "无人应答", "nobody answered"))
        for c in checks:
            if c["ok"]:
                continue
            kind = f"{a.alarm_type}:{c['target']}:{'never' if c['value_s'] is None else 'late'}"
            if c["value_s"] is None:
                problems.append(Problem(f"{where}「{a.alarm_type}」报警：{c['zh']}——{c['missing_zh']}。",
                                        f"{a.alarm_type} alarm at {a.device_id or a.gateway_id}: {c['en']}: {c['missing_en']}.", a.id,
                                        kind=kind, group_zh=f"「{a.alarm_type}」{c['zh']}——{c['missing_zh']}",
                                        group_en=f"{a.alarm_type}: {c['en']}: {c['missing_en']}"))
            else:
                unit = "秒（实际时间）" if c["base"] == "wall" else "秒（演练时间）"
                problems.append(Problem(f"{where}「{a.alarm_type}」报警：{c['zh']}，实际 {c['value_s']:.1f} {unit}。",
                                        f"{a.alarm_type} alarm at {a.device_id or a.gateway_id}: {c['en']}, took {c['value_s']:.1f} {c['base']} s.", a.id,
                                        kind=kind, group_zh=f"「{a.alarm_type}」未达到：{c['zh']}", group_en=f"{a.alarm_type}: missed {c['en']}"))
        if step is not None and step.action == "power_cut" and a.alarm_type == "comm_lost" and a.state != "suppressed":
            problems.append(Problem(f"{where} 的通信中断报警没有被停电报警抑制（状态：{a.state}），值班员会看到本应合并的报警。",
                                    f"The comm_lost alarm of {a.device_id} was not suppressed by the power cut (state {a.state}): "
                                    "cause did not suppress effect.", a.id, kind="unsuppressed",
                                    group_zh="停电导致的设备离线报警没有被抑制", group_en="device-offline alarms caused by the power cut were not suppressed"))
        if a.drill and a.alarm_type in FIRE_TYPES | {"sos", "electrical"} and ack is None and a.alarm_type != "sos":
            problems.append(Problem(f"{where}「{a.alarm_type}」报警在演练结束前无人确认。",
                                    f"Nobody acknowledged the {a.alarm_type} alarm at {a.device_id} before the drill ended.", a.id,
                                    kind=f"{a.alarm_type}:unacknowledged", group_zh=f"「{a.alarm_type}」报警在演练结束前无人确认",
                                    group_en=f"{a.alarm_type} alarms nobody acknowledged before the drill ended"))
        if not a.drill and a.device_id is None:
            problems.append(Problem(f"网关 {a.gateway_id} 的「{a.alarm_type}」报警没有演练标记（网关状态消息不带 drill 字段），值班员会当作真实报警。",
                                    f"The {a.alarm_type} alarm of gateway {a.gateway_id} is not marked as a drill (the gateway status "
                                    "message has no drill flag): the console shows it as real.", a.id, kind="not-drill-gateway",
                                    group_zh="网关报警没有演练标记", group_en="gateway alarms not marked as drill"))
        elif not a.drill:
            problems.append(Problem(f"{where}「{a.alarm_type}」报警由演练引起，却没有演练标记（设备消息带有 drill 标记，途中丢失），值班员会当作真实报警。",
                                    f"The {a.alarm_type} alarm of {a.device_id} was caused by the drill but is not marked as a drill (the "
                                    "device's message carried drill=true; the flag was lost on the way): the console shows it as real.",
                                    a.id, kind=f"not-drill-{a.alarm_type}", group_zh=f"演练引起的「{a.alarm_type}」报警丢失了演练标记",
                                    group_en=f"{a.alarm_type} alarms caused by the drill lost the drill flag"))
        rows.append({
            "id": a.id, "type": a.alarm_type, "severity": a.severity, "title": a.title, "place": where, "device_id": a.device_id,
            "gateway_id": a.gateway_id, "building_id": a.building_id, "drill": a.drill, "state": a.state, "occurrences": a.occurrences,
            "step": step.index if step is not None else None, "hazard_ms": hazard, "first_seen_ms": a.first_seen_ms,
            "raised_at_ms": a.raised_at_ms, "people": people, "figures": figures, "checks": checks,
            "ladder": run.ladders.get(a.id), "simulated_acts": acts_by_alarm.get(a.id, []),
        })
    hazards = []
    for s in steps:
        mine = [r for r in rows if r["step"] == s.index]
        got = {r["type"] for r in mine}
        ok = not s.expect or bool(got & s.expect)
        alarmed = {r["device_id"] for r in mine}
        silent = [d for d in s.devices if d not in alarmed] if s.expect else []
        if silent and ok and len(s.devices) > 1:
            problems.append(Problem(f"第 {s.index + 1} 步的 {len(s.devices)} 个设备中有 {len(silent)} 个在出报告时报警库里还没有报警。",
                                    f"Step {s.index + 1}: {len(silent)} of its {len(s.devices)} devices had no alarm in the store when the report was made.",
                                    step=s.index))
        if not ok:
            problems.append(Problem(
                f"第 {s.index + 1} 步（t={s.at_s:g} 秒，{s.action}，{s.place}）没有产生预期的报警（{' / '.join(sorted(s.expect))}）。",
                f"Step {s.index + 1} (t={s.at_s:g} s, {s.action} at {s.place}) raised none of the expected alarms ({' / '.join(sorted(s.expect))}).",
                step=s.index))
        hazards.append({"step": s.index, "at_s": s.at_s, "action": s.action, "place": s.place, "devices": list(s.devices), "building": s.building,
                        "gateway": s.gateway, "duration_s": s.duration_s, "hazard_ms": run.hazard_ms[s.index], "expect": sorted(s.expect),
                        "alarms": [r["id"] for r in mine], "expected_alarm_raised": ok, "line": s.line})
    not_done = [a for a in run.acts if a.done_ms is None]
    if not_done:
        problems.append(Problem(f"{len(not_done)} 个模拟响应动作在演练结束时尚未到时间，未执行。",
                                f"{len(not_done)} simulated responder acts were not yet due when the drill ended and were not made."))
    if other_real:
        problems.append(Problem(f"演练期间有 {len(other_real)} 条真实报警（真实报警优先，演练未触碰它们）。",
                                f"{len(other_real)} real alarms were raised during the drill (a real alarm always wins; the drill left them alone)."))
    summary = _summary(rows, speed)
    summary["store_still_changing"] = run.store_still_changing
    return {
        "format": "shouwang-drill-report/1",
        "scenario": {"name": sc.name, "title_zh": sc.title_zh, "title_en": sc.title_en, "summary_zh": sc.summary_zh, "summary_en": sc.summary_en,
                     "file": sc.file, "run_for_s": sc.run_for_s, "seed": sc.seed},
        "time": {
            "speed": speed, "t0_ms": run.t0_ms, "end_ms": run.end_ms, "drill_seconds": round((run.end_ms - run.t0_ms) / 1000, 3),
            "time_zone": time_zone, "t0_local": local_time(run.t0_ms, time_zone), "end_local": local_time(run.end_ms, time_zone),
            "wall_started_local": local_time(round(run.wall_started * 1000), time_zone),
            "wall_seconds": round(run.wall_seconds, 3), "wall_started_unix_s": round(run.wall_started, 3),
            "statement_zh": (f"本次演练时间压缩 {speed:g} 倍：演练时间 {sc.run_for_s:g} 秒用实际时间约 {sc.run_for_s / speed:.1f} 秒完成。"
                             "系统、模拟设备和模拟人员使用同一个演练时钟，报警库中的时间戳都是演练时间，所有目标都按演练时间考核；"
                             "软件自身的时延在演练时间里被放大了同样的倍数（只会显得更慢，不会更快），实际时间 = 演练时间 ÷ 倍数。"
                             if speed != 1 else "本次演练按实际时间进行（未压缩）。"),
            "statement_en": (f"Drill time was compressed {speed:g}x: {sc.run_for_s:g} s of drill time ran in about {sc.run_for_s / speed:.1f} s of "
                             "real time. The system, the simulated devices and the simulated people shared one drill clock, so every "
                             "timestamp in the alarm store is drill time and every target is held against drill seconds. The "
                             "software's own latency is stretched by the same factor in drill time (it can only look slower, never "
                             "faster); wall seconds = drill seconds / speed."
                             if speed != 1 else "The drill ran in real time (no compression)."),
        },
        "target_system": run.target,
        "simulated_responders": run.simulated_responders,
        "targets": {k: {"limit_s": t.limit_s, "base": t.base, "zh": t.zh, "en": t.en, "source": t.source} for k, t in TARGETS.items()},
        "hazards": hazards,
        "alarms": rows,
        "real_alarms_during_drill": [{"id": a.id, "type": a.alarm_type, "raised_at_ms": a.raised_at_ms} for a in other_real],
        "problems": _grouped(problems),
        "summary": summary,
        "notes": run.notes,
        "messages_published": run.sent_messages,
    }


def _summary(rows: list[dict[str, Any]], speed: float) -> dict[str, Any]:
    out: dict[str, Any] = {"alarms": len(rows), "drill_alarms": sum(1 for r in rows if r["drill"])}
    for key in TARGETS:
        cs = [c for r in rows for c in r["checks"] if c["target"] == key]
        vals = [c["value_s"] for c in cs if c["value_s"] is not None]
        out[key] = {"checked": len(cs), "met": sum(1 for c in cs if c["ok"]), "median_s": round(statistics.median(vals), 3) if vals else None,
                    "max_s": max(vals) if vals else None}
    out["all_targets_met"] = all(c["ok"] for r in rows for c in r["checks"])
    return out
