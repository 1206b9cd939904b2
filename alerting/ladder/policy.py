"""Escalation policies as data: rungs (who, how long they get, how often we repeat) and per-class ladders.

How this works: a `Rung` names a *seat* to fill at run time (the grid worker of the alarm's grid, this
building's leader, the micro fire station's shift, volunteers with a skill, the family of a vulnerable
resident, the duty officers) and carries a deadline per field state (acknowledged within 60 s, on scene
within 180 s, ...) and a repeat rule. A `Policy` matches alarms by type pattern, severity, drill and
vulnerability, and lists the entry rungs (paged at once), the ladder climbed when a deadline is missed, the
verify-or-escalate window and what stops the ladder. `parse_policies(mapping)` builds a `PolicySet` from
plain data (a YAML file's contents); it validates everything at that boundary and raises `PolicyError` with
the place of the mistake. No I/O here: reading the file is the caller's job.

Invariants: every rung a policy names exists; deadlines are positive; a policy's entry is never empty;
`PolicySet.select` always returns a policy (the last policy must match everything).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerting.directory import Seat
from alerting.errors import AlertingError
from alerting.lifecycle import FIELD_ORDER, AlarmState, field_rank
from alerting.model import Severity

__all__ = [
    "DEFAULT_POLICIES_RESOURCE",
    "FIELD_ORDER",
    "RUNG_SEATS",
    "CallbackRule",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Repeat",
    "Rung",
    "Seat",
    "field_rank",
    "parse_policies",
]

DEFAULT_POLICIES_RESOURCE = "policies/ladder.yaml"  # package data of alerting; read by backend.escalation

# FIELD_ORDER (the field states a responder reports, in order) and field_rank are the lifecycle's: re-exported here.


# Who a rung pages (the one `Seat` vocabulary of alerting.directory, re-exported here), resolved from where
# the alarm is by a `Roster` at run time, as the policy file spells it: a rung pages "volunteers".
RUNG_SEATS: Mapping[str, Seat] = {
    "grid_worker": Seat.GRID_WORKER,  # 网格员 of the building's grid, on duty now
    "building_leader": Seat.BUILDING_LEADER,  # 楼栋长 of the building
    "fire_station": Seat.FIRE_STATION,  # 微型消防站: everyone on the shift now
    "volunteers": Seat.VOLUNTEERS,  # 志愿者 on duty now with the skill, nearest first
    "family": Seat.FAMILY,  # family contacts and neighbours of a vulnerable household
    "duty_officer": Seat.DUTY_OFFICER,  # 值班员 in the command room
}


class PolicyError(AlertingError, ValueError):
    def __init__(self, where: str, why: str) -> None:
        self.where, self.why = where, why
        super().__init__(f"{where}: {why}")


@dataclass(frozen=True, slots=True)
class Repeat:
    every_s: float
    times: int


@dataclass(frozen=True, slots=True)
class Rung:
    name: str
    seat: Seat
    label: str = ""  # Chinese name shown in messages, e.g. 网格员
    deadlines: tuple[tuple[AlarmState, float], ...] = ()  # (field state, seconds after the rung was paged)
    repeat: Repeat | None = None  # re-page while the rung has not acknowledged
    skill: str | None = None  # volunteers only
    count: int = 1  # volunteers only: how many to page at once
    channels: tuple[str, ...] = ("app", "sms")  # channel kinds, in order of preference
    optional: bool = False  # nobody to page here is not a vacancy (family of a household with none)
    on_miss: str | None = None  # rung to climb to when a deadline is missed; default: the next in the ladder


@dataclass(frozen=True, slots=True)
class CallbackRule:
    """回访: a button press is a one-off event and cheap buttons fire by themselves, so someone on `rung` calls the
    resident back and records the outcome within `answer_within_s` (telecare: 97.5 % answered within 60 s). No
    answer, needs help or the time passing pages `escalate_to` (the family) and climbs from `rung` at once."""

    rung: str
    answer_within_s: float = 60.0
    escalate_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    entry: tuple[str, ...]
    ladder: tuple[str, ...] = ()
    alarm_types: tuple[str, ...] = ("*",)  # fnmatch patterns
    severities: frozenset[Severity] = frozenset(Severity)
    vulnerable: bool | None = None  # None: either
    drill: bool | None = None  # None: either
    verify_window_s: float | None = None  # nobody verifies in time: treat as real and climb
    verify_escalate_to: tuple[str, ...] = ()
    stop_on: frozenset[AlarmState] = frozenset({AlarmState.HANDLED, AlarmState.CLOSED})
    callback: CallbackRule | None = None  # an SOS press opens a call-back task (回访) for this rung

    def matches(self, alarm_type: str, severity: Severity, *, vulnerable: bool, drill: bool) -> bool:
        return (
            severity in self.severities
            and any(fnmatch.fnmatchcase(alarm_type, p) for p in self.alarm_types)
            and (self.vulnerable is None or self.vulnerable == vulnerable)
            and (self.drill is None or self.drill == drill)
        )

    @property
    def order(self) -> tuple[str, ...]:
        """Every rung of this policy in climbing order, entry first, each once."""
        extra = self.callback.escalate_to if self.callback is not None else ()
        return tuple(dict.fromkeys((*self.entry, *self.ladder, *self.verify_escalate_to, *extra)))


@dataclass(frozen=True)
class PolicySet:
    rungs: Mapping[str, Rung]
    policies: tuple[Policy, ...]
    by_name: Mapping[str, Policy] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.policies})

    def select(self, alarm_type: str, severity: Severity, *, vulnerable: bool = False, drill: bool = False) -> Policy:
        for p in self.policies:
            if p.matches(alarm_type, severity, vulnerable=vulnerable, drill=drill):
                return p
        raise PolicyError("policies", f"no policy matches {alarm_type!r} ({severity.value}); end with a catch-all policy")

    def rung(self, name: str) -> Rung:
        return self.rungs[name]


# -- parsing (the trust boundary: a YAML file's contents) ----------------------------------------------------


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise PolicyError(where, f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise PolicyError(where, f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _field_state(where: str, name: Any) -> AlarmState:
    try:
        state = AlarmState(name)
    except ValueError:
        state = None
    if state not in FIELD_ORDER:
        raise PolicyError(where, f"{name!r} is not a field state; use one of {[s.value for s in FIELD_ORDER]}")
    assert state is not None
    return state


def _rung(name: str, data: Mapping[str, Any]) -> Rung:
    where = f"rungs.{name}"
    if not isinstance(data, Mapping):
        raise PolicyError(where, "expected a mapping")
    _keys(where, data, {"seat", "label", "deadlines", "repeat", "skill", "count", "channels", "optional", "on_miss"})
    seat = RUNG_SEATS.get(str(data.get("seat", name)))
    if seat is None:
        raise PolicyError(where, f"seat must be one of {list(RUNG_SEATS)}")
    deadlines = tuple(
        sorted(((_field_state(f"{where}.deadlines", k), _seconds(f"{where}.deadlines.{k}", v)) for k, v in (data.get("deadlines") or {}).items()),
               key=lambda kv: field_rank(kv[0]))
    )
    repeat = None
    if (r := data.get("repeat")) is not None:
        if not isinstance(r, Mapping):
            raise PolicyError(f"{where}.repeat", "expected {every: seconds, times: n}")
        _keys(f"{where}.repeat", r, {"every", "times"})
        times = r.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 0:
            raise PolicyError(f"{where}.repeat.times", "expected a whole number >= 0")
        repeat = Repeat(_seconds(f"{where}.repeat.every", r.get("every")), times)
    count = data.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise PolicyError(f"{where}.count", "expected a whole number >= 1")
    channels = tuple(str(c) for c in data.get("channels", ("app", "sms")))
    return Rung(name, seat, str(data.get("label", "")), deadlines, repeat, data.get("skill"), count, channels,
                bool(data.get("optional", False)), data.get("on_miss"))


def _names(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise PolicyError(where, "expected a list of rung names")
    return tuple(str(v) for v in value)


def _policy(i: int, data: Mapping[str, Any], rungs: Mapping[str, Rung]) -> Policy:
    where = f"policies[{i}]"
    if not isinstance(data, Mapping) or "name" not in data:
        raise PolicyError(where, "expected a mapping with a name")
    where = f"policies[{i}] ({data['name']})"
    _keys(where, data, {"name", "match", "entry", "ladder", "verify", "stop_on", "callback"})
    match = data.get("match") or {}
    _keys(f"{where}.match", match, {"alarm_types", "severities", "vulnerable", "drill"})
    try:
        severities = frozenset(Severity(s) for s in match.get("severities", [s.value for s in Severity]))
    except ValueError:
        raise PolicyError(f"{where}.match.severities", f"use {[s.value for s in Severity]}") from None
    entry = _names(f"{where}.entry", data.get("entry"))
    if not entry:
        raise PolicyError(f"{where}.entry", "a policy needs at least one entry rung")
    ladder = _names(f"{where}.ladder", data.get("ladder"))
    verify = data.get("verify") or {}
    _keys(f"{where}.verify", verify, {"window", "escalate_to"})
    window = _seconds(f"{where}.verify.window", verify["window"]) if "window" in verify else None
    escalate_to = _names(f"{where}.verify.escalate_to", verify.get("escalate_to"))
    for name in (*entry, *ladder, *escalate_to):
        if name not in rungs:
            raise PolicyError(where, f"names the rung {name!r}, which is not defined under rungs:")
    stop_on = frozenset(_field_state(f"{where}.stop_on", s) for s in data.get("stop_on", ["handled", "closed"]))
    callback = _callback(f"{where}.callback", data.get("callback"), rungs, entry)
    return Policy(
        name=str(data["name"]), entry=entry, ladder=ladder, alarm_types=tuple(str(t) for t in match.get("alarm_types", ["*"])),
        severities=severities, vulnerable=match.get("vulnerable"), drill=match.get("drill"), verify_window_s=window,
        verify_escalate_to=escalate_to, stop_on=stop_on, callback=callback,
    )


def _callback(where: str, data: Any, rungs: Mapping[str, Rung], entry: tuple[str, ...]) -> CallbackRule | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise PolicyError(where, "expected {rung: ..., answer_within: seconds, escalate_to: [...]}")
    _keys(where, data, {"rung", "answer_within", "escalate_to"})
    rung = str(data.get("rung", entry[0]))
    if rung not in entry:
        raise PolicyError(f"{where}.rung", f"the call-back is made by an entry rung ({list(entry)}), not {rung!r}")
    escalate_to = _names(f"{where}.escalate_to", data.get("escalate_to"))
    for name in escalate_to:
        if name not in rungs:
            raise PolicyError(where, f"names the rung {name!r}, which is not defined under rungs:")
    return CallbackRule(rung, _seconds(f"{where}.answer_within", data.get("answer_within", 60)), escalate_to)


def parse_policies(data: Mapping[str, Any]) -> PolicySet:
    """Build and check a PolicySet from plain data: {rungs: {name: {...}}, policies: [{...}, ...]}."""
    if not isinstance(data, Mapping):
        raise PolicyError("policies file", "expected a mapping with rungs: and policies:")
    _keys("policies file", data, {"rungs", "policies"})
    rungs = {str(name): _rung(str(name), r) for name, r in (data.get("rungs") or {}).items()}
    for r in rungs.values():
        if r.on_miss is not None and r.on_miss not in rungs:
            raise PolicyError(f"rungs.{r.name}.on_miss", f"names the rung {r.on_miss!r}, which is not defined")
    raw = data.get("policies") or []
    policies = tuple(_policy(i, p, rungs) for i, p in enumerate(raw))
    if not policies:
        raise PolicyError("policies", "at least one policy is needed")
    last = policies[-1]
    if last.alarm_types != ("*",) or last.severities != frozenset(Severity) or last.vulnerable is not None or last.drill is not None:
        raise PolicyError(f"policies[{len(policies) - 1}]", "the last policy must match every alarm (no match: section), so none is left unrouted")
    if len({p.name for p in policies}) != len(policies):
        raise PolicyError("policies", "policy names must be unique")
    return PolicySet(rungs, policies)
