"""Columnar rule state: numpy arrays indexed by slot, so a batch of readings is a handful of array operations.

How this works: every series (a device, or a device's channel `dev@2`) has a slot; each rule keeps its
parameters and state in arrays indexed by slot (`level[s]`, `since_ms[s]`, `active[s]`...). A batch is
evaluated per rule with fancy indexing over the slots it touches: no Python loop per reading. A batch
must hold each slot at most once (`rounds()` splits a batch into such rounds, oldest first).

Invariants: times are Unix ms (int64), -1 means "never"; `active[s]` is True exactly while the rule holds
an alarm raised for slot s; arrays grow (doubling) as slots are added, never shrink.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = ["Columns", "Evaluation", "GatewayPresence", "Presence", "ResidualDrift", "TemperatureRise", "Threshold", "Welfare", "rounds"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


def rounds(slots: I64, ts_ms: I64) -> Iterator[I64]:
    """Index arrays into the batch such that each holds a slot at most once, in time order per slot."""
    n = len(slots)
    if n == 0:
        return
    order = np.lexsort((ts_ms, slots))
    s = slots[order]
    first = np.empty(n, dtype=np.bool_)
    first[0] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    if first.all():
        yield order
        return
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.arange(n) - start
    for r in range(int(rank.max()) + 1):
        yield order[rank == r]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Positions (into the evaluated arrays) where the rule fired and where it cleared."""

    fired: I64
    cleared: I64
    measure: F64  # what the rule looked at (value, rate, drift) for each evaluated position
    rose: I64 = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # positions whose open alarm passed a higher level (its severity rises)
    stage: npt.NDArray[np.int8] | None = None  # per evaluated position: higher levels passed (0: the base level)


class Columns:
    """Arrays indexed by slot that grow together. Subclasses declare `_fields` = {name: (dtype, fill)}."""

    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {}
    _state: ClassVar[tuple[str, ...]] = ()  # the fields a restart restores (the rest is configuration)

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = max(capacity, 16)
        for name, (dtype, fill) in self._fields.items():
            setattr(self, name, np.full(self._shape(name, self.capacity), fill, dtype=dtype))

    def _shape(self, name: str, n: int) -> tuple[int, ...]:
        return (n,)

    def ensure(self, n: int) -> None:
        if n <= self.capacity:
            return
        new = max(n, self.capacity * 2)
        for name, (dtype, fill) in self._fields.items():
            old = getattr(self, name)
            arr = np.full(self._shape(name, new), fill, dtype=dtype)
            arr[: self.capacity] = old
            setattr(self, name, arr)
        self.capacity = new

    def state(self) -> dict[str, npt.NDArray[Any]]:
        return {name: getattr(self, name)[: self.capacity] for name in self._state}

    def restore(self, arrays: dict[str, npt.NDArray[Any]], mapping: I64) -> None:
        """Copy stored rows into this state: row i of the stored arrays goes to slot mapping[i] (-1: dropped)."""
        keep = mapping >= 0
        self.ensure(int(mapping.max()) + 1 if len(mapping) else 0)
        for name in self._state:
            if name in arrays and len(arrays[name]) == len(mapping):
                getattr(self, name)[mapping[keep]] = arrays[name][keep]


class Threshold(Columns):
    """Level with hysteresis and debounce: raise after `samples` consecutive readings past the level spanning
    at least `for_ms`; clear once a reading is past `clear` the other way. `sign` -1 turns 'above' into 'below'.

    Higher levels (`steps` of them, e.g. residual current 500 mA critical above 300 mA major): `signed_step[s, k]`
    holds level k+1 times `sign` (+inf where a slot has fewer); `stage[s]` is how many of them the open alarm
    has passed. A raise starts at the stage of its reading; while the alarm is open, a reading past a further
    level raises the stage at once (the base debounce has been met; a rising hazard is not debounced again);
    the stage never falls until the alarm clears. A rule without higher levels pays nothing for them."""

    _state = ("since_ms", "count", "active", "stage")
    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {
        "level": (np.float64, np.inf), "clear": (np.float64, np.inf), "for_ms": (np.int64, 0), "samples": (np.int32, 1),
        "since_ms": (np.int64, -1), "count": (np.int32, 0), "active": (np.bool_, False), "applies": (np.bool_, False),
        "stage": (np.int8, 0), "signed_step": (np.float64, np.inf),
    }
    level: F64
    clear: F64
    for_ms: I64
    samples: npt.NDArray[np.int32]
    since_ms: I64
    count: npt.NDArray[np.int32]
    active: B
    applies: B

    stage: npt.NDArray[np.int8]
    signed_step: F64

    def __init__(self, capacity: int = 1024, *, below: bool = False, steps: int = 0) -> None:
        self.steps = steps
        super().__init__(capacity)
        self.sign = -1.0 if below else 1.0

    def _shape(self, name: str, n: int) -> tuple[int, ...]:
        return (n, max(self.steps, 1)) if name == "signed_step" else (n,)

    def evaluate(self, s: I64, v: F64, t: I64) -> Evaluation:
        sv = self.sign * v
        up = sv > self.sign * self.level[s]
        down = sv < self.sign * self.clear[s]
        act = self.active[s]
        count = np.where(up, self.count[s] + 1, 0).astype(np.int32)
        since = np.where(up, np.where(self.since_ms[s] < 0, t, self.since_ms[s]), -1)
        fire = ~act & up & (count >= self.samples[s]) & (t - since >= self.for_ms[s])
        clear = act & down
        self.count[s] = count
        self.since_ms[s] = since
        now_active = (act | fire) & ~clear
        self.active[s] = now_active
        if not self.steps:
            return Evaluation(np.flatnonzero(fire), np.flatnonzero(clear), v)
        reached = np.count_nonzero(sv[:, None] > self.signed_step[s], axis=1).astype(np.int8)
        before = self.stage[s]
        stage = np.where(now_active, np.maximum(np.where(act, before, 0), reached), 0).astype(np.int8)
        self.stage[s] = stage
        return Evaluation(np.flatnonzero(fire), np.flatnonzero(clear), v, np.flatnonzero(act & now_active & (stage > before)), stage)


