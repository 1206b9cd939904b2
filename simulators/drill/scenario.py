"""Drill scenarios: a timeline of hazards in YAML, resolved against a site directory.

How this works: `load_scenario(path, sites)` reads the YAML with line numbers (every mapping remembers the
line it starts on), checks its shape, and resolves every place ("building 3, unit 2, room 501") to the
device ids, building and gateway it names in *this* site directory. Anything that does not exist, or is
ambiguous, is a `ScenarioError` naming the file and line and saying what does exist nearby. A loaded
`Scenario` is a plain frozen value; nothing here does I/O beyond reading the file.

File shape (docs/drills.md has the full reference):

    scenario: kitchen-fire            # a short name (used for report folders)
    title: {zh: 高层住宅厨房火灾, en: Kitchen fire in a high-rise}
    speed: 20                         # default time compression (1 = real time); the CLI may override
    run_for: 5m                       # drill time, from t=0, the drill lasts
    responders:                       # simulated people (omit: nobody answers, or real people do)
      - {rung: fire_station, alarms: [smoke], acknowledge: 10s..30s, on_scene: 90s±20s}
      - {rung: grid_worker, alarms: [sos], callback: {outcome: no_answer, after: 20s}}   # an SOS call-back (回访)
    timeline:
      - {at: 0s, smoke: {building: 3, unit: 2, room: "501"}}
      - {at: 60s, uplink_cut: {gateway: 2, for: 5m}}

Invariants: every step's devices exist in the directory and are of the class its action needs; steps are
sorted by `at`; times are seconds of drill time (scenario time, before compression).

Errors:

    ScenarioError (ValueError)      file, line, message; `problems` holds every problem found
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from backend.sites.model import Device, SiteDirectory
from broker.kinds import DeviceKind

__all__ = [
    "ACTIONS",
    "Delay",
    "DrillStep",
    "ResponderProfile",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]

# The ladder's rungs a simulated responder can stand for (DOMAIN.md), and the seat that fills each.
RUNGS: Final = ("grid_worker", "building_leader", "fire_station", "volunteer", "duty_officer", "family")

# Alarm types a hazard is expected to raise: any one of the set counts (the thin path and the rule engine
# name some alarms differently: a hot cable is `electrical` from the device, `cable_temperature` from a rule).
_EXPECT: Final[dict[str, frozenset[str]]] = {
    "smoke": frozenset({"smoke", "confirmed_fire"}),
    "sos": frozenset({"sos"}),
    "tamper": frozenset({"tamper"}),
    "low_battery": frozenset({"low_battery"}),
    "cable_heating": frozenset({"electrical", "cable_temperature", "temperature_rise"}),
    "leakage_drift": frozenset({"electrical", "residual_current", "residual_drift"}),
    "power_cut": frozenset({"power_outage"}),
    "camera_outage": frozenset({"comm_lost"}),
    "uplink_cut": frozenset({"gateway_offline", "comm_lost"}),
}

# action -> (device class it acts on, or None for building/gateway actions; parameters it takes)
ACTIONS: Final[dict[str, tuple[DeviceKind | None, frozenset[str]]]] = {
    "smoke": (DeviceKind.SMOKE, frozenset({"for"})),
    "self_test": (DeviceKind.SMOKE, frozenset()),
    "tamper": (DeviceKind.SMOKE, frozenset({"for"})),
    "sos": (DeviceKind.SOS, frozenset({"phantom"})),
    "low_battery": (DeviceKind.SMOKE, frozenset()),
    "cable_heating": (DeviceKind.ELECTRICAL, frozenset({"c_per_min", "for"})),
    "leakage_drift": (DeviceKind.ELECTRICAL, frozenset({"ma_per_h"})),
    "camera_outage": (DeviceKind.CAMERA, frozenset({"for"})),
    "power_cut": (None, frozenset({"for"})),
    "uplink_cut": (None, frozenset({"for"})),
}
_PLACE_KEYS: Final = frozenset({"community", "building", "unit", "room", "location", "device", "gateway", "count", "camera"})
_TOP_KEYS: Final = frozenset({"scenario", "title", "summary", "speed", "run_for", "seed", "responders", "timeline", "expect_quiet"})
_RESPONDER_KEYS: Final = frozenset({"rung", "who", "alarms", "acknowledge", "depart", "on_scene", "handle", "close", "callback"})
# what a simulated call-back (回访) of an SOS press may find (alerting.ladder.CallbackOutcome's values)
CALLBACK_OUTCOMES: Final = ("answered_fine", "needs_help", "no_answer", "false_press")


class ScenarioError(ValueError):
    def __init__(self, file: str, problems: Sequence[tuple[int, str]]) -> None:
        self.file = file
        self.problems = list(problems)
        self.line = self.problems[0][0] if self.problems else 0
        shown = "\n".join(f"  {file}:{line}: {msg}" for line, msg in self.problems[:30])
        super().__init__(f"scenario {file} has {len(self.problems)} problem(s):\n{shown}")


# ---------------------------------------------------------------- YAML with line numbers


class _Map(dict[str, Any]):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    for k, v in node.value:
        out[str(loader.construct_object(k, deep=True))] = loader.construct_object(v, deep=True)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct)


# ---------------------------------------------------------------- times and delays

_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h)")


def parse_duration(value: object) -> float:
    """Seconds from 20, 2.5, "20s", "5m", "1m30s", "1h", "250ms". Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")  # noqa: TRY004  # callers report ValueError as a scenario problem
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration")
        return float(value)
    text = str(value).strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration: write e.g. 20s, 5m, 1m30s or 1h")
    return total


