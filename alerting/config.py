"""Rule configuration as values: parsed from plain mappings (the service reads the YAML files).

How this works: `parse_rules(data)` turns the mapping of alerting/rules/defaults.yaml (merged with a
deployment's file by `merge`) into a frozen `RuleConfig`, validating every section, key and number on the way
(unknown keys too: a typo must not pass silently) and naming the key that is wrong in `RuleConfigError.where`,
a dotted path into the mapping (backend.alarms.rules turns it into the file's line). `RuleConfig.threshold_params(rule, device, building)` resolves
per-building then per-device overrides (device wins), checked against the rule's `limits`; every override
is checked when the rules are parsed (`check_overrides`), and so are per-device settings added from the site
directory (`with_device_settings`), so a wrong one stops the start with its name instead of failing on the
device's first reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from alerting.book import BookSettings
from alerting.errors import AlertingError
from alerting.model import Severity
from broker.kinds import DeviceKind, EventKind

__all__ = [
    "DEFAULTS_RESOURCE",
    "AbsenceRule",
    "EventRule",
    "RuleConfig",
    "RuleConfigError",
    "ThresholdRule",
    "TrendRule",
    "merge",
    "parse_rules",
]

DEFAULTS_RESOURCE = "rules/defaults.yaml"  # package data of alerting; read by backend.alarms.rules


class RuleConfigError(AlertingError, ValueError):
    def __init__(self, where: str, why: str) -> None:
        self.where = where
        super().__init__(f"rules: {where}: {why}")


@dataclass(frozen=True, slots=True)
class EventRule:
    event: EventKind
    raises: str | None = None
    clears: str | None = None
    record: bool = False
    power: str | None = None  # "lost" or "restored"
    activity: bool = False  # counts as a sign of life for the welfare rule
    severity: Severity = Severity.MAJOR
    life_safety: bool = False
    title: str = ""


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    name: str
    metric: str
    kinds: frozenset[DeviceKind]
    level: float  # raise past this
    clear: float  # clear past this, the other way (hysteresis)
    below: bool = False  # raise when the value falls below `level` (under-voltage)
    for_s: float = 0.0
    samples: int = 1
    limits: tuple[float, float] | None = None
    severity: Severity = Severity.MAJOR
    title: str = ""
    # Higher severities as the hazard grows: (level, severity), each further past `level` than the one before and
    # each severity above the one before (residual current: 300 mA major, 500 mA critical). An open alarm's
    # severity rises when a reading passes the next level; it never falls while the alarm is open.
    levels: tuple[tuple[float, Severity], ...] = ()

    def severity_at(self, value: float) -> Severity:
        """The severity a reading of `value` calls for (the base severity below the first higher level)."""
        out = self.severity
        for level, severity in self.levels:
            if (value < level) if self.below else (value > level):
                out = severity
        return out


@dataclass(frozen=True, slots=True)
class TrendRule:
    name: str
    metric: str
    kinds: frozenset[DeviceKind]
    params: Mapping[str, float]
    severity: Severity = Severity.MAJOR
    title: str = ""


@dataclass(frozen=True, slots=True)
class AbsenceRule:
    misses: float
    grace_s: float


@dataclass(frozen=True, slots=True)
class RuleConfig:
    events: Mapping[EventKind, EventRule]
    thresholds: tuple[ThresholdRule, ...]
    trends: Mapping[str, TrendRule]
    absence: Mapping[DeviceKind, AbsenceRule]
    patrol_misses: float = 2.0
    patrol_default_period_s: float = 3600.0
    patrol_grace_s: float = 60.0
    confirmed_fire_smokes_in_unit: int = 2
    smoke_with_rise_window_s: float = 900.0
    welfare_activity_power_w: float = 300.0
    welfare_severity: Severity = Severity.MAJOR
    book: BookSettings = field(default_factory=BookSettings)
    building_overrides: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    device_overrides: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    # Clocks (GB 50440: clock error <= 5 s). Set from the deployment's settings (alerting.clock_skew_*), not the rules file.
    clock_skew_max_s: float = 5.0  # a device or gateway clock further than this from the centre's receive time is skewed
    clock_skew_confirm_s: float = 600.0  # a clock BEHIND by more than that for this long (receive time) is skewed: a late
    # message may also be one the gateway held during an uplink outage, which a live message soon follows

    def overrides_for(self, rule: str, device: str, building: str | None) -> dict[str, float]:
        out: dict[str, float] = {}
        if building is not None:
            out.update(self.building_overrides.get(building, {}).get(rule, {}))
        out.update(self.device_overrides.get(device, {}).get(rule, {}))
        return out

    def threshold_params(self, rule: ThresholdRule, device: str, building: str | None) -> ThresholdRule:
        o = self.overrides_for(rule.name, device, building)
        if not o:
            return rule
        out = _with_override(rule, o)
        _check_threshold(out, f"overrides for {device} / {building}")
        return out

    def with_device_settings(self, settings: Mapping[str, Mapping[str, Mapping[str, float]]], where: str = "site directory") -> RuleConfig:
        """These rules with per-device settings added (e.g. from the site directory: what the installer set on a
        detector, such as a distribution box's overload level). A rules file's own `overrides.devices` entry wins
        key by key. Every setting is checked now, naming the device, rather than when its first reading arrives."""
        merged: dict[str, dict[str, dict[str, float]]] = {d: {r: dict(p) for r, p in rs.items()} for d, rs in settings.items()}
        for device, rs in self.device_overrides.items():
            for rule, params in rs.items():
                merged.setdefault(device, {}).setdefault(rule, {}).update(params)
        out = replace(self, device_overrides=merged)
        out.check_overrides(where)
        return out

    def check_overrides(self, where: str = "overrides") -> None:
        """Every override names a rule and keys that exist, with values the rule accepts; RuleConfigError if not."""
        thresholds = {t.name: t for t in self.thresholds}
        for scope, table in (("buildings", self.building_overrides), ("devices", self.device_overrides)):
            for subject, rules in table.items():
                for rule, params in rules.items():
                    here = f"{where}.{scope}.{subject}.{rule}" if where == "overrides" else f"{where}: {scope}.{subject}.{rule}"
                    if not isinstance(params, Mapping):
                        raise RuleConfigError(here, "give a mapping of the rule's keys to numbers")
                    if rule in thresholds:
                        t = thresholds[rule]
                        allowed = {"below" if t.below else "above", "clear", "for_s", "samples", *(sev.value for _, sev in t.levels)}
                    elif rule in self.trends:
                        allowed = set(self.trends[rule].params)
                    elif rule == "absence":
                        allowed = {"misses", "grace_s"}
                    else:
                        known = sorted([*thresholds, *self.trends, "absence"])
                        raise RuleConfigError(here, f"no such rule; rules that take settings: {', '.join(known)}")
                    unknown = set(params) - allowed
                    if unknown:
                        raise RuleConfigError(here, f"unknown key(s) {', '.join(sorted(unknown))}; this rule takes {', '.join(sorted(allowed))}")
                    for k, v in params.items():
                        if isinstance(v, bool) or not isinstance(v, int | float):
                            raise RuleConfigError(here, f"{k} must be a number, not {v!r}")
                    if rule in thresholds:
                        _check_threshold(_with_override(thresholds[rule], params), here)
                    elif rule == "absence" and float(params.get("misses", 1)) <= 0:
                        raise RuleConfigError(here, "misses must be > 0")

    def trend_param(self, rule: TrendRule, key: str, device: str, building: str | None) -> float:
        return float(self.overrides_for(rule.name, device, building).get(key, rule.params[key]))

    def absence_window_s(self, kind: DeviceKind, interval_s: float, device: str, building: str | None) -> float:
        rule = self.absence.get(kind) or self.absence[DeviceKind.OTHER]
        o = self.overrides_for("absence", device, building)
        return float(o.get("misses", rule.misses)) * interval_s + float(o.get("grace_s", rule.grace_s))


def _with_override(rule: ThresholdRule, o: Mapping[str, float]) -> ThresholdRule:
    """The rule with an override's keys applied: the level (`above`/`below`), `clear`, debounce, higher levels by severity.
    A higher level the override does not name moves with the level, as `clear` does (the band is kept)."""
    level = float(o.get("above", o.get("below", rule.level)))
    clear = float(o["clear"]) if "clear" in o else _default_clear(rule, level)
    levels = tuple((float(o[sev.value]) if sev.value in o else lv + level - rule.level, sev) for lv, sev in rule.levels)
    return replace(rule, level=level, clear=clear, for_s=float(o.get("for_s", rule.for_s)), samples=int(o.get("samples", rule.samples)),
                   levels=levels)


def _default_clear(rule: ThresholdRule, level: float) -> float:
    """Keep the rule's hysteresis band when an override moves only the level."""
    return level - (rule.level - rule.clear)


def _check_threshold(rule: ThresholdRule, where: str, levels_at: str = "") -> None:
    """Refuse a rule that cannot work; `levels_at` is where its higher levels sit under `where` ("levels." in a rule)."""
    if rule.below and not rule.clear > rule.level:
        raise RuleConfigError(where, f"{rule.name}: clear ({rule.clear}) must be above the level ({rule.level}) for a 'below' rule")
    if not rule.below and not rule.clear < rule.level:
        raise RuleConfigError(where, f"{rule.name}: clear ({rule.clear}) must be below the level ({rule.level})")
    if rule.limits is not None and not rule.limits[0] <= rule.level <= rule.limits[1]:
        raise RuleConfigError(where, f"{rule.name}: {rule.level} is outside the settable range {rule.limits[0]}-{rule.limits[1]}")
    if rule.for_s < 0 or rule.samples < 1:
        raise RuleConfigError(where, f"{rule.name}: for_s must be >= 0 and samples >= 1")
    before_level, before_sev, way = rule.level, rule.severity, "below" if rule.below else "above"
    for level, severity in rule.levels:
        if (level >= before_level) if rule.below else (level <= before_level):
            raise RuleConfigError(f"{where}.{levels_at}{severity.value}", f"{rule.name}: the {severity.value} level ({level:g}) must be {way} {before_level:g} "
                                         f"(the level before it); move it or lower the level")
        if severity.rank <= before_sev.rank:
            raise RuleConfigError(f"{where}.{levels_at}{severity.value}",
                                  f"{rule.name}: levels must rise in severity: {severity.value} after {before_sev.value}")
        before_level, before_sev = level, severity


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `over` into `base` (mappings merge, anything else replaces)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _kinds(values: Any, where: str) -> frozenset[DeviceKind]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise RuleConfigError(f"{where}.kinds", f"kinds is a list of device classes ({', '.join(k.value for k in DeviceKind)})")
    try:
        return frozenset(DeviceKind(v) for v in values)
    except ValueError as exc:
        raise RuleConfigError(f"{where}.kinds", f"{exc}; device classes: {', '.join(k.value for k in DeviceKind)}") from exc


def _severity(value: Any, where: str) -> Severity:
    try:
        return Severity(value)
    except ValueError as exc:
        raise RuleConfigError(where, f"severity must be one of {', '.join(s.value for s in Severity)}, not {value!r}") from exc


_SECTIONS = ("events", "thresholds", "trends", "absence", "composite", "welfare", "book", "overrides")
_EVENT_KEYS = frozenset({"raise", "clear", "record", "power", "activity", "severity", "life_safety", "title"})
_THRESHOLD_KEYS = frozenset({"metric", "kinds", "above", "below", "clear", "for_s", "samples", "limits", "severity", "title", "levels"})


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RuleConfigError(where, f"give a mapping here, not {type(value).__name__} {value!r}")
    return value


def _only(spec: Mapping[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = set(spec) - set(allowed)
    if unknown:
        raise RuleConfigError(f"{where}.{sorted(unknown)[0]}", f"unknown key(s) {', '.join(sorted(unknown))}; allowed here: {', '.join(sorted(allowed))}")


def _num(spec: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = spec.get(key, default)
    if value is None:
        raise RuleConfigError(where, f"{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleConfigError(f"{where}.{key}", f"{key} must be a number, not {value!r}")
    return float(value)


def _levels(spec: Any, where: str) -> tuple[tuple[float, Severity], ...]:
    """`levels: {critical: 500}`: higher severities by the level that calls for them, in rising order of severity."""
    out = [(_num(spec, name, where), _severity(name, f"{where}.{name}")) for name in _mapping(spec, where)]
    return tuple(sorted(out, key=lambda lv: lv[1].rank))


def parse_rules(data: Mapping[str, Any]) -> RuleConfig:
    _only(data, set(_SECTIONS), "rules")
    events: dict[EventKind, EventRule] = {}
    for name, raw_spec in _mapping(data.get("events"), "events").items():
        where = f"events.{name}"
        try:
            kind = EventKind(name)
        except ValueError as exc:
            raise RuleConfigError(where, f"not an event kind of the wire contract; known: {', '.join(k.value for k in EventKind)}") from exc
        spec = _mapping(raw_spec, where)
        _only(spec, _EVENT_KEYS, where)
        rule = EventRule(kind, raises=spec.get("raise"), clears=spec.get("clear"), record=bool(spec.get("record", False)),
                         power=spec.get("power"), activity=bool(spec.get("activity", False)),
                         severity=_severity(spec.get("severity", "major"), where), life_safety=bool(spec.get("life_safety", False)),
                         title=str(spec.get("title", "")))
        if sum((rule.raises is not None, rule.clears is not None, rule.power is not None, rule.record)) != 1:
            raise RuleConfigError(where, "give exactly one of raise, clear, power or record")
        if rule.power not in (None, "lost", "restored"):
            raise RuleConfigError(where, "power must be 'lost' or 'restored'")
        events[kind] = rule
    thresholds: list[ThresholdRule] = []
    for name, raw_spec in _mapping(data.get("thresholds"), "thresholds").items():
        where = f"thresholds.{name}"
        spec = _mapping(raw_spec, where)
        _only(spec, _THRESHOLD_KEYS, where)
        if ("above" in spec) == ("below" in spec):
            raise RuleConfigError(where, "give exactly one of above or below")
        if "metric" not in spec:
            raise RuleConfigError(where, "metric is missing (e.g. metric: residual_current_ma)")
        limits = spec.get("limits")
        if limits is not None and (not isinstance(limits, list | tuple) or len(limits) != 2):
            raise RuleConfigError(f"{where}.limits", "limits is [lowest, highest] settable level")
        t = ThresholdRule(name, str(spec["metric"]), _kinds(spec.get("kinds", ["electrical"]), where),
                          _num(spec, "above" if "above" in spec else "below", where), _num(spec, "clear", where), "below" in spec,
                          _num(spec, "for_s", where, 0), int(_num(spec, "samples", where, 1)),
                          (_num({"l": limits[0]}, "l", f"{where}.limits"), _num({"l": limits[1]}, "l", f"{where}.limits")) if limits else None,
                          _severity(spec.get("severity", "major"), where), str(spec.get("title", name)), _levels(spec.get("levels"), f"{where}.levels"))
        _check_threshold(t, where, "levels.")
        thresholds.append(t)
    trends: dict[str, TrendRule] = {}
    for name, raw_spec in _mapping(data.get("trends"), "trends").items():
        where = f"trends.{name}"
        spec = _mapping(raw_spec, where)
        if "metric" not in spec:
            raise RuleConfigError(where, "metric is missing")
        params = {k: float(v) for k, v in spec.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        trends[name] = TrendRule(name, str(spec["metric"]), _kinds(spec.get("kinds", ["electrical"]), where), params,
                                 _severity(spec.get("severity", "major"), where), str(spec.get("title", name)))
    for name, needs in (("temperature_rise", ("rate_c_per_min", "min_span_s", "window_s")),
                        ("residual_drift", ("drift_ma", "baseline_hours", "warmup_hours"))):
        if name in trends and not set(needs) <= set(trends[name].params):
            raise RuleConfigError(f"trends.{name}", f"needs {', '.join(needs)}")
    absence_data = dict(_mapping(data.get("absence"), "absence"))
    patrol = _mapping(absence_data.pop("gateway_patrol", {}), "absence.gateway_patrol")
    _only(patrol, {"misses", "default_period_s", "grace_s"}, "absence.gateway_patrol")
    absence: dict[DeviceKind, AbsenceRule] = {DeviceKind.OTHER: AbsenceRule(3, 0)}
    for name, raw_spec in absence_data.items():
        where = f"absence.{name}"
        dkind = next(iter(_kinds([name], where)))
        spec = _mapping(raw_spec, where)
        _only(spec, {"misses", "grace_s"}, where)
        absence[dkind] = AbsenceRule(_num(spec, "misses", where, 3), _num(spec, "grace_s", where, 0))
        if absence[dkind].misses <= 0:
            raise RuleConfigError(f"{where}.misses", "misses must be > 0")
    composite = _mapping(data.get("composite"), "composite")
    _only(composite, {"confirmed_fire_smokes_in_unit", "smoke_with_rise_window_s"}, "composite")
    welfare = _mapping(data.get("welfare"), "welfare")
    _only(welfare, {"activity_power_w", "severity"}, "welfare")
    book = _mapping(data.get("book"), "book")
    _only(book, {"flap_changes", "flap_window_s", "unsuppress_grace_s"}, "book")
    overrides = _mapping(data.get("overrides"), "overrides")
    _only(overrides, {"buildings", "devices"}, "overrides")
    config = RuleConfig(
        events=events, thresholds=tuple(thresholds), trends=trends, absence=absence,
        patrol_misses=_num(patrol, "misses", "absence.gateway_patrol", 2),
        patrol_default_period_s=_num(patrol, "default_period_s", "absence.gateway_patrol", 3600),
        patrol_grace_s=_num(patrol, "grace_s", "absence.gateway_patrol", 60),
        confirmed_fire_smokes_in_unit=int(_num(composite, "confirmed_fire_smokes_in_unit", "composite", 2)),
        smoke_with_rise_window_s=_num(composite, "smoke_with_rise_window_s", "composite", 900),
        welfare_activity_power_w=_num(welfare, "activity_power_w", "welfare", 300),
        welfare_severity=_severity(welfare.get("severity", "major"), "welfare.severity"),
        book=BookSettings(int(_num(book, "flap_changes", "book", 4)), _num(book, "flap_window_s", "book", 600),
                          _num(book, "unsuppress_grace_s", "book", 300)),
        building_overrides=_mapping(overrides.get("buildings"), "overrides.buildings"),
        device_overrides=_mapping(overrides.get("devices"), "overrides.devices"),
    )
    config.check_overrides()
    return config
