"""Rule configuration as values: parsed from plain mappings (the service reads the YAML files).

How this works: `parse_rules(data)` turns the mapping of alerting/rules/defaults.yaml (merged with a
deployment's file by `merge`) into a frozen `RuleConfig`, validating every number on the way and naming the
key that is wrong in `RuleConfigError`. `RuleConfig.threshold_params(rule, device, building)` resolves
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


class RuleConfigError(ValueError):
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
        level = float(o.get("above", o.get("below", rule.level)))
        clear = float(o["clear"]) if "clear" in o else _default_clear(rule, level)
        out = replace(rule, level=level, clear=clear,
                      for_s=float(o.get("for_s", rule.for_s)), samples=int(o.get("samples", rule.samples)))
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
                    here = f"{where}: {scope}.{subject}.{rule}"
                    if not isinstance(params, Mapping):
                        raise RuleConfigError(here, "give a mapping of the rule's keys to numbers")
                    if rule in thresholds:
                        t = thresholds[rule]
                        allowed = {"below" if t.below else "above", "clear", "for_s", "samples"}
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
                        o = dict(params)
                        level = float(o.get("above", o.get("below", thresholds[rule].level)))
                        clear = float(o["clear"]) if "clear" in o else _default_clear(thresholds[rule], level)
                        _check_threshold(replace(thresholds[rule], level=level, clear=clear, for_s=float(o.get("for_s", thresholds[rule].for_s)),
                                                 samples=int(o.get("samples", thresholds[rule].samples))), here)
                    elif rule == "absence" and float(params.get("misses", 1)) <= 0:
                        raise RuleConfigError(here, "misses must be > 0")

    def trend_param(self, rule: TrendRule, key: str, device: str, building: str | None) -> float:
        return float(self.overrides_for(rule.name, device, building).get(key, rule.params[key]))

    def absence_window_s(self, kind: DeviceKind, interval_s: float, device: str, building: str | None) -> float:
        rule = self.absence.get(kind) or self.absence[DeviceKind.OTHER]
        o = self.overrides_for("absence", device, building)
        return float(o.get("misses", rule.misses)) * interval_s + float(o.get("grace_s", rule.grace_s))


def _default_clear(rule: ThresholdRule, level: float) -> float:
    """Keep the rule's hysteresis band when an override moves only the level."""
    return level - (rule.level - rule.clear)


def _check_threshold(rule: ThresholdRule, where: str) -> None:
    if rule.below and not rule.clear > rule.level:
        raise RuleConfigError(where, f"{rule.name}: clear ({rule.clear}) must be above the level ({rule.level}) for a 'below' rule")
    if not rule.below and not rule.clear < rule.level:
        raise RuleConfigError(where, f"{rule.name}: clear ({rule.clear}) must be below the level ({rule.level})")
    if rule.limits is not None and not rule.limits[0] <= rule.level <= rule.limits[1]:
        raise RuleConfigError(where, f"{rule.name}: {rule.level} is outside the settable range {rule.limits[0]}-{rule.limits[1]}")
    if rule.for_s < 0 or rule.samples < 1:
        raise RuleConfigError(where, f"{rule.name}: for_s must be >= 0 and samples >= 1")


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
    try:
        return frozenset(DeviceKind(v) for v in values)
    except ValueError as exc:
        raise RuleConfigError(where, str(exc)) from exc


def _severity(value: Any, where: str) -> Severity:
    try:
        return Severity(value)
    except ValueError as exc:
        raise RuleConfigError(where, f"severity must be one of {[s.value for s in Severity]}") from exc


def parse_rules(data: Mapping[str, Any]) -> RuleConfig:
    events: dict[EventKind, EventRule] = {}
    for name, spec in (data.get("events") or {}).items():
        where = f"events.{name}"
        try:
            kind = EventKind(name)
        except ValueError as exc:
            raise RuleConfigError(where, "not an event kind of the wire contract") from exc
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
    for name, spec in (data.get("thresholds") or {}).items():
        where = f"thresholds.{name}"
        if ("above" in spec) == ("below" in spec):
            raise RuleConfigError(where, "give exactly one of above or below")
        limits = spec.get("limits")
        t = ThresholdRule(name, str(spec["metric"]), _kinds(spec.get("kinds", ["electrical"]), where),
                          float(spec.get("above", spec.get("below"))), float(spec["clear"]), "below" in spec,
                          float(spec.get("for_s", 0)), int(spec.get("samples", 1)), (float(limits[0]), float(limits[1])) if limits else None,
                          _severity(spec.get("severity", "major"), where), str(spec.get("title", name)))
        _check_threshold(t, where)
        thresholds.append(t)
    trends: dict[str, TrendRule] = {}
    for name, spec in (data.get("trends") or {}).items():
        where = f"trends.{name}"
        params = {k: float(v) for k, v in spec.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        trends[name] = TrendRule(name, str(spec["metric"]), _kinds(spec.get("kinds", ["electrical"]), where), params,
                                 _severity(spec.get("severity", "major"), where), str(spec.get("title", name)))
    for name, needs in (("temperature_rise", ("rate_c_per_min", "min_span_s", "window_s")),
                        ("residual_drift", ("drift_ma", "baseline_hours", "warmup_hours"))):
        if name in trends and not set(needs) <= set(trends[name].params):
            raise RuleConfigError(f"trends.{name}", f"needs {', '.join(needs)}")
    absence_data = dict(data.get("absence") or {})
    patrol = absence_data.pop("gateway_patrol", {})
    absence: dict[DeviceKind, AbsenceRule] = {DeviceKind.OTHER: AbsenceRule(3, 0)}
    for name, spec in absence_data.items():
        dkind = next(iter(_kinds([name], f"absence.{name}")))
        absence[dkind] = AbsenceRule(float(spec.get("misses", 3)), float(spec.get("grace_s", 0)))
        if absence[dkind].misses <= 0:
            raise RuleConfigError(f"absence.{name}", "misses must be > 0")
    composite = data.get("composite") or {}
    welfare = data.get("welfare") or {}
    book = data.get("book") or {}
    overrides = data.get("overrides") or {}
    config = RuleConfig(
        events=events, thresholds=tuple(thresholds), trends=trends, absence=absence,
        patrol_misses=float(patrol.get("misses", 2)), patrol_default_period_s=float(patrol.get("default_period_s", 3600)),
        patrol_grace_s=float(patrol.get("grace_s", 60)),
        confirmed_fire_smokes_in_unit=int(composite.get("confirmed_fire_smokes_in_unit", 2)),
        smoke_with_rise_window_s=float(composite.get("smoke_with_rise_window_s", 900)),
        welfare_activity_power_w=float(welfare.get("activity_power_w", 300)),
        welfare_severity=_severity(welfare.get("severity", "major"), "welfare"),
        book=BookSettings(int(book.get("flap_changes", 4)), float(book.get("flap_window_s", 600)),
                          float(book.get("unsuppress_grace_s", 300))),
        building_overrides=overrides.get("buildings") or {}, device_overrides=overrides.get("devices") or {},
    )
    config.check_overrides()
    return config