@dataclass(frozen=True, slots=True)
class Delay:
    """A response time: fixed ("20s"), uniform ("10s..30s") or normal, cut at zero ("90s±20s")."""

    low_s: float
    high_s: float
    normal: bool = False

    @classmethod
    def parse(cls, value: object) -> Delay:
        text = str(value)
        for sep in ("±", "+-"):
            if sep in text:
                mean, sd = (parse_duration(p) for p in text.split(sep, 1))
                return cls(mean, sd, normal=True)
        if ".." in text:
            lo, hi = (parse_duration(p) for p in text.split("..", 1))
            if hi < lo:
                raise ValueError(f"{text!r}: the upper bound is below the lower one")
            return cls(lo, hi)
        d = parse_duration(value)
        return cls(d, d)

    def draw(self, rng: random.Random) -> float:
        if self.normal:
            return max(0.0, rng.gauss(self.low_s, self.high_s))
        return rng.uniform(self.low_s, self.high_s)

    def describe(self) -> str:
        if self.normal:
            return f"{self.low_s:g} s ± {self.high_s:g} s"
        return f"{self.low_s:g} s" if self.low_s == self.high_s else f"{self.low_s:g}–{self.high_s:g} s"


# ---------------------------------------------------------------- the values


@dataclass(frozen=True, slots=True)
class ResponderProfile:
    """A simulated person standing for one rung; each delay runs from the previous step (ack from the alarm)."""

    rung: str
    who: str | None  # a responder id; None: whoever sits in the rung's seat for the alarm's place
    alarms: frozenset[str]  # alarm types answered; empty: every type
    acknowledge: Delay | None
    depart: Delay | None
    on_scene: Delay | None
    handle: Delay | None
    close: bool
    line: int
    callback: tuple[str, Delay] | None = None  # (outcome, delay from the alarm): the SOS call-back this person records

    def answers(self, alarm_type: str) -> bool:
        return not self.alarms or alarm_type in self.alarms


@dataclass(frozen=True, slots=True)
class DrillStep:
    index: int
    at_s: float  # drill time after t=0
    action: str
    place: str  # as written, for people
    devices: tuple[str, ...]
    building: str | None
    gateway: str | None
    duration_s: float | None
    params: Mapping[str, float | bool]
    expect: frozenset[str]  # any one of these alarm types counts; empty: no alarm expected
    line: int

    def describe(self) -> str:
        n = len(self.devices)
        what = f"{n} devices" if n > 3 else ", ".join(self.devices) or (self.gateway or self.building or "")
        dur = f" for {self.duration_s:g} s" if self.duration_s else ""
        return f"t={self.at_s:g} s {self.action} at {self.place} ({what}){dur}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title_zh: str
    title_en: str
    summary_zh: str
    summary_en: str
    speed: float
    run_for_s: float
    seed: int
    responders: tuple[ResponderProfile, ...]
    steps: tuple[DrillStep, ...]
    file: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- parsing


class _Problems:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, msg: str) -> None:
        self.items.append((line, msg))


def _line(node: object, default: int) -> int:
    return node.line if isinstance(node, _Map) else default


def _i18n(node: object, line: int, p: _Problems, what: str) -> tuple[str, str]:
    if node is None:
        return "", ""
    if isinstance(node, str):
        return node, node
    if isinstance(node, Mapping) and set(node) <= {"zh", "en"}:
        zh, en = str(node.get("zh", "")), str(node.get("en", ""))
        return zh or en, en or zh
    p.add(line, f"{what} is text or {{zh: ..., en: ...}}")
    return "", ""


