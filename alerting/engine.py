"""The alerting engine: every rule, fed one event or one batch at a time, time always an argument.

How this works: `Engine` holds the alarm book plus columnar rule state (alerting.columns) for every device
of the site. Each entry point takes `now_ms` and returns the `Action`s to carry out (persist an alarm with its
audit entries, record a self-test); nothing here reads a clock, touches a file or a socket.

- `on_event`        device events -> event rules; smoke and power feed the composite/causal rules
- `on_availability` a gateway's word about one device (offline -> communication lost, disabled -> none)
- `on_gateway_status`, `on_patrol`  gateway offline (one alarm; its devices become unknown) and heartbeats
- `on_batch`        a columnar batch of readings -> threshold, trend, presence and welfare-activity rules
- `tick`            absence (devices, gateway patrol), welfare, silences ending, suppressed effects returning
- `move`, `add_window`  people's moves and maintenance windows

Commissioning: a device of the site directory that has never been heard since it was added (`Presence.heard`) is
not yet commissioned (未上线), never lost: past its absence window it is counted in ONE notice per gateway
(`devices_uncommissioned`, severity info; the default ladder shows it on the duty console and pages nobody), whose
count follows as devices report for the first time; it closes when all have. Only a device heard once (a real
message: drills do not commission a device) and silent since is lost (`comm_lost`). `heard` is part of the
snapshot, so a restart turns neither kind into the other. A restart that finds no usable snapshot of a site that
ran before (`assume_heard`) takes every device and gateway as heard once: a detector that died meanwhile is lost,
a major alarm that pages, never the quiet 未上线 of a device never installed.

Drills: a device's real presence (`Presence`: heard, lost, unknown, disabled) is real traffic's alone, and a drill's
word about a device has presence of its own beside it: `_lost_drill` (the drill reported it offline: its drill-flagged
comm_lost is open) and `Presence.unknown_drill` (the drill's bridge in front of it is gone: counted in the drill's
devices_unknown). A drill's traffic (availability, readings, events) moves only those, real traffic only the real
ones; so a real outage and a drill on one device neither end nor hide each other, and a real alarm never closes on
a drill's word.

Causal rules: a building's power outage (power_lost from any device in it) is ONE alarm; communication-lost
alarms of its mains-powered devices (cameras, electrical monitors) and the offline/patrol alarms of its
gateways are raised SUPPRESSED with the outage as cause. A gateway that is down makes its devices unknown:
their absence is not judged until it returns (and each returning device gets a fresh window).
Composite: two different smoke detectors alarming in one unit, or a smoke alarm plus a temperature rise in
one building within `smoke_with_rise_window_s`, raise ONE "confirmed_fire" for the building. Drills feed
drill-only composite state, so a drill never confirms a real fire or the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from alerting.book import AlarmBook, MaintenanceWindow
from alerting.columns import Evaluation, GatewayPresence, Presence, ResidualDrift, TemperatureRise, Threshold, Welfare, rounds
from alerting.config import RuleConfig, ThresholdRule
from alerting.directory import DeviceInfo, SiteView
from alerting.lifecycle import TRANSITIONS, AlarmState, Move
from alerting.model import Action, AlarmKey, DeviceRecord, Place, Severity, Signal, SignalKind
from broker.kinds import AvailabilityState, DeviceKind, EventKind

__all__ = ["DEVICES_UNCOMMISSIONED", "DEVICES_UNKNOWN", "Batch", "Engine", "ReadingLike"]

I64 = npt.NDArray[np.int64]
MAINS_POWERED = frozenset({DeviceKind.CAMERA, DeviceKind.ELECTRICAL})
COMM_LOST = "comm_lost"
POWER_OUTAGE = "power_outage"
GATEWAY_OFFLINE = "gateway_offline"
CONFIRMED_FIRE = "confirmed_fire"
WELFARE = "welfare_check"
DEVICES_UNKNOWN = "devices_unknown"
DEVICES_UNCOMMISSIONED = "devices_uncommissioned"
CLOCK_SKEW = "clock_skew"
LIFE_SAFETY_KINDS = (DeviceKind.SMOKE, DeviceKind.SOS)  # named first when a bridge blinds them
_KIND_NAMES = {DeviceKind.SMOKE: "烟感", DeviceKind.SOS: "一键呼救", DeviceKind.ELECTRICAL: "电气监测", DeviceKind.CAMERA: "摄像机",
               DeviceKind.WATER_LEAK: "漏水", DeviceKind.OTHER: "其他"}


class ReadingLike(Protocol):
    @property
    def device_id(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def source_ts_ms(self) -> int: ...
    @property
    def received_ms(self) -> int: ...  # the centre's receive time; < 0: unknown (evaluated with `now`)
    @property
    def drill(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings as columns: series slot, metric id (-1: no rule reads it), value, source time, drill, receive time
    (the centre's clock: liveness and the clock check use it; -1 or no column: `now` of the call)."""

    slot: I64
    metric: npt.NDArray[np.int16]
    value: npt.NDArray[np.float64]
    ts_ms: I64
    drill: npt.NDArray[np.bool_]
    unknown: int = 0  # readings of devices the site does not know (not evaluated)
    recv_ms: I64 | None = None

    def __len__(self) -> int:
        return len(self.slot)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What a fired or cleared rule says: which alarm, how bad, and the unit of what it measured."""

    alarm_type: str
    severity: Severity
    title: str
    unit: str = ""


def _trend(before: str | None, before_ms: int, now_text: str, now_value: float, now_ms: int) -> str:
    """How a hazard moved between the alarm's last reading and this one, for the timeline."""
    try:
        delta = f" ({now_value - float(before or ''):+.1f} in {(now_ms - before_ms) / 1000:.0f} s)"
    except ValueError:
        delta = ""
    return f"rising: {before or '?'} -> {now_text}{delta}"


def _subject(device: str) -> str:
    return f"device:{device}"


def _names_blob(names: Sequence[str]) -> npt.NDArray[np.uint8]:
    return np.frombuffer("\n".join(names).encode(), dtype=np.uint8)


def _names_of(snap: dict[str, npt.NDArray[Any]], key: str) -> npt.NDArray[Any]:
    """A snapshot's names: `<key>.utf8` (newline-joined UTF-8), or `<key>` (a numpy string array, older snapshots)."""
    blob = snap.get(f"{key}.utf8")
    if blob is None:
        return snap.get(key, np.array([], dtype=np.str_))
    text = blob.tobytes().decode()
    return np.array(text.split("\n") if text else [], dtype=object)


DRILL_SERIES = "drill|"  # prefix of a drill's series: drill readings never share debounce or trend state with real ones


def _series_parts(name: str) -> tuple[str, str, bool]:
    """(device, alarm subject, drill) of a series name: `dev`, `dev@2`, `drill|dev@2`."""
    drill = name.startswith(DRILL_SERIES)
    base = name[len(DRILL_SERIES):] if drill else name
    return base.partition("@")[0], f"device:{base}", drill