class TemperatureRise(Columns):
    """Rate of rise (degrees per minute) against the stored samples of the last `window_ms`: fires at
    `rate_per_min`, clears below half of it. Keeps the last `depth` samples per slot in a ring."""

    depth = 8
    _state = ("buf_v", "buf_t", "head", "active")
    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {
        "buf_v": (np.float64, 0.0), "buf_t": (np.int64, -1), "head": (np.int64, 0), "active": (np.bool_, False),
        "rate_per_min": (np.float64, np.inf), "min_span_ms": (np.int64, 60_000), "window_ms": (np.int64, 600_000),
        "applies": (np.bool_, False),
    }
    buf_v: F64
    buf_t: I64
    head: I64
    active: B
    rate_per_min: F64
    min_span_ms: I64
    window_ms: I64
    applies: B

    def _shape(self, name: str, n: int) -> tuple[int, ...]:
        return (n, self.depth) if name in ("buf_v", "buf_t") else (n,)

    def evaluate(self, s: I64, v: F64, t: I64) -> Evaluation:
        bt = self.buf_t[s]
        dt = t[:, None] - bt
        ok = (bt >= 0) & (dt >= self.min_span_ms[s, None]) & (dt <= self.window_ms[s, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.where(ok, (v[:, None] - self.buf_v[s]) * 60_000.0 / np.where(ok, dt, 1), -np.inf)
        rate = rates.max(axis=1)
        act = self.active[s]
        thr = self.rate_per_min[s]
        fire = ~act & (rate >= thr)
        clear = act & (rate < 0.5 * thr)
        self.active[s] = (act | fire) & ~clear
        h = self.head[s]
        self.buf_v[s, h] = v
        self.buf_t[s, h] = t
        self.head[s] = (h + 1) % self.depth
        return Evaluation(np.flatnonzero(fire), np.flatnonzero(clear), rate)


class ResidualDrift(Columns):
    """Residual current against the circuit's own baseline: an exponentially weighted mean with a time
    constant of `tau_ms` (a day), frozen while the drift alarm is active. Fires once the baseline has
    `warmup_ms` of history and the reading is `drift` above it; clears below 70 % of `drift`."""

    _state = ("baseline", "base_t", "base_start", "active")
    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {
        "baseline": (np.float64, 0.0), "base_t": (np.int64, -1), "base_start": (np.int64, -1), "active": (np.bool_, False),
        "drift": (np.float64, np.inf), "tau_ms": (np.float64, 86_400_000.0), "warmup_ms": (np.int64, 21_600_000),
        "applies": (np.bool_, False),
    }
    baseline: F64
    base_t: I64
    base_start: I64
    active: B
    drift: F64
    tau_ms: F64
    warmup_ms: I64
    applies: B

    def evaluate(self, s: I64, v: F64, t: I64) -> Evaluation:
        fresh = self.base_t[s] < 0
        base = np.where(fresh, v, self.baseline[s])
        start = np.where(fresh, t, self.base_start[s])
        dt = np.maximum(t - np.where(fresh, t, self.base_t[s]), 0)
        act = self.active[s]
        drift = v - base
        warm = (t - start) >= self.warmup_ms[s]
        fire = ~act & warm & (drift >= self.drift[s])
        clear = act & (drift < 0.7 * self.drift[s])
        now_active = (act | fire) & ~clear
        alpha = -np.expm1(-dt / self.tau_ms[s])
        self.baseline[s] = np.where(now_active, base, base + alpha * (v - base))
        self.base_t[s] = t
        self.base_start[s] = start
        self.active[s] = now_active
        return Evaluation(np.flatnonzero(fire), np.flatnonzero(clear), drift)


class Presence(Columns):
    """Per device: last heard (the centre's receive time, never the device's own clock; until it is first heard, the
    time it was added), how long silence may last, whether it has ever been heard (`heard`: a device never heard since
    it was added is not yet commissioned, never lost; `uncommissioned`: counted in its gateway's commissioning
    notice), whether it is lost, disabled or unknown (a bridge in front of it is gone: not judged until heard again),
    and its clock check (`skew_since`: receive time of the first of an unbroken run of late messages, -1 none)."""

    _state = ("last_seen", "lost", "disabled", "unknown", "unknown_drill", "skew_since", "skewed", "heard", "uncommissioned")
    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {
        "last_seen": (np.int64, -1), "window_ms": (np.int64, np.iinfo(np.int64).max // 4), "lost": (np.bool_, False),
        "disabled": (np.bool_, False), "gateway": (np.int64, -1), "household": (np.int64, -1), "mains": (np.bool_, False),
        "building": (np.int64, -1), "unknown": (np.bool_, False), "unknown_drill": (np.bool_, False),
        "skew_since": (np.int64, -1), "skewed": (np.bool_, False), "heard": (np.bool_, False), "uncommissioned": (np.bool_, False),
    }
    last_seen: I64
    window_ms: I64
    lost: B
    disabled: B
    gateway: I64
    household: I64
    mains: B
    building: I64
    unknown: B
    unknown_drill: B
    skew_since: I64
    skewed: B
    heard: B
    uncommissioned: B

    def _overdue(self, n: int, now_ms: int, gateway_down: B) -> B:
        ls = self.last_seen[:n]
        gw = self.gateway[:n]
        behind_down = np.where(gw >= 0, gateway_down[np.maximum(gw, 0)], False)
        return ~self.disabled[:n] & ~self.unknown[:n] & (ls >= 0) & (now_ms - ls > self.window_ms[:n]) & ~behind_down

    def silent(self, n: int, now_ms: int, gateway_down: B) -> tuple[I64, I64]:
        """Slots (< n) past their window, not unknown nor behind a gateway that is down: (newly lost: heard before,
        now silent; marked lost), (newly overdue without ever being heard: not yet commissioned; marked so)."""
        due = self._overdue(n, now_ms, gateway_down)
        heard = self.heard[:n]
        lost = np.flatnonzero(due & heard & ~self.lost[:n])
        self.lost[lost] = True
        waiting = np.flatnonzero(due & ~heard & ~self.uncommissioned[:n])
        self.uncommissioned[waiting] = True
        return lost, waiting


class GatewayPresence(Columns):
    """Per gateway: last patrol heartbeat (receive time), down (its status says offline; a drill's cut apart from a
    real one), lost (patrol missing), whether it has ever been heard (a patrol, an online status or a real device
    message through it: a gateway never heard since it was added is not yet commissioned, like its devices, and its
    missing patrol is not a lost gateway), and its clock check (as Presence)."""

    _state = ("last_patrol", "down", "down_drill", "lost", "window_ms", "skew_since", "skewed", "heard")
    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {
        "last_patrol": (np.int64, -1), "window_ms": (np.int64, 7_260_000), "down": (np.bool_, False), "lost": (np.bool_, False),
        "building": (np.int64, -1), "down_drill": (np.bool_, False), "skew_since": (np.int64, -1), "skewed": (np.bool_, False),
        "heard": (np.bool_, False),
    }
    last_patrol: I64
    window_ms: I64
    down: B
    down_drill: B
    lost: B
    building: I64
    skew_since: I64
    skewed: B
    heard: B

    def silent(self, n: int, now_ms: int) -> I64:
        lp = self.last_patrol[:n]
        hit = np.flatnonzero(self.heard[:n] & ~self.lost[:n] & ~self.down[:n] & ~self.down_drill[:n] & (lp >= 0) & (now_ms - lp > self.window_ms[:n]))
        self.lost[hit] = True
        return hit


class Welfare(Columns):
    """Per vulnerable household: the last sign of activity and the allowed quiet period."""

    _state = ("last_activity", "overdue")
    _fields: ClassVar[dict[str, tuple[Any, Any]]] = {
        "last_activity": (np.int64, -1), "quiet_ms": (np.int64, np.iinfo(np.int64).max // 4), "overdue": (np.bool_, False),
    }
    last_activity: I64
    quiet_ms: I64
    overdue: B

    def due(self, n: int, now_ms: int) -> I64:
        la = self.last_activity[:n]
        hit = np.flatnonzero(~self.overdue[:n] & (la >= 0) & (now_ms - la > self.quiet_ms[:n]))
        self.overdue[hit] = True
        return hit