def parse_scenario(text: str, sites: SiteDirectory, file: str = "<scenario>") -> Scenario:
    p = _Problems(file)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506  # _Loader is a SafeLoader with line numbers
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScenarioError(file, [((mark.line + 1) if mark else 0, f"not valid YAML: {exc}")]) from None
    if not isinstance(doc, _Map):
        raise ScenarioError(file, [(1, "a scenario file holds a mapping with scenario, timeline, ...")])
    for k in sorted(set(doc) - _TOP_KEYS):
        p.add(doc.line, f"unknown key {k!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    name = str(doc.get("scenario") or Path(file).stem)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        p.add(doc.line, f"scenario name {name!r} must be lower-case letters, digits, - or _")
    title_zh, title_en = _i18n(doc.get("title"), doc.line, p, "title")
    summary_zh, summary_en = _i18n(doc.get("summary"), doc.line, p, "summary")
    speed = _number(doc.get("speed", 1.0), doc.line, p, "speed", positive=True)
    run_for = _duration(doc.get("run_for", "5m"), doc.line, p, "run_for")
    seed = int(_number(doc.get("seed", 1), doc.line, p, "seed"))
    responders = tuple(_responders(doc.get("responders") or [], doc.line, p))
    raw_steps = doc.get("timeline")
    if not isinstance(raw_steps, list) or not raw_steps:
        p.add(doc.line, "timeline must be a non-empty list of steps like {at: 0s, smoke: {building: 3, unit: 2, room: \"501\"}}")
        raw_steps = []
    resolver = _Resolver(sites)
    steps = [s for i, node in enumerate(raw_steps) if (s := _step(i, node, doc.line, resolver, p)) is not None]
    steps.sort(key=lambda s: (s.at_s, s.index))
    if steps and run_for < steps[-1].at_s:
        p.add(doc.line, f"run_for ({run_for:g} s) ends before the last step (t={steps[-1].at_s:g} s)")
    if p.items:
        raise ScenarioError(file, sorted(p.items))
    return Scenario(name, title_zh or name, title_en or name, summary_zh, summary_en, speed, run_for, seed, responders, tuple(steps), file)


def load_scenario(path: Path | str, sites: SiteDirectory) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [(0, f"cannot read the scenario: {exc.strerror or exc}")]) from None
    return parse_scenario(text, sites, str(path))


