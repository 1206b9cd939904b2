"""The street office's monthly report (统计报表) of one community: pure computation over the month's rows.

How this works: `backend.reports.query` reads what the stores know about one community and one month (site time
zone) into a `MonthInput`; `monthly_report` turns it into plain figures (JSON-ready), no I/O, no clock: `now_ms` is an
argument, so the current month is measured up to now and a test's hand-built month has answers known in advance.

Figures (docs/reports.md says each one's meaning and source):
- alarms by type and outcome (real alarms raised in the month; drills counted apart). Outcome from the audit log:
  false alarm (ever moved to false_alarm), closed by a person (verify_close), resolved by the system (the device
  recovered: resolve), still open, or other (suppressed, archived without a close...);
- false alarms per device: a device is flagged when it had at least `FALSE_ALARM_MIN` false alarms in the month and
  they are at least `FALSE_ALARM_RATE` of its alarms;
- time to acknowledge / to on scene per rung of the ladder (escalation_log: first page of the rung -> the first field
  state its answers reached of that kind: `observed` entries, or the `response` notes of older logs), p50 / p90
  (nearest rank), against the targets: micro fire station on scene within 180 s (公消〔2015〕301号), and telecare:
  an SOS answered within 60 s in 97.5 % of cases, within 180 s in 99 %;
- SOS call-backs (回访, issue 18): the month's real call-backs by outcome (接通·平安, 接通·需要帮助, 无人接听, 误按, the
  deadline passed with none recorded, still open), the time from the press to an answered call (answered-fine, needs
  help, false press: someone picked up) p50 / p90 against telecare's 60 s for 97.5 % (a call nobody answered counts
  against it), and the false presses per SOS button (escalation_log: callback_opened / callback_outcome / callback_expired);
- drills held: drill alarms grouped into sessions (a gap of more than `DRILL_GAP_MS` starts a new one), sessions
  with a fire alarm counted against two a month;
- device health: camera working rate over the month (1 - time cameras were down / time they should have been up),
  a camera being down while it has an open comm_lost alarm, or its gateway a gateway_offline alarm, or its building a
  power_outage alarm; against 98 %. comm_lost alarms of every device kind, with their durations;
- patrol (巡检): the patrol_missed alarms of the month (the patrol keeps no other record).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ACK_STATES",
    "CALLBACK_OUTCOMES",
    "CAMERA_TARGET",
    "DRILLS_PER_MONTH",
    "FALSE_ALARM_MIN",
    "FALSE_ALARM_RATE",
    "FIRE_STATION_ON_SCENE_S",
    "ON_SCENE_STATES",
    "TELECARE_TARGETS",
    "LadderEvent",
    "MonthInput",
    "ReportAlarm",
    "answer_state",
    "monthly_report",
    "outcome",
    "percentile",
]

CAMERA_TARGET: Final = 0.98  # national target for camera working rate in key public areas (DOMAIN.md)
FIRE_STATION_ON_SCENE_S: Final = 180  # micro fire station on scene within 3 minutes (公消〔2015〕301号)
TELECARE_TARGETS: Final = ((60, 0.975), (180, 0.99))  # telecare practice: 97.5 % of calls answered within 60 s, 99 % within 180 s
DRILLS_PER_MONTH: Final = 2  # at least two simulated fire-alarm tests a month (DOMAIN.md)
# A device that cries wolf: DOMAIN.md gives no number for it, so this is our rule, stated in docs/reports.md: at least
# two false alarms in the month making up at least half of the device's alarms.
FALSE_ALARM_MIN: Final = 2
FALSE_ALARM_RATE: Final = 0.5
DRILL_GAP_MS: Final = 3_600_000  # drill alarms more than an hour apart belong to different drills
FIRE_TYPES: Final = frozenset({"smoke", "confirmed_fire"})
# A rung's answer is the field state it reached: the ladder logs a responder's committed move as `observed` with that
# state (alerting.ladder.engine.observe); logs written before issue 16 hold `response` notes ("<who>: <answer>").
ACK_STATES: Final = frozenset({"acknowledged", "en_route", "on_scene", "handled", "closed"})  # each implies "I have it"
ON_SCENE_STATES: Final = frozenset({"on_scene", "handled", "closed"})
_OLD_ANSWERS: Final = {"acknowledge": "acknowledged", "confirm": "acknowledged", "en_route": "en_route", "on_scene": "on_scene",
                       "handled": "handled", "closed": "closed"}
DOWN_TYPES: Final = frozenset({"comm_lost", "gateway_offline", "power_outage"})
_ENDED: Final = frozenset({"closed", "false_alarm", "archived"})
OUTCOMES: Final = ("closed", "false_alarm", "resolved", "open", "other")


@dataclass(frozen=True, slots=True)
class ReportAlarm:
    id: str
    alarm_type: str
    severity: str
    device_id: str | None
    gateway_id: str | None
    building_id: str | None
    drill: bool
    raised_at_ms: int
    updated_ms: int
    is_open: bool
    occurrences: int = 1
    title: str = ""
    moves: tuple[tuple[int, str, str], ...] = ()  # the audit log: (at_ms, move, to_state)


@dataclass(frozen=True, slots=True)
class LadderEvent:
    alarm_id: str
    kind: str  # paged, observed, response, ...
    rung: str | None
    at_ms: int
    detail: str = ""
    field_state: str | None = None  # observed: the field state the rung's answer reached


@dataclass(frozen=True, slots=True)
class MonthInput:
    community_id: str
    community_name: str
    month: str  # "2026-11"
    start_ms: int  # the month's first instant, site time
    end_ms: int  # the next month's first instant
    now_ms: int
    alarms: Sequence[ReportAlarm]  # raised in the month, plus the down-type alarms still down at its start
    ladder: Sequence[LadderEvent] = ()
    cameras: Sequence[tuple[str, str, str]] = ()  # (device id, gateway id, building id) of the community's cameras
    devices: int = 0  # devices of the community in the site directory
    rung_labels: dict[str, str] = field(default_factory=dict)


def outcome(a: ReportAlarm) -> str:
    moves = {m for _at, m, _to in a.moves}
    if any(to == "false_alarm" for _at, _m, to in a.moves):
        return "false_alarm"
    if a.is_open:
        return "open"
    if "verify_close" in moves:
        return "closed"
    if "resolve" in moves:
        return "resolved"
    return "other"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the value at rank ceil(q n)); None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def _in_month(a: ReportAlarm, inp: MonthInput) -> bool:
    return inp.start_ms <= a.raised_at_ms < inp.end_ms


def _by_type(real: Sequence[ReportAlarm]) -> list[dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for a in real:
        row = table.setdefault(a.alarm_type, {"alarm_type": a.alarm_type, "title": a.title, "total": 0, **dict.fromkeys(OUTCOMES, 0)})
        row["total"] += 1
        row[outcome(a)] += 1
    return sorted(table.values(), key=lambda r: (-r["total"], r["alarm_type"]))


def _false_devices(real: Sequence[ReportAlarm]) -> list[dict[str, Any]]:
    per: dict[str, list[ReportAlarm]] = defaultdict(list)
    for a in real:
        if a.device_id:
            per[a.device_id].append(a)
    rows = []
    for dev, alarms in per.items():
        false = sum(1 for a in alarms if outcome(a) == "false_alarm")
        if not false:
            continue
        rate = false / len(alarms)
        rows.append({"device_id": dev, "building_id": alarms[0].building_id, "alarms": len(alarms), "false_alarms": false, "rate": rate,
                     "flagged": false >= FALSE_ALARM_MIN and rate >= FALSE_ALARM_RATE})
    return sorted(rows, key=lambda r: (not r["flagged"], -r["false_alarms"], -r["rate"], r["device_id"]))


def answer_state(e: LadderEvent) -> str | None:
    """The field state a ladder log entry says a rung reached; None for anything else (a page, a decline)."""
    if e.kind == "observed":
        return e.field_state
    if e.kind == "response":  # before issue 16: "<actor>: <response>[ (<note>)]"
        word = e.detail.split(": ", 1)[1] if ": " in e.detail else e.detail
        return _OLD_ANSWERS.get(word.split(" ", 1)[0].strip())
    return None


def _summary(values: Sequence[float], target_s: float | None) -> dict[str, Any]:
    p50, p90 = percentile(values, 0.5), percentile(values, 0.9)
    out: dict[str, Any] = {"n": len(values), "p50_s": p50, "p90_s": p90, "target_s": target_s}
    if target_s is not None and values:
        out["within_target"] = sum(1 for v in values if v <= target_s) / len(values)
        out["meets_target"] = p90 is not None and p90 <= target_s
    return out


def _response_times(real_ids: set[str], ladder: Iterable[LadderEvent], labels: dict[str, str]) -> list[dict[str, Any]]:
    paged: dict[tuple[str, str], int] = {}
    ack: dict[tuple[str, str], int] = {}
    scene: dict[tuple[str, str], int] = {}
    for e in sorted(ladder, key=lambda x: x.at_ms):
        if e.alarm_id not in real_ids or e.rung is None:
            continue
        key = (e.alarm_id, e.rung)
        if e.kind == "paged":
            paged.setdefault(key, e.at_ms)
        elif key in paged and (reached := answer_state(e)) is not None:
            if reached in ACK_STATES:
                ack.setdefault(key, e.at_ms)
            if reached in ON_SCENE_STATES:
                scene.setdefault(key, e.at_ms)
    rungs = sorted({r for _a, r in paged})
    out = []
    for rung in rungs:
        acks = [(ack[k] - paged[k]) / 1000 for k in ack if k[1] == rung]
        scenes = [(scene[k] - paged[k]) / 1000 for k in scene if k[1] == rung]
        pages = sum(1 for k in paged if k[1] == rung)
        out.append({"rung": rung, "label": labels.get(rung, rung), "paged": pages,
                    "acknowledge": _summary(acks, None), "on_scene": _summary(scenes, FIRE_STATION_ON_SCENE_S if rung == "fire_station" else None),
                    "unanswered": pages - len(acks)})
    return out


def _telecare(real: Sequence[ReportAlarm], ladder: Iterable[LadderEvent]) -> dict[str, Any]:
    """SOS alarms: raised -> first answer by anyone (a rung's acknowledgement, or the lifecycle's)."""
    sos = {a.id: a for a in real if a.alarm_type == "sos"}
    first: dict[str, int] = {}
    for e in ladder:
        if e.alarm_id in sos and answer_state(e) in ACK_STATES:
            first[e.alarm_id] = min(first.get(e.alarm_id, e.at_ms), e.at_ms)
    for a in sos.values():
        acked = [at for at, _m, to in a.moves if to in ACK_STATES | {"false_alarm"}]
        if acked:
            first[a.id] = min(first.get(a.id, acked[0]), *acked)
    waits = [(first[i] - sos[i].raised_at_ms) / 1000 for i in first]
    out: dict[str, Any] = {"sos_alarms": len(sos), "answered": len(waits), "unanswered": len(sos) - len(waits),
                           "p50_s": percentile(waits, 0.5), "p90_s": percentile(waits, 0.9), "targets": []}
    for limit_s, share in TELECARE_TARGETS:
        # an unanswered SOS counts against the target: it was not answered within any limit
        got = sum(1 for w in waits if w <= limit_s) / len(sos) if sos else None
        out["targets"].append({"within_s": limit_s, "target": share, "share": got, "meets_target": got is None or got >= share})
    return out


CALLBACK_OUTCOMES: Final = ("answered_fine", "needs_help", "no_answer", "false_press")  # alerting.ladder.CallbackOutcome's values
_PICKED_UP: Final = frozenset({"answered_fine", "needs_help", "false_press"})  # someone answered the call


def _callbacks(real: Sequence[ReportAlarm], ladder: Iterable[LadderEvent]) -> dict[str, Any]:
    """The SOS call-backs of the month's real alarms: by outcome, time to an answered call, false presses per button."""
    by_id = {a.id: a for a in real}
    opened: dict[str, int] = {}
    got: dict[str, tuple[str, int]] = {}
    expired: set[str] = set()
    for e in ladder:
        if e.alarm_id not in by_id:
            continue
        if e.kind == "callback_opened":
            opened[e.alarm_id] = min(opened.get(e.alarm_id, e.at_ms), e.at_ms)
        elif e.kind == "callback_outcome" and ": " in e.detail:  # "<actor>: <outcome>[ (<note>)]"
            word = e.detail.split(": ", 1)[1].split(" ", 1)[0]
            if word in CALLBACK_OUTCOMES:
                got.setdefault(e.alarm_id, (word, e.at_ms))
        elif e.kind == "callback_expired":
            expired.add(e.alarm_id)
    counts = dict.fromkeys((*CALLBACK_OUTCOMES, "expired", "open"), 0)
    waits: list[float] = []
    false_per: dict[str, int] = defaultdict(int)
    for alarm_id, at in opened.items():
        if alarm_id in got:
            word, when = got[alarm_id]
            counts[word] += 1
            if word in _PICKED_UP:
                waits.append((when - at) / 1000)
            device = by_id[alarm_id].device_id
            if word == "false_press" and device:
                false_per[device] += 1
        else:
            counts["expired" if alarm_id in expired else "open"] += 1
    limit_s, share = TELECARE_TARGETS[0]
    within = sum(1 for w in waits if w <= limit_s) / len(opened) if opened else None  # an unanswered call-back counts against it
    return {
        "callbacks": len(opened), "by_outcome": counts,
        "time_to_answer": {**_summary(waits, limit_s), "share_within": within, "target_share": share,
                           "meets_target": within is None or within >= share},
        "false_press_devices": [{"device_id": d, "building_id": next((a.building_id for a in real if a.device_id == d), None), "false_presses": n}
                                for d, n in sorted(false_per.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


def _drills(alarms: Sequence[ReportAlarm], inp: MonthInput) -> dict[str, Any]:
    drills = sorted((a for a in alarms if a.drill and _in_month(a, inp)), key=lambda a: a.raised_at_ms)
    sessions: list[list[ReportAlarm]] = []
    for a in drills:
        if sessions and a.raised_at_ms - sessions[-1][-1].raised_at_ms <= DRILL_GAP_MS:
            sessions[-1].append(a)
        else:
            sessions.append([a])
    rows = [{"start_ms": s[0].raised_at_ms, "end_ms": s[-1].raised_at_ms, "alarms": len(s), "fire": any(a.alarm_type in FIRE_TYPES for a in s),
             "types": sorted({a.alarm_type for a in s})} for s in sessions]
    held = sum(1 for r in rows if r["fire"])
    return {"sessions": rows, "fire_drills": held, "required": DRILLS_PER_MONTH, "meets_target": held >= DRILLS_PER_MONTH}


def _ended_ms(a: ReportAlarm, cap_ms: int) -> int:
    ends = [at for at, _m, to in a.moves if to in _ENDED or _m == "resolve"]
    if ends:
        return min(ends)
    return a.updated_ms if not a.is_open else cap_ms


def _union(spans: Iterable[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def _health(alarms: Sequence[ReportAlarm], inp: MonthInput) -> dict[str, Any]:
    until = min(inp.end_ms, inp.now_ms)
    period = max(0, until - inp.start_ms)
    down = [a for a in alarms if a.alarm_type in DOWN_TYPES and not a.drill]

    def span(a: ReportAlarm) -> tuple[int, int] | None:
        s, e = max(a.raised_at_ms, inp.start_ms), min(_ended_ms(a, until), until)
        return (s, e) if e > s else None

    # each down alarm's span once, filed under what it takes down (a device, every device of a gateway, of a building)
    by_device: dict[str, list[tuple[int, int]]] = defaultdict(list)
    by_gateway: dict[str, list[tuple[int, int]]] = defaultdict(list)
    by_building: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for a in down:
        sp = span(a)
        if sp is None:
            continue
        if a.alarm_type == "comm_lost" and a.device_id:
            by_device[a.device_id].append(sp)
        elif a.alarm_type == "gateway_offline" and a.gateway_id:
            by_gateway[a.gateway_id].append(sp)
        elif a.alarm_type == "power_outage" and a.building_id:
            by_building[a.building_id].append(sp)
    cams: list[dict[str, Any]] = []
    for dev, gw, bld in inp.cameras:
        spans = by_device.get(dev, []) + by_gateway.get(gw, []) + by_building.get(bld, [])
        cams.append({"device_id": dev, "building_id": bld, "down_s": _union(spans) / 1000})
    possible = period / 1000 * len(cams)
    down_s = float(sum(c["down_s"] for c in cams))
    rate = (possible - down_s) / possible if possible > 0 else None
    lost: dict[str, dict[str, Any]] = {}
    for a in down:
        if a.alarm_type != "comm_lost" or not _in_month(a, inp):
            continue
        sp = span(a)
        row = lost.setdefault(a.device_id or "", {"device_id": a.device_id, "building_id": a.building_id, "alarms": 0, "down_s": 0.0,
                                                  "still_open": False})
        row["alarms"] += 1
        row["down_s"] += (sp[1] - sp[0]) / 1000 if sp else 0.0
        row["still_open"] = row["still_open"] or a.is_open
    worst = sorted((c for c in cams if c["down_s"] > 0), key=lambda c: -c["down_s"])[:10]
    return {"cameras": len(cams), "camera_rate": rate, "camera_target": CAMERA_TARGET, "meets_target": rate is None or rate >= CAMERA_TARGET,
            "camera_down_s": down_s, "period_s": period / 1000, "cameras_worst": worst, "devices": inp.devices,
            "comm_lost": sorted(lost.values(), key=lambda r: (-r["down_s"], str(r["device_id"]))),
            "gateway_offline": sum(1 for a in down if a.alarm_type == "gateway_offline" and _in_month(a, inp)),
            "power_outage": sum(1 for a in down if a.alarm_type == "power_outage" and _in_month(a, inp))}


def _patrol(real: Sequence[ReportAlarm], inp: MonthInput) -> dict[str, Any]:
    missed = [a for a in real if a.alarm_type == "patrol_missed"]
    per: dict[str, int] = defaultdict(int)
    for a in missed:  # misses per gateway: every miss after the first counts an occurrence
        per[a.gateway_id or a.device_id or "?"] += a.occurrences
    until = min(inp.end_ms, inp.now_ms)
    longest = max(((min(_ended_ms(a, until), until) - a.raised_at_ms) / 1000 for a in missed), default=0.0)
    return {"alarms": len(missed), "misses": sum(per.values()), "gateways": [{"gateway_id": g, "misses": n} for g, n in sorted(per.items())],
            "longest_s": longest, "source": "patrol_missed alarms (the patrol scheduler keeps no other record)"}


def monthly_report(inp: MonthInput) -> dict[str, Any]:
    """Every figure of the month (see the module docstring), JSON-ready."""
    month_alarms = [a for a in inp.alarms if _in_month(a, inp)]
    real = [a for a in month_alarms if not a.drill]
    real_ids = {a.id for a in real}
    totals = dict.fromkeys(OUTCOMES, 0)
    for a in real:
        totals[outcome(a)] += 1
    return {
        "community_id": inp.community_id, "community_name": inp.community_name, "month": inp.month, "start_ms": inp.start_ms,
        "end_ms": inp.end_ms, "measured_until_ms": min(inp.end_ms, inp.now_ms),
        "totals": {"real": len(real), "drill": len(month_alarms) - len(real), "life_safety_types": sum(1 for a in real if a.alarm_type in FIRE_TYPES | {"sos"}),
                   **totals},
        "by_type": _by_type(real),
        "false_alarm_devices": _false_devices(real),
        "false_alarm_rule": {"min_false_alarms": FALSE_ALARM_MIN, "min_rate": FALSE_ALARM_RATE},
        "response": _response_times(real_ids, inp.ladder, inp.rung_labels),
        "telecare": _telecare(real, inp.ladder),
        "callbacks": _callbacks(real, inp.ladder),
        "drills": _drills(inp.alarms, inp),
        "health": _health(inp.alarms, inp),
        "patrol": _patrol(real, inp),
    }