class Engine:
    def __init__(self, rules: RuleConfig, site: SiteView, now_ms: int, id_prefix: str = "A") -> None:
        self.rules = rules
        self.book = AlarmBook(rules.book, id_prefix)
        self.devices: dict[str, DeviceInfo] = {}
        self._dev_list: list[DeviceInfo] = []  # by device slot
        self.dev_index: dict[str, int] = {}
        self.series_index: dict[str, int] = {}
        self.series_names: list[str] = []
        self.series_dev = np.full(1024, -1, dtype=np.int64)
        self._series_metric: dict[tuple[str, str, bool], tuple[int, int]] = {}
        self.metric_ids: dict[str, int] = {}
        self.thresholds = [(r, Threshold(below=r.below, steps=len(r.levels)), self._metric_id(r.metric)) for r in rules.thresholds]
        self.rise = TemperatureRise() if "temperature_rise" in rules.trends else None
        self.drift = ResidualDrift() if "residual_drift" in rules.trends else None
        self._rise_metric = self._metric_id(rules.trends["temperature_rise"].metric) if self.rise else -2
        self._drift_metric = self._metric_id(rules.trends["residual_drift"].metric) if self.drift else -2
        self._power_metric = self._metric_id("power_w")
        self.presence = Presence()
        self.gateways = GatewayPresence()
        self.gw_index: dict[str, int] = {}
        self.gw_building: list[str | None] = []
        self.buildings: dict[str, int] = {}
        self.welfare = Welfare()
        self.hh_index: dict[str, int] = {}
        self.hh_info: list[tuple[str, str, int | None, str]] = []
        # (building, drill) -> unit -> smoke detectors in alarm there (confirmed fire looks at one building's units)
        self.smoke_active: dict[tuple[str, bool], dict[int | None, set[str]]] = {}
        self._unknown: dict[tuple[str, bool], set[str]] = {}  # (gateway, drill) -> devices behind it that are unknown
        # device slots a drill reported offline, until the drill says they are back (the book's open drill comm_lost
        # alarms are the truth: `reconcile` derives it from them, so it needs no snapshot)
        self._lost_drill: set[int] = set()
        self._uncommissioned: dict[str, set[str]] = {}  # gateway -> devices never heard, past their window (one notice each)
        self._skew_ms = round(rules.clock_skew_max_s * 1000)
        self.building_rise_ms: dict[tuple[str, bool], int] = {}
        for gw, building in site.gateways():
            self._add_gateway(gw, building, now_ms)
        for d in site.devices():
            self.add_device(d, now_ms)
        self._reserve_series(len(self.devices) + len(self.devices) // 4)
        for h in site.welfare_households():
            i = len(self.hh_info)
            self.hh_index[h.id] = i
            self.hh_info.append((h.id, h.building, h.unit, h.place_name))
            self.welfare.ensure(i + 1)
            self.welfare.quiet_ms[i] = round(h.welfare_check_hours * 3_600_000)
            self.welfare.last_activity[i] = now_ms
        for d in self.devices.values():
            if d.household in self.hh_index:
                self.presence.household[self.dev_index[d.id]] = self.hh_index[d.household]

    # -- the site -------------------------------------------------------------------------------------
    def _metric_id(self, metric: str) -> int:
        return self.metric_ids.setdefault(metric, len(self.metric_ids))

    def _building(self, building: str | None) -> int:
        return -1 if building is None else self.buildings.setdefault(building, len(self.buildings))

    def _add_gateway(self, gw: str, building: str | None, now_ms: int) -> int:
        i = len(self.gw_building)
        self.gw_index[gw] = i
        self.gw_building.append(building)
        self.gateways.ensure(i + 1)
        self.gateways.last_patrol[i] = now_ms
        self.gateways.building[i] = self._building(building)
        r = self.rules
        self.gateways.window_ms[i] = round((r.patrol_misses * r.patrol_default_period_s + r.patrol_grace_s) * 1000)
        return i

    def add_device(self, d: DeviceInfo, now_ms: int) -> int:
        if d.id in self.dev_index:
            return self.dev_index[d.id]
        i = len(self.devices)
        self.devices[d.id] = d
        self._dev_list.append(d)
        self.dev_index[d.id] = i
        p = self.presence
        p.ensure(i + 1)
        p.last_seen[i] = now_ms
        p.window_ms[i] = round(self.rules.absence_window_s(d.kind, d.report_interval_s, d.id, d.building) * 1000)
        p.gateway[i] = self.gw_index[d.gateway] if d.gateway in self.gw_index else self._add_gateway(d.gateway, d.building, now_ms)
        p.mains[i] = d.kind in MAINS_POWERED
        p.building[i] = self._building(d.building)
        return i

    def _series(self, device: str, metric: str, drill: bool = False) -> tuple[int, int]:
        """(series slot, metric id) of a device's metric; (-1, -1) for a device the site does not know. A drill's
        readings get series of their own: a drill never advances a real debounce, nor a real reading a drill's."""
        d = self.devices.get(device)
        if d is None:
            return -1, -1
        base, _, channel = metric.partition("@")
        name = (DRILL_SERIES if drill else "") + (f"{device}@{channel}" if channel else device)
        slot = self.series_index.get(name)
        if slot is None:
            slot = len(self.series_names)
            self.series_index[name] = slot
            self.series_names.append(name)
            self._configure_series(slot, d)
        mid = self.metric_ids.get(base, -1)
        self._series_metric[(device, metric, drill)] = (slot, mid)
        return slot, mid

    def _reserve_series(self, n: int) -> None:
        """Size the series columns for the site at start (a series per device, a quarter more for channels): they
        would otherwise double as devices first report, some only once a day, so a long-running backend's memory
        stepped up by tens of MB hours after its start (seen in benchmarks/soak.py)."""
        for _, cols, _ in self.thresholds:
            cols.ensure(n)
        for trend in (self.rise, self.drift):
            if trend is not None:
                trend.ensure(n)
        if n > len(self.series_dev):
            grown = np.full(n, -1, dtype=np.int64)
            grown[: len(self.series_dev)] = self.series_dev
            self.series_dev = grown

    def _configure_series(self, slot: int, d: DeviceInfo) -> None:
        if slot >= len(self.series_dev):
            grown = np.full(max(slot + 1, 2 * len(self.series_dev)), -1, dtype=np.int64)
            grown[: len(self.series_dev)] = self.series_dev
            self.series_dev = grown
        self.series_dev[slot] = self.dev_index[d.id]
        for rule, cols, _ in self.thresholds:
            cols.ensure(slot + 1)
            r = self.rules.threshold_params(rule, d.id, d.building)
            cols.applies[slot] = d.kind in rule.kinds
            cols.level[slot], cols.clear[slot] = r.level, r.clear
            cols.for_ms[slot], cols.samples[slot] = round(r.for_s * 1000), r.samples
            for k, (level, _) in enumerate(r.levels):
                cols.signed_step[slot, k] = cols.sign * level
        if self.rise is not None:
            tr = self.rules.trends["temperature_rise"]
            self.rise.ensure(slot + 1)
            self.rise.applies[slot] = d.kind in tr.kinds
            self.rise.rate_per_min[slot] = self.rules.trend_param(tr, "rate_c_per_min", d.id, d.building)
            self.rise.min_span_ms[slot] = round(self.rules.trend_param(tr, "min_span_s", d.id, d.building) * 1000)
            self.rise.window_ms[slot] = round(self.rules.trend_param(tr, "window_s", d.id, d.building) * 1000)
        if self.drift is not None:
            tr = self.rules.trends["residual_drift"]
            self.drift.ensure(slot + 1)
            self.drift.applies[slot] = d.kind in tr.kinds
            self.drift.drift[slot] = self.rules.trend_param(tr, "drift_ma", d.id, d.building)
            self.drift.tau_ms[slot] = self.rules.trend_param(tr, "baseline_hours", d.id, d.building) * 3_600_000
            self.drift.warmup_ms[slot] = round(self.rules.trend_param(tr, "warmup_hours", d.id, d.building) * 3_600_000)

    def _place(self, d: DeviceInfo) -> Place:
        return Place(device=d.id, gateway=d.gateway, building=d.building, unit=d.unit, household=d.household)

    def _outage_key(self, building: str | None, drill: bool = False) -> str | None:
        if building is None:
            return None
        key = AlarmKey(f"building:{building}", POWER_OUTAGE, drill)
        return str(key) if self.book.is_open(key) else None

    # -- readings --------------------------------------------------------------------------------------
    def batch(self, readings: Iterable[ReadingLike]) -> Batch:
        """Columns for a batch of readings (the only per-reading Python work: one dict look-up each)."""
        slots: list[int] = []
        metrics: list[int] = []
        values: list[float] = []
        ts: list[int] = []
        recv: list[int] = []
        drill: list[bool] = []
        cache = self._series_metric
        unknown = 0
        for r in readings:
            sm = cache.get((r.device_id, r.metric, r.drill)) or self._series(r.device_id, r.metric, r.drill)
            if sm[0] < 0:
                unknown += 1
                continue
            slots.append(sm[0])
            metrics.append(sm[1])
            values.append(r.value)
            ts.append(r.source_ts_ms)
            recv.append(r.received_ms)
            drill.append(r.drill)
        return Batch(np.array(slots, dtype=np.int64), np.array(metrics, dtype=np.int16), np.array(values, dtype=np.float64),
                     np.array(ts, dtype=np.int64), np.array(drill, dtype=np.bool_), unknown, np.array(recv, dtype=np.int64))

    def on_readings(self, readings: Iterable[ReadingLike], now_ms: int) -> list[Action]:
        return self.on_batch(self.batch(readings), now_ms)

    def on_batch(self, b: Batch, now_ms: int) -> list[Action]:
        if len(b) == 0:
            return []
        out: list[Action] = []
        dev = self.series_dev[b.slot]
        recv = np.full(len(b), now_ms, dtype=np.int64) if b.recv_ms is None else np.where(b.recv_ms < 0, now_ms, b.recv_ms)
        out += self._seen(dev, recv, now_ms, b.drill)
        out += self._clock_check(dev, b.ts_ms, recv, b.drill, now_ms)
        if self._power_metric >= 0:
            active = (b.metric == self._power_metric) & (b.value >= self.rules.welfare_activity_power_w)
            if active.any():
                out += self._activity(self.presence.household[dev[active]], b.ts_ms[active], now_ms)
        for idx in rounds(b.slot, b.ts_ms):
            s, m, v, t, dr = b.slot[idx], b.metric[idx], b.value[idx], b.ts_ms[idx], b.drill[idx]
            for rule, cols, mid in self.thresholds:
                sel = np.flatnonzero((m == mid) & cols.applies[s])
                if len(sel):
                    ev = cols.evaluate(s[sel], v[sel], t[sel])
                    out += self._verdicts(_Verdict(rule.name, rule.severity, rule.title), sel, ev, (s, t, dr), now_ms, rule=rule)
            if self.rise is not None:
                sel = np.flatnonzero((m == self._rise_metric) & self.rise.applies[s])
                if len(sel):
                    tr = self.rules.trends["temperature_rise"]
                    ev = self.rise.evaluate(s[sel], v[sel], t[sel])
                    out += self._verdicts(_Verdict(tr.name, tr.severity, tr.title, "°C/min"), sel, ev, (s, t, dr), now_ms)
                    for f in ev.fired:
                        d = self.devices[_series_parts(self.series_names[int(s[sel[f]])])[0]]
                        if d.building is not None:
                            self.building_rise_ms[(d.building, bool(dr[sel[f]]))] = int(t[sel[f]])
                            out += self._confirm_fire(d, bool(dr[sel[f]]), int(t[sel[f]]), now_ms)
            if self.drift is not None:
                sel = np.flatnonzero((m == self._drift_metric) & self.drift.applies[s])
                if len(sel):
                    tr = self.rules.trends["residual_drift"]
                    ev = self.drift.evaluate(s[sel], v[sel], t[sel])
                    out += self._verdicts(_Verdict(tr.name, tr.severity, tr.title, "mA"), sel, ev, (s, t, dr), now_ms)
        return out

    def _verdicts(self, what: _Verdict, sel: I64, ev: Evaluation, rnd: tuple[I64, I64, npt.NDArray[np.bool_]], now_ms: int, *,
                  rule: ThresholdRule | None = None) -> list[Action]:
        s, t, drill = rnd
        out: list[Action] = []
        for kind, positions in ((SignalKind.RAISE, ev.fired), (SignalKind.CLEAR, ev.cleared), (SignalKind.RAISE, ev.rose)):
            rising = positions is ev.rose
            for p in positions:
                j = sel[p]
                device, subject, _ = _series_parts(self.series_names[int(s[j])])
                d = self.devices[device]
                severity = what.severity
                if rule is not None and ev.stage is not None and ev.stage[p] > 0:
                    severity = self.rules.threshold_params(rule, d.id, d.building).levels[int(ev.stage[p]) - 1][1]
                detail = f"{float(ev.measure[p]):.1f}{what.unit}"
                trend = None
                if rising:
                    before = self.book.open.get(AlarmKey(subject, what.alarm_type, bool(drill[j])))
                    trend = _trend(before.detail, before.last_seen_ms, detail, float(ev.measure[p]), int(t[j])) if before else None
                sig = Signal(kind, what.alarm_type, subject, int(t[j]), severity, drill=bool(drill[j]),
                             title=f"{what.title} · {d.place_name}", place=self._place(d), detail=detail, trend=trend)
                out += self.book.signal(sig, now_ms)
        return out

    def _seen(self, dev: I64, recv: I64, now_ms: int, drill: npt.NDArray[np.bool_] | None = None) -> list[Action]:
        """Devices heard, at the centre's receive times `recv` (a device's or gateway's own clock never moves liveness).
        A real message (`drill` False) commissions a device never heard before."""
        p = self.presence
        is_drill = np.zeros(len(dev), dtype=np.bool_) if drill is None else drill
        real = dev[~is_drill]
        # Liveness is real traffic's alone: a drill speaking for a device must not keep a dead real detector "alive",
        # nor clear its real comm_lost or unknown state (a drill never hides a real alarm).
        np.maximum.at(p.last_seen, real, recv[~is_drill])
        out: list[Action] = []
        gw = p.gateway[real]
        self.gateways.heard[gw[gw >= 0]] = True  # a real message through a gateway commissions it too
        first = ~p.heard[dev] if drill is None else ~p.heard[dev] & ~drill
        if first.any():
            new = np.unique(dev[first])
            p.heard[new] = True
            out += self._commissioned(new[p.uncommissioned[new]], now_ms, "已上线")
        back = real[p.lost[real]]
        for i in np.unique(back):
            p.lost[i] = False
            d = self._dev_list[int(i)]
            out += self.book.signal(Signal(SignalKind.CLEAR, COMM_LOST, _subject(d.id), now_ms, detail="heard again"), now_ms)
        unknown = p.unknown[real]
        if unknown.any():
            for i in np.unique(real[unknown]):
                out += self._known_again(int(i), now_ms)
        if drill is not None and drill.any():  # a drill message answers the drill's own presence only
            drilled = np.unique(dev[drill])
            lost = np.fromiter(self._lost_drill, dtype=np.int64, count=len(self._lost_drill))
            for i in drilled[np.isin(drilled, lost) | p.unknown_drill[drilled]]:
                out += self._drill_heard(int(i), now_ms)
        return out

    def _seen_one(self, i: int, now_ms: int, seen: int, drill: bool) -> list[Action]:
        """`_seen` and `_clock_check` for one device's message received at `now_ms` (source time `seen`): the same
        decisions with scalar reads, where the column form's array set-up cost ~0.1 ms a smoke alarm (issue 19)."""
        p = self.presence
        if not drill:
            p.last_seen[i] = max(p.last_seen[i], now_ms)
            g = p.gateway[i]
            if g >= 0:
                self.gateways.heard[g] = True
        out: list[Action] = []
        if not drill and not p.heard[i]:
            p.heard[i] = True
            if p.uncommissioned[i]:
                out += self._commissioned(np.array([i], dtype=np.int64), now_ms, "已上线")
        if not drill and p.lost[i]:
            p.lost[i] = False
            out += self.book.signal(Signal(SignalKind.CLEAR, COMM_LOST, _subject(self._dev_list[i].id), now_ms, detail="heard again"), now_ms)
        if not drill and p.unknown[i]:
            out += self._known_again(i, now_ms)
        if drill:
            out += self._drill_heard(i, now_ms)
        if drill or (abs(now_ms - seen) <= self._skew_ms and not p.skewed[i] and p.skew_since[i] < 0):
            return out
        arr = np.array([i], dtype=np.int64)
        return out + self._clock_check(arr, np.array([seen], dtype=np.int64), np.array([now_ms], dtype=np.int64), np.array([drill]), now_ms)

    # -- clocks (GB 50440: clock error <= 5 s) -----------------------------------------------------------
    def _clock_check(self, dev: I64, src: I64, recv: I64, drill: npt.NDArray[np.bool_], now_ms: int) -> list[Action]:
        """Compare each message's source time with its receive time. Ahead by more than `clock_skew_max_s` is a
        skewed clock at once (no transport makes a message early); behind by more is one only once it has stayed
        behind for `clock_skew_confirm_s` of receive time (a message held at a gateway during an uplink outage is
        late too, and the live ones after it are not). One alarm per device, closed when a message is in range.
        Drill messages carry drill times and are not checked."""
        p = self.presence
        lateness = recv - src
        off = (np.abs(lateness) > self._skew_ms) & ~drill
        watched = off | p.skewed[dev] | (p.skew_since[dev] >= 0)
        if not watched.any():
            return []
        out: list[Action] = []
        for j in np.flatnonzero(watched & ~drill)[np.argsort(recv[watched & ~drill], kind="stable")]:
            i = int(dev[j])
            d = self._dev_list[i]
            out += self._skew_step(p, i, int(lateness[j]), int(recv[j]), subject=_subject(d.id), title=f"设备时钟偏差 · {d.place_name}",
                                   place=self._place(d), now_ms=now_ms)
        return out

    def _skew_step(self, cols: Presence | GatewayPresence, i: int, lateness: int, recv: int, *, subject: str, title: str, place: Place,
                   now_ms: int) -> list[Action]:
        if abs(lateness) <= self._skew_ms:
            cols.skew_since[i] = -1
            if cols.skewed[i]:
                cols.skewed[i] = False
                return list(self.book.signal(Signal(SignalKind.CLEAR, CLOCK_SKEW, subject, recv, detail="时钟已恢复正常"), now_ms))
            return []
        if lateness > 0 and cols.skew_since[i] < 0:
            cols.skew_since[i] = recv
        confirmed = lateness < 0 or recv - int(cols.skew_since[i]) >= round(self.rules.clock_skew_confirm_s * 1000)
        if not confirmed or cols.skewed[i]:
            return []
        cols.skewed[i] = True
        way = "快" if lateness < 0 else "慢"
        detail = f"时钟比中心{way} {abs(lateness) / 1000:.0f} 秒（GB 50440：误差 ≤ {self.rules.clock_skew_max_s:g} 秒）"
        return list(self.book.signal(Signal(SignalKind.RAISE, CLOCK_SKEW, subject, recv, Severity.MINOR, title=title, place=place,
                                            detail=detail), now_ms))

    # -- unknown devices (a bridge in front of them is gone) ---------------------------------------------
    def _known_again(self, i: int, now_ms: int, *, drill: bool = False) -> list[Action]:
        """The device is heard again, really or in the drill (`drill`): that one of its unknown states ends."""
        (self.presence.unknown_drill if drill else self.presence.unknown)[i] = False
        d = self._dev_list[i]
        blind = self._unknown.get((d.gateway, drill))
        if blind is None:
            return []
        blind.discard(d.id)
        return self._blind_alarm(d.gateway, drill, now_ms)

    def _blind_alarm(self, gateway: str, drill: bool, now_ms: int, why: str | None = None) -> list[Action]:
        """ONE alarm on the gateway naming how many devices of each class behind it are unknown (life safety first);
        its count follows as they come and go; closed when all report again."""
        blind = self._unknown.get((gateway, drill), set())
        subject = f"gateway:{gateway}"
        if not blind:
            self._unknown.pop((gateway, drill), None)
            return list(self.book.signal(Signal(SignalKind.CLEAR, DEVICES_UNKNOWN, subject, now_ms, drill=drill, detail="设备已恢复上报"), now_ms))
        kinds = [self.devices[x].kind for x in blind]
        order = [*LIFE_SAFETY_KINDS, *(k for k in DeviceKind if k not in LIFE_SAFETY_KINDS)]
        counts = "、".join(f"{_KIND_NAMES.get(k, k.value)} {kinds.count(k)} 台" for k in order if k in kinds)
        detail = f"{len(blind)} 台设备状态未知（桥接/协调器离线，无法听到这些设备）：{counts}" + (f"；{why}" if why else "")
        i = self.gw_index.get(gateway)
        building = self.gw_building[i] if i is not None else None
        severity = Severity.MAJOR if any(k in LIFE_SAFETY_KINDS for k in kinds) else Severity.MINOR
        sig = Signal(SignalKind.RAISE, DEVICES_UNKNOWN, subject, now_ms, severity, drill=drill, title=f"设备状态未知 · 网关 {gateway}",
                     place=Place(gateway=gateway, building=building), detail=detail, refresh_detail=True)
        return list(self.book.signal(sig, now_ms))

    # -- commissioning (devices never heard since they were added) ---------------------------------------
    def _waiting(self, slots: I64, now_ms: int) -> list[Action]:
        """Never-heard devices past their window: counted in their gateways' commissioning notices (one each)."""
        p = self.presence
        p.uncommissioned[slots] = True
        gateways: set[str] = set()
        for i in slots:
            d = self._dev_list[int(i)]
            self._uncommissioned.setdefault(d.gateway, set()).add(d.id)
            gateways.add(d.gateway)
        return [a for gw in sorted(gateways) for a in self._commissioning_notice(gw, now_ms)]

    def _commissioned(self, slots: I64, now_ms: int, why: str) -> list[Action]:
        """Devices leaving their gateways' commissioning notices (heard for the first time, or disabled)."""
        if not len(slots):
            return []
        p = self.presence
        p.uncommissioned[slots] = False
        gateways: set[str] = set()
        for i in slots:
            d = self._dev_list[int(i)]
            self._uncommissioned.get(d.gateway, set()).discard(d.id)
            gateways.add(d.gateway)
        # a device leaving refreshes an open notice; it never reopens one a person has closed meanwhile
        return [a for gw in sorted(gateways) if not self._uncommissioned.get(gw) or AlarmKey(f"gateway:{gw}", DEVICES_UNCOMMISSIONED) in self.book.open
                for a in self._commissioning_notice(gw, now_ms, why)]

    def _commissioning_notice(self, gateway: str, now_ms: int, why: str = "") -> list[Action]:
        """ONE notice per gateway counting its devices never heard since they were added (life safety first); its
        count follows them; closed when all have reported. Its detail starts with the count ("N 台"): the console's
        device health reads it."""
        waiting = self._uncommissioned.get(gateway, set())
        subject = f"gateway:{gateway}"
        if not waiting:
            self._uncommissioned.pop(gateway, None)
            return list(self.book.signal(Signal(SignalKind.CLEAR, DEVICES_UNCOMMISSIONED, subject, now_ms, detail=f"设备均{why or '已上线'}"), now_ms))
        kinds = [self.devices[x].kind for x in waiting]
        order = [*LIFE_SAFETY_KINDS, *(k for k in DeviceKind if k not in LIFE_SAFETY_KINDS)]
        counts = "、".join(f"{_KIND_NAMES.get(k, k.value)} {kinds.count(k)} 台" for k in order if k in kinds)
        detail = f"{len(waiting)} 台设备自加入以来从未上报（未上线，待安装调试，不按通信中断处理）：{counts}"
        i = self.gw_index.get(gateway)
        building = self.gw_building[i] if i is not None else None
        sig = Signal(SignalKind.RAISE, DEVICES_UNCOMMISSIONED, subject, now_ms, Severity.INFO, title=f"设备未上线 · 网关 {gateway}",
                     place=Place(gateway=gateway, building=building), detail=detail, refresh_detail=True)
        return list(self.book.signal(sig, now_ms))

    def _activity(self, households: I64, ts: I64, now_ms: int) -> list[Action]:
        keep = households >= 0
        if not keep.any():
            return []
        hh, t = households[keep], ts[keep]
        np.maximum.at(self.welfare.last_activity, hh, t)
        out: list[Action] = []
        for i in np.unique(hh[self.welfare.overdue[hh]]):
            self.welfare.overdue[i] = False
            out += self.book.signal(Signal(SignalKind.CLEAR, WELFARE, f"household:{self.hh_info[int(i)][0]}", now_ms,
                                           detail="a sign of activity; verify the resident is well"), now_ms)
        return out

    # -- events ----------------------------------------------------------------------------------------
    def on_event(self, device: str, gateway: str, event: EventKind, now_ms: int, *, seen_ms: int | None = None, drill: bool = False,
                 needs_callback: bool = False, msg_id: str | None = None, value: float | None = None, detail: str | None = None) -> list[Action]:
        seen = now_ms if seen_ms is None else seen_ms
        # A device the site does not list yet takes the place of its gateway (building, else the gateway's community
        # through the store), so the duty officer whose territory it is sees its alarm.
        d = self.devices.get(device) or DeviceInfo(device, DeviceKind.OTHER, gateway,
                                                   self.gw_building[self.gw_index[gateway]] if gateway in self.gw_index else None, place_name=device)
        out: list[Action] = []
        if device in self.dev_index and gateway == d.gateway:  # another gateway's word does not keep a device alive
            out += self._seen_one(self.dev_index[device], now_ms, seen, drill)
        rule = self.rules.events.get(event)
        if rule is None:
            return out
        if rule.activity and d.household in self.hh_index:
            out += self._activity(np.array([self.hh_index[d.household]], dtype=np.int64), np.array([seen], dtype=np.int64), now_ms)
        why = detail if value is None else f"{detail or ''} {value:g}".strip()
        if rule.record:
            out.append(DeviceRecord(device, event.value, seen, drill, why))
        elif rule.raises is not None:
            title = rule.title + ("（需回拨核实）" if needs_callback else "") + f" · {d.place_name}"
            sig = Signal(SignalKind.RAISE, rule.raises, _subject(device), seen, rule.severity, rule.life_safety, drill, title,
                         self._place(d), why, needs_callback, source_msg_id=msg_id)
            out += self.book.signal(sig, now_ms)
            if rule.raises == "smoke":
                self.smoke_active.setdefault((d.building or "", drill), {}).setdefault(d.unit, set()).add(device)
                out += self._confirm_fire(d, drill, seen, now_ms)
        elif rule.clears is not None:
            out += self.book.signal(Signal(SignalKind.CLEAR, rule.clears, _subject(device), seen, drill=drill, detail=why), now_ms)
            if rule.clears == "smoke":
                self.smoke_active.get((d.building or "", drill), {}).get(d.unit, set()).discard(device)
        elif rule.power == "lost" and d.building is not None:
            out += self._power_lost(d, drill, seen, now_ms)
        elif rule.power == "restored" and d.building is not None:
            out += self.book.signal(Signal(SignalKind.CLEAR, POWER_OUTAGE, f"building:{d.building}", seen, drill=drill,
                                           detail=f"power back (reported by {device})"), now_ms)
        return out

    def _confirm_fire(self, d: DeviceInfo, drill: bool, seen: int, now_ms: int) -> list[Action]:
        b = d.building
        if b is None:
            return []
        units = self.smoke_active.get((b, drill), {})
        enough = self.rules.confirmed_fire_smokes_in_unit
        in_unit = [(unit, devs) for unit, devs in units.items() if len(devs) >= enough]
        rise = self.building_rise_ms.get((b, drill))
        with_rise = not in_unit and rise is not None and abs(seen - rise) <= self.rules.smoke_with_rise_window_s * 1000 \
            and any(units.values())
        if not in_unit and not with_rise:
            return []
        key = AlarmKey(f"building:{b}", CONFIRMED_FIRE, drill)
        if key in self.book.open:
            # Already confirmed: this smoke counts as one more occurrence. The evidence text, title and place are only
            # written when the alarm is raised, so they are not built again for each smoke alarm of a storm (issue 19).
            again = Signal(SignalKind.RAISE, CONFIRMED_FIRE, key.subject, seen, Severity.CRITICAL, True, drill)
            return list(self.book.signal(again, now_ms))
        if in_unit:
            unit, devs = in_unit[-1]
            evidence = f"{len(devs)} smoke detectors in unit {unit}: {', '.join(sorted(devs))}"
        else:
            evidence = "smoke alarm and a temperature rise in the building"
        sig = Signal(SignalKind.RAISE, CONFIRMED_FIRE, key.subject, seen, Severity.CRITICAL, True, drill,
                     f"确认火警 · {d.place_name}", Place(building=b, unit=d.unit), evidence)
        return list(self.book.signal(sig, now_ms))

    def _power_lost(self, d: DeviceInfo, drill: bool, seen: int, now_ms: int) -> list[Action]:
        b = d.building
        assert b is not None
        sig = Signal(SignalKind.RAISE, POWER_OUTAGE, f"building:{b}", seen, Severity.MAJOR, drill=drill, title=f"停电 · {b}",
                     place=Place(building=b), detail=f"reported by {d.id}")
        out: list[Action] = list(self.book.signal(sig, now_ms))
        if drill:
            return out
        cause = str(sig.key)
        effects: list[str] = []
        gws = {g for g, gb in zip(self.gw_index, self.gw_building, strict=True) if gb == b}
        for key, alarm in list(self.book.open.items()):
            kind, _, ident = key.subject.partition(":")
            mains_device = kind == "device" and key.alarm_type == COMM_LOST and (dd := self.devices.get(ident)) is not None \
                and dd.building == b and dd.kind in MAINS_POWERED
            gateway = kind == "gateway" and ident in gws and key.alarm_type in (COMM_LOST, GATEWAY_OFFLINE)
            if (mains_device or gateway) and (alarm.state, Move.SUPPRESS) in TRANSITIONS and not key.drill:
                effects.append(alarm.id)
        for alarm_id in effects:
            out += self.book.suppress(alarm_id, cause, now_ms)
        return out

    # -- availability and gateways ---------------------------------------------------------------------
    def on_availability(self, device: str, state: AvailabilityState, now_ms: int, *, seen_ms: int | None = None,
                        reason: str | None = None, drill: bool = False) -> list[Action]:
        seen = now_ms if seen_ms is None else seen_ms
        i = self.dev_index.get(device)
        d = self.devices.get(device)
        if i is None or d is None:
            return []
        if drill:
            return self._drill_availability(i, d, state, now_ms, seen=seen, reason=reason)
        p = self.presence
        if state is AvailabilityState.UNKNOWN:
            # A bridge in front of it is gone: not offline, not silent, nothing of its own; ONE gateway-level alarm
            # counts what its gateway cannot hear. Its absence is not judged until it is heard again.
            if p.unknown[i]:
                return []
            p.unknown[i] = True
            if p.disabled[i]:  # switched back on (a camera re-enabled, its stream not yet seen): waiting, not blind
                p.disabled[i] = False
                return []
            self._unknown.setdefault((d.gateway, False), set()).add(d.id)
            return self._blind_alarm(d.gateway, False, now_ms, reason)
        out = self._known_again(i, now_ms) if p.unknown[i] else []
        if state is AvailabilityState.ONLINE:
            p.disabled[i] = False
            return out + self._seen(np.array([i], dtype=np.int64), np.array([now_ms], dtype=np.int64), now_ms)
        if state is AvailabilityState.DISABLED:
            p.disabled[i] = True
            p.lost[i] = False
            if p.uncommissioned[i]:  # switched off on purpose: no longer waited for
                out += self._commissioned(np.array([i], dtype=np.int64), now_ms, "已停用")
            return out + list(self.book.signal(Signal(SignalKind.CLEAR, COMM_LOST, _subject(device), seen, detail="disabled on purpose"), now_ms))
        if state is AvailabilityState.OFFLINE and not p.heard[i]:
            # the gateway has never heard it either (e.g. a retained offline for a device not yet installed): waiting
            return out + ([] if p.uncommissioned[i] else self._waiting(np.array([i], dtype=np.int64), now_ms))
        if state is AvailabilityState.OFFLINE and not p.lost[i]:
            p.lost[i] = True
            return out + self._comm_lost(d, seen, now_ms, reason or "the gateway reports it offline")
        return out

    def _drill_availability(self, i: int, d: DeviceInfo, state: AvailabilityState, now_ms: int, *, seen: int,
                            reason: str | None) -> list[Action]:
        """A drill's word about a device: it moves the drill's presence of the device (offline: a drill-flagged
        comm_lost; unknown: counted in the drill's devices_unknown; online or disabled: the drill's alarm ends), never
        its real presence (liveness, lost, unknown, disabled, commissioning) nor a real alarm."""
        p = self.presence
        if state is AvailabilityState.UNKNOWN:
            if p.unknown_drill[i]:
                return []
            p.unknown_drill[i] = True
            self._unknown.setdefault((d.gateway, True), set()).add(d.id)
            return self._blind_alarm(d.gateway, True, now_ms, reason)
        out = self._known_again(i, now_ms, drill=True) if p.unknown_drill[i] else []
        if state is AvailabilityState.OFFLINE:
            if i in self._lost_drill:
                return out
            self._lost_drill.add(i)
            return out + self._comm_lost(d, seen, now_ms, reason or "the gateway reports it offline", drill=True)
        if state is AvailabilityState.DISABLED:  # switched off in the drill: the drill's offline alarm ends, as a real one would
            self._lost_drill.discard(i)
            return out + list(self.book.signal(Signal(SignalKind.CLEAR, COMM_LOST, _subject(d.id), seen, drill=True,
                                                      detail="disabled on purpose"), now_ms))
        return out + self._drill_heard(i, now_ms)

    def _drill_heard(self, i: int, now_ms: int) -> list[Action]:
        """A drill message from the device (or the drill's word that it is online): the drill's comm_lost and unknown
        state of it end (the drill's alarms only: a real one waits for real traffic)."""
        out: list[Action] = []
        if i in self._lost_drill:
            self._lost_drill.discard(i)
            out += self.book.signal(Signal(SignalKind.CLEAR, COMM_LOST, _subject(self._dev_list[i].id), now_ms, drill=True,
                                           detail="heard again"), now_ms)
        if self.presence.unknown_drill[i]:
            out += self._known_again(i, now_ms, drill=True)
        return out

    def _comm_lost(self, d: DeviceInfo, seen: int, now_ms: int, why: str, *, drill: bool = False) -> list[Action]:
        # A drill's power cut suppresses the drill's camera alarms, never real ones (and the other way round).
        cause = self._outage_key(d.building, drill) if d.kind in MAINS_POWERED else None
        sig = Signal(SignalKind.RAISE, COMM_LOST, _subject(d.id), seen, Severity.MINOR, drill=drill, title=f"通信中断 · {d.place_name}",
                     place=self._place(d), detail=why, cause=cause)
        return list(self.book.signal(sig, now_ms))

    def on_gateway_status(self, gateway: str, online: bool, now_ms: int, *, drill: bool = False) -> list[Action]:
        i = self.gw_index.get(gateway)
        if i is None:
            i = self._add_gateway(gateway, None, now_ms)
        g = self.gateways
        down = g.down_drill if drill else g.down  # a drill's uplink cut is the drill's: its alarm carries the drill mark
        building = self.gw_building[i]
        if online:
            g.heard[i] |= not drill
            was_down = bool(g.down[i] or g.down_drill[i])
            down[i] = False
            if was_down:  # its devices were unknown, not silent: each gets a fresh window
                behind = np.flatnonzero(self.presence.gateway[: len(self.devices)] == i)
                self.presence.last_seen[behind] = np.maximum(self.presence.last_seen[behind], now_ms)
                g.last_patrol[i] = max(int(g.last_patrol[i]), now_ms)
            return list(self.book.signal(Signal(SignalKind.CLEAR, GATEWAY_OFFLINE, f"gateway:{gateway}", now_ms, drill=drill, detail="online"), now_ms))
        if down[i]:
            return []
        down[i] = True
        n = int(np.count_nonzero(self.presence.gateway[: len(self.devices)] == i))
        sig = Signal(SignalKind.RAISE, GATEWAY_OFFLINE, f"gateway:{gateway}", now_ms, Severity.MAJOR, drill=drill, title=f"网关离线 · {gateway}",
                     place=Place(gateway=gateway, building=building), detail=f"{n} devices behind it are unknown",
                     cause=self._outage_key(building, drill))
        return list(self.book.signal(sig, now_ms))

    def on_patrol(self, gateway: str, period_s: float, now_ms: int, *, source_ms: int | None = None) -> list[Action]:
        """A patrol heartbeat received at `now_ms` (the centre's clock), stamped `source_ms` by the gateway's clock."""
        i = self.gw_index.get(gateway)
        if i is None:
            i = self._add_gateway(gateway, None, now_ms)
        g = self.gateways
        g.heard[i] = True
        g.last_patrol[i] = max(int(g.last_patrol[i]), now_ms)
        g.window_ms[i] = round((self.rules.patrol_misses * period_s + self.rules.patrol_grace_s) * 1000)
        out: list[Action] = []
        if source_ms is not None:
            out += self._skew_step(g, i, now_ms - source_ms, now_ms, subject=f"gateway:{gateway}", title=f"网关时钟偏差 · {gateway}",
                                   place=Place(gateway=gateway, building=self.gw_building[i]), now_ms=now_ms)
        if g.lost[i]:
            g.lost[i] = False
            out += self.book.signal(Signal(SignalKind.CLEAR, COMM_LOST, f"gateway:{gateway}", now_ms, detail="patrol heartbeat again"), now_ms)
        return out

    # -- time --------------------------------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Action]:
        out: list[Action] = list(self.book.tick(now_ms))
        n_dev = len(self.devices)
        lost, waiting = self.presence.silent(n_dev, now_ms, self.gateways.down | self.gateways.down_drill)
        if len(waiting):
            out += self._waiting(waiting, now_ms)
        for i in lost:
            d = self._dev_list[int(i)]
            silent_s = (now_ms - int(self.presence.last_seen[i])) / 1000
            out += self._comm_lost(d, int(self.presence.last_seen[i]), now_ms, f"silent for {silent_s:.0f} s")
        gw_names = list(self.gw_index)
        for i in self.gateways.silent(len(gw_names), now_ms):
            building = self.gw_building[int(i)]
            sig = Signal(SignalKind.RAISE, COMM_LOST, f"gateway:{gw_names[int(i)]}", int(self.gateways.last_patrol[i]), Severity.MAJOR,
                         title=f"网关巡检心跳缺失 · {gw_names[int(i)]}", place=Place(gateway=gw_names[int(i)], building=building),
                         detail="patrol heartbeat missing", cause=self._outage_key(building))
            out += self.book.signal(sig, now_ms)
        for i in self.welfare.due(len(self.hh_info), now_ms):
            hid, building, unit, place = self.hh_info[int(i)]
            hours = int(self.welfare.quiet_ms[i]) / 3_600_000
            sig = Signal(SignalKind.RAISE, WELFARE, f"household:{hid}", now_ms, self.rules.welfare_severity, True,
                         title=f"独居老人关怀核实 · {place}", place=Place(building=building, unit=unit, household=hid),
                         detail=f"no sign of activity for {hours:g} h")
            out += self.book.signal(sig, now_ms)
        return out

    # -- people ------------------------------------------------------------------------------------------
    def move(self, alarm_id: str, move: Move, actor: str, now_ms: int, *, note: str = "", until_ms: int | None = None) -> list[Action]:
        return list(self.book.move(alarm_id, move, actor, now_ms, note=note, until_ms=until_ms))

    def add_window(self, window: MaintenanceWindow, now_ms: int) -> list[Action]:
        return list(self.book.add_window(window, now_ms))

    # -- restart -----------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, npt.NDArray[Any]]:
        """The rule state a restart needs (timers as absolute times, so `now` re-derives what is left)."""
        # Names as newline-joined UTF-8 (ids hold no newline): a fixed-width numpy string array of 100,000 device ids
        # is 4 bytes a character padded to the longest id, ~7 MB, where these are ~2 MB.
        out: dict[str, npt.NDArray[Any]] = {
            f"{key}.utf8": _names_blob(names) for key, names in
            (("series", self.series_names), ("devices", list(self.devices)), ("gateways", list(self.gw_index)),
             ("households", [h[0] for h in self.hh_info]))
        }
        n_series, n_dev, n_gw, n_hh = len(self.series_names), len(self.devices), len(self.gw_index), len(self.hh_info)
        parts: list[tuple[str, Any, int]] = [(f"threshold.{r.name}", c, n_series) for r, c, _ in self.thresholds]
        parts += [("rise", self.rise, n_series), ("drift", self.drift, n_series), ("presence", self.presence, n_dev),
                  ("gateways", self.gateways, n_gw), ("welfare", self.welfare, n_hh)]
        for name, cols, n in parts:
            if cols is not None:
                for field, arr in cols.state().items():
                    out[f"{name}.{field}"] = arr[:n]
        return out

    def restore(self, snap: dict[str, npt.NDArray[Any]]) -> None:
        """Take rule state back after a restart; then align 'active' flags with the open alarms of the book."""
        def mapping(names: Sequence[str], index: dict[str, int]) -> I64:
            return np.array([index.get(str(n), -1) for n in names], dtype=np.int64)

        snap = {**snap, **{key: _names_of(snap, key) for key in ("series", "devices", "gateways", "households")}}
        for name in snap.get("series", []):
            dev, subject, drill = _series_parts(str(name))
            ch = subject.partition("@")[2]
            self._series(dev, f"x_c@{ch}" if ch else "x_c", drill)  # allocate the slot (metric does not matter)
        m_series = mapping(list(snap.get("series", [])), self.series_index)
        m_dev = mapping(list(snap.get("devices", [])), self.dev_index)
        m_gw = mapping(list(snap.get("gateways", [])), self.gw_index)
        m_hh = mapping(list(snap.get("households", [])), self.hh_index)
        parts: list[tuple[str, Any, I64]] = [(f"threshold.{r.name}", c, m_series) for r, c, _ in self.thresholds]
        parts += [("rise", self.rise, m_series), ("drift", self.drift, m_series), ("presence", self.presence, m_dev),
                  ("gateways", self.gateways, m_gw), ("welfare", self.welfare, m_hh)]
        for name, cols, m in parts:
            if cols is not None and len(m):
                cols.restore({k.split(".")[-1]: v for k, v in snap.items() if k.startswith(name + ".") and not k.endswith(".utf8")}, m)
        if "presence.heard" not in snap and len(m_dev):  # a snapshot from before commissioning: its devices are judged as they were
            self.presence.heard[m_dev[m_dev >= 0]] = True
        if "gateways.heard" not in snap and len(m_gw):  # likewise its gateways
            self.gateways.heard[m_gw[m_gw >= 0]] = True
        self.reconcile()

    def assume_heard(self) -> None:
        """No usable rule state for a site that ran before: whether a device was ever heard is unknown, so take the safe
        side: every device and gateway as heard once (a silent one becomes lost, not 'not yet commissioned')."""
        self.presence.heard[:] = True
        self.gateways.heard[:] = True
        self.reconcile()

    def reconcile(self) -> None:
        """Make rule flags agree with the open alarms (the book is the truth about what is raised)."""
        open_ = {(k.subject, k.alarm_type): a for k, a in self.book.open.items() if not k.drill}
        holding = {key for key, a in open_.items() if a.state is not AlarmState.AWAITING_VERIFICATION}
        # series flags, drill series included: (subject, rule, drill) of every open alarm a reading may clear
        raised = {(k.subject, k.alarm_type, k.drill) for k, a in self.book.open.items() if a.state is not AlarmState.AWAITING_VERIFICATION}
        series = [_series_parts(name) for name in self.series_names]
        severities = {(k.subject, k.alarm_type, k.drill): a.severity for k, a in self.book.open.items()}
        for rule, cols, _ in self.thresholds:
            for slot, (_dev, subject, drill) in enumerate(series):
                cols.active[slot] = (subject, rule.name, drill) in raised
                if rule.levels:  # the stage an open alarm has reached, from its severity (the book's is the truth)
                    sev = severities.get((subject, rule.name, drill))
                    cols.stage[slot] = 0 if sev is None or not cols.active[slot] else sum(1 for _, ls in rule.levels if ls.rank <= sev.rank)
        trend_cols: list[tuple[str, TemperatureRise | ResidualDrift | None]] = [("temperature_rise", self.rise), ("residual_drift", self.drift)]
        for name, tcols in trend_cols:
            if tcols is not None:
                for slot, (_dev, subject, drill) in enumerate(series):
                    tcols.active[slot] = (subject, name, drill) in raised
        open_drill = {(k.subject, k.alarm_type) for k in self.book.open if k.drill}
        self._lost_drill.clear()
        for dev, i in self.dev_index.items():
            self.presence.lost[i] = (_subject(dev), COMM_LOST) in open_
            self.presence.heard[i] |= self.presence.lost[i]  # lost (even without a snapshot) means it was heard once
            if (_subject(dev), COMM_LOST) in open_drill:
                self._lost_drill.add(i)
        for gw, i in self.gw_index.items():
            self.gateways.down[i] = (f"gateway:{gw}", GATEWAY_OFFLINE) in open_
            self.gateways.down_drill[i] = (f"gateway:{gw}", GATEWAY_OFFLINE) in open_drill
            self.gateways.lost[i] = (f"gateway:{gw}", COMM_LOST) in open_
            self.gateways.heard[i] |= self.gateways.lost[i]
            self.gateways.skewed[i] = (f"gateway:{gw}", CLOCK_SKEW) in open_
        self._unknown.clear()
        self._uncommissioned.clear()
        for dev, i in self.dev_index.items():
            self.presence.skewed[i] = (_subject(dev), CLOCK_SKEW) in open_
            self.presence.uncommissioned[i] &= ~self.presence.heard[i]
            if self.presence.uncommissioned[i]:
                self._uncommissioned.setdefault(self._dev_list[i].gateway, set()).add(dev)
            gw = self._dev_list[i].gateway
            if self.presence.unknown[i] and self.presence.unknown_drill[i] and (f"gateway:{gw}", DEVICES_UNKNOWN) not in open_:
                # a snapshot from before a drill's unknown was kept apart (`unknown_drill` then said whose `unknown` it
                # was): with no real devices_unknown open on its gateway, it was the drill's alone
                self.presence.unknown[i] = False
            for drill, flag in ((False, self.presence.unknown), (True, self.presence.unknown_drill)):
                if flag[i]:
                    self._unknown.setdefault((gw, drill), set()).add(dev)
        for hid, i in self.hh_index.items():
            self.welfare.overdue[i] = (f"household:{hid}", WELFARE) in holding
        self.smoke_active.clear()
        for k, a in self.book.open.items():
            if k.alarm_type == "smoke" and a.state is not AlarmState.AWAITING_VERIFICATION and a.place.device is not None:
                # a device the site does not list stands in its gateway's building (on_event), as its alarm's place says
                d = self.devices.get(a.place.device)
                building, unit = (d.building, d.unit) if d is not None else (a.place.building, a.place.unit)
                self.smoke_active.setdefault((building or "", k.drill), {}).setdefault(unit, set()).add(a.place.device)