def _number(v: object, line: int, p: _Problems, what: str, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or (positive and v <= 0):
        p.add(line, f"{what} must be a {'positive ' if positive else ''}number, not {v!r}")
        return 1.0
    return float(v)


def _duration(v: object, line: int, p: _Problems, what: str) -> float:
    try:
        return parse_duration(v)
    except ValueError as exc:
        p.add(line, f"{what}: {exc}")
        return 0.0


def _responders(nodes: object, line: int, p: _Problems) -> Iterator[ResponderProfile]:
    if not isinstance(nodes, list):
        p.add(line, "responders is a list of {rung: ..., acknowledge: ..., on_scene: ...}")
        return
    for node in nodes:
        ln = _line(node, line)
        if not isinstance(node, Mapping):
            p.add(ln, "a responder is a mapping like {rung: grid_worker, acknowledge: 20s..40s}")
            continue
        for k in sorted(set(node) - _RESPONDER_KEYS):
            p.add(ln, f"unknown responder key {k!r} (known: {', '.join(sorted(_RESPONDER_KEYS))})")
        rung = str(node.get("rung", ""))
        if rung not in RUNGS:
            p.add(ln, f"rung {rung!r} is not one of {', '.join(RUNGS)}")
        delays: dict[str, Delay | None] = {}
        for key in ("acknowledge", "depart", "on_scene", "handle"):
            try:
                delays[key] = Delay.parse(node[key]) if node.get(key) is not None else None
            except ValueError as exc:
                p.add(ln, f"{key}: {exc}")
                delays[key] = None
        alarms = node.get("alarms") or []
        if not isinstance(alarms, list):
            p.add(ln, "alarms is a list of alarm types, e.g. [smoke, sos]")
            alarms = []
        who = node.get("who")
        yield ResponderProfile(rung, str(who) if who else None, frozenset(map(str, alarms)), delays["acknowledge"], delays["depart"],
                               delays["on_scene"], delays["handle"], bool(node.get("close", False)), ln, _callback(node.get("callback"), ln, p))


def _callback(node: object, ln: int, p: _Problems) -> tuple[str, Delay] | None:
    if node is None:
        return None
    if not isinstance(node, Mapping) or set(node) - {"outcome", "after"} or node.get("outcome") not in CALLBACK_OUTCOMES:
        p.add(ln, f"callback is {{outcome: {'|'.join(CALLBACK_OUTCOMES)}, after: 20s}}")
        return None
    try:
        return str(node["outcome"]), Delay.parse(node.get("after", "20s"))
    except ValueError as exc:
        p.add(ln, f"callback.after: {exc}")
        return None


def _step(index: int, node: object, line: int, resolver: _Resolver, p: _Problems) -> DrillStep | None:
    ln = _line(node, line)
    if not isinstance(node, Mapping):
        p.add(ln, "a step is a mapping like {at: 20s, smoke: {building: 3, unit: 2, room: \"501\"}}")
        return None
    actions = [k for k in node if k in ACTIONS]
    unknown = sorted(set(node) - set(ACTIONS) - {"at", "expect", "note"})
    if unknown:
        p.add(ln, f"unknown key(s) {', '.join(map(repr, unknown))}; actions are {', '.join(ACTIONS)}")
    if len(actions) != 1:
        p.add(ln, f"a step has exactly one action ({', '.join(ACTIONS)}); this one has {len(actions)}")
        return None
    action = actions[0]
    at = _duration(node.get("at", 0), ln, p, "at")
    spec = node[action]
    sln = _line(spec, ln)
    if not isinstance(spec, Mapping):
        p.add(sln, f"{action} takes a place, e.g. {{building: 3, unit: 2, room: \"501\"}}")
        return None
    kind, param_keys = ACTIONS[action]
    for k in sorted(set(spec) - _PLACE_KEYS - param_keys):
        p.add(sln, f"{action} does not take {k!r} (place keys: {', '.join(sorted(_PLACE_KEYS))}; parameters: {', '.join(sorted(param_keys)) or 'none'})")
    duration = _duration(spec["for"], sln, p, "for") if "for" in spec else None
    params: dict[str, float | bool] = {}
    for k in param_keys - {"for"}:
        if k in spec:
            v = spec[k]
            params[k] = bool(v) if k == "phantom" else _number(v, sln, p, k, positive=True)
    expect = _EXPECT.get(action, frozenset())
    if "expect" in node:
        e = node["expect"]
        expect = frozenset([str(e)] if isinstance(e, str) else map(str, e or []))
    try:
        devices, building, gateway, place = resolver.resolve(action, kind, spec)
    except _NotFound as exc:
        p.add(sln, str(exc))
        return None
    return DrillStep(index, at, action, place, devices, building, gateway, duration, params, expect, ln)


# ---------------------------------------------------------------- places


class _NotFound(Exception):
    pass


class _Resolver:
    """Places as people write them, against one site directory."""

    def __init__(self, sites: SiteDirectory) -> None:
        self.sites = sites

    def _building(self, spec: Mapping[str, Any]) -> str:
        b = spec["building"]
        community = spec.get("community")
        ids = sorted(self.sites.buildings)
        if community is not None:
            ids = [i for i in ids if self.sites.community_of_building(i) == str(community)]
            if not ids:
                raise _NotFound(f"no community {community!r} (known: {', '.join(sorted(self.sites.communities))})")
        if str(b) in self.sites.buildings and str(b) in ids:
            return str(b)
        names = {str(b), f"{b}号楼"} if not isinstance(b, bool) else {str(b)}
        hits = [i for i in ids if self.sites.buildings[i].name in names]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise _NotFound(f"building {b!r} is ambiguous: {', '.join(hits)} (add community: ...)")
        shown = ", ".join(f"{self.sites.buildings[i].name} ({i})" for i in ids[:12])
        raise _NotFound(f"no building {b!r} in the site directory (buildings: {shown}{' ...' if len(ids) > 12 else ''})")

    def resolve(self, action: str, kind: DeviceKind | None, spec: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None, str | None, str]:
        s = self.sites
        if "device" in spec:
            d = s.devices.get(str(spec["device"]))
            if d is None:
                raise _NotFound(f"no device {spec['device']!r} in the site directory")
            if kind is not None and d.kind is not kind:
                raise _NotFound(f"device {d.id} is a {d.kind.value} device; {action} needs a {kind.value} device")
            return (d.id,), d.building, d.gateway, d.id
        if action == "uplink_cut":
            return self._gateway(spec)
        if "building" not in spec:
            if "count" in spec and kind is not None:
                pool = sorted(d.id for d in s.devices.values() if d.kind is kind)
                return self._count(pool, spec["count"], kind, "the site"), None, None, f"{spec['count']} {kind.value} devices across the site"
            raise _NotFound(f"{action} needs a place: building (and unit, room or location), or device")
        bid = self._building(spec)
        b = s.buildings[bid]
        place = b.name + (f" {spec['unit']}单元" if "unit" in spec else "") + (f" {spec['room']}室" if "room" in spec else "") + (
            f" {spec['location']}" if "location" in spec else "")
        if action == "power_cut":
            return (), bid, None, place
        assert kind is not None
        cands: list[Device] = [d for d in s.devices_by_building[bid] if d.kind is kind]
        if "unit" in spec:
            unit = spec["unit"]
            if not isinstance(unit, int) or isinstance(unit, bool) or not 1 <= unit <= b.units:
                raise _NotFound(f"{b.name} ({bid}) has units 1..{b.units}, not {unit!r}")
            cands = [d for d in cands if d.unit == unit]
        if spec.get("room") == "any":  # the first household here that has such a device (SOS buttons are in some homes only)
            cands = [d for d in sorted(cands, key=lambda d: d.id) if d.household is not None][:1]
            if not cands:
                raise _NotFound(f"no household at {place} has a {kind.value} device")
        elif "room" in spec:
            room = str(spec["room"])
            homes = [h for h in s.households.values() if h.building == bid and h.room == room and ("unit" not in spec or h.unit == spec["unit"])]
            if not homes:
                rooms = sorted({h.room for h in s.households.values() if h.building == bid})
                raise _NotFound(f"no room {room!r} in {place.rsplit(' ', 1)[0]} (rooms: {', '.join(rooms[:8])} ... {rooms[-1] if rooms else ''})")
            if len(homes) > 1:
                raise _NotFound(f"room {room!r} of {b.name} is in several units: add unit: ...")
            cands = [d for d in cands if d.household == homes[0].id]
            if not cands:
                raise _NotFound(f"room {room} ({homes[0].id}) has no {kind.value} device" + (
                    "; households with an SOS button in this building: " + ", ".join(sorted(
                        f"unit {d.unit} room {s.households[d.household].room}" for d in s.devices_by_building[bid]
                        if d.kind is kind and d.household in s.households)[:8]) if kind is DeviceKind.SOS else ""))
        elif kind is DeviceKind.ELECTRICAL:
            cands = [d for d in cands if d.household is None]  # no room: the unit's distribution box
        if "location" in spec:
            loc = str(spec["location"])
            exact = [d for d in cands if d.location == loc]
            cands = exact or [d for d in cands if loc in d.location]
        if "camera" in spec:
            cands = [d for d in cands if d.id.endswith(f"cam{int(spec['camera']):02d}")]
        if not cands:
            raise _NotFound(f"no {kind.value} device at {place} ({bid})")
        ids = sorted(d.id for d in cands)
        if "count" in spec:
            return self._count(ids, spec["count"], kind, place), bid, None, place
        if len(ids) > 1 and action != "camera_outage":
            raise _NotFound(f"{place} holds {len(ids)} {kind.value} devices ({', '.join(ids[:4])}...): name a room, location or device")
        return tuple(ids), bid, s.devices[ids[0]].gateway, place

    def _count(self, pool: list[str], n: object, kind: DeviceKind, where: str) -> tuple[str, ...]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _NotFound(f"count must be a positive whole number, not {n!r}")
        if n > len(pool):
            raise _NotFound(f"count {n}: {where} has only {len(pool)} {kind.value} devices")
        step = len(pool) / n  # spread evenly over the pool: deterministic, and across buildings
        return tuple(pool[int(i * step)] for i in range(n))

    def _gateway(self, spec: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None, str | None, str]:
        s = self.sites
        if "gateway" in spec:
            g = spec["gateway"]
            if str(g) in s.gateways:
                gid = str(g)
            else:
                try:
                    bid = self._building({**spec, "building": g})
                except _NotFound:
                    bid = ""
                hits = [x.id for x in s.gateways.values() if x.building == bid]
                if len(hits) != 1:
                    raise _NotFound(f"no gateway {g!r}: give a gateway id or the number of the building it serves "
                                    f"(gateways: {', '.join(sorted(s.gateways)[:10])})")
                gid = hits[0]
        elif "building" in spec:
            bid = self._building(spec)
            hits = [x.id for x in s.gateways.values() if x.building == bid]
            if not hits:
                raise _NotFound(f"building {bid} has no gateway of its own")
            gid = hits[0]
        else:
            raise _NotFound("uplink_cut needs gateway: (an id, or a building number whose gateway it is) or building:")
        gw = s.gateways[gid]
        return (), gw.building, gid, f"gateway {gw.name or gid}"
