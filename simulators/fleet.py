"""A fleet of simulated devices built from a site directory, advanced in steps of simulated time.

How this works:
  - Devices are numbered in id order; each class keeps its parameters and state in numpy arrays indexed by
    those numbers, so one step costs a handful of array operations whatever the fleet's size.
  - Every device reports periodically at its directory interval with a random phase: in a window (t0, t1]
    a device reports iff floor((t1 - phase) / interval) > floor((t0 - phase) / interval). `advance()` cuts a
    long window into steps no longer than the shortest interval, so a device reports at most once a step.
  - Discrete happenings (a smoke alarm, its clear ten minutes later, a power cut and its end, a drill's
    injected fault) are actions on a heap ordered by time. Random ones are drawn per step with a Poisson
    count over the whole class (O(events), not O(devices)) and pushed onto the same heap as injected ones,
    so both take the same path.
  - Drills are kept apart from real faults: every injected fault has a real state and a drill state (`cut_*` and
    `cut_*_d`, `cam_flap_*` and `cam_flap_*_d`, ...). Real state drives the real reports (drill=False) exactly as
    if no drill ran; while a device has a drill running (`drill[i]`), each report it makes also goes out as a
    drill-flagged copy computed from the same draws with the drill's pretend faults laid over the real ones, and
    the drill's events and availability changes carry the drill flag. So a drill never silences a device, never
    changes its real values, and a real fault and a drill on one device neither end nor hide each other.
  - Invariants: the same site directory, seed, profile, start time and sequence of `advance()`/injection
    calls give the same output; no clock is read; a building power cut takes down every camera and
    household meter in that building at the same instant and restores them together.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from backend.sites.model import Device, SiteDirectory
from broker.kinds import AvailabilityState, DeviceKind, EventKind
from simulators.records import AvailabilityChange, PatrolDue, ReadingBatch, SimEvent, Step
from simulators.signals import (
    DAY_S,
    SimulationProfile,
    cable_temperature_steady_c,
    daily_load_shape,
    leakage_ma,
    local_hour,
    mains_voltage_v,
    poisson_picks,
)

__all__ = ["Fleet", "UnknownTarget"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

_THERMAL_TAU_S = 20 * 60.0  # a cable in conduit settles over tens of minutes
_CAMERA_FPS = 25.0
_KIND_CODE = {k: n for n, k in enumerate(DeviceKind)}


def _round(values: F64, decimals: int = 0) -> F64:
    return np.asarray(np.round(values, decimals), dtype=np.float64)


class UnknownTarget(KeyError):
    """An injection named a device or building the fleet does not have (or of the wrong class)."""

    def __init__(self, what: str, name: str) -> None:
        self.what = what
        self.name = name
        super().__init__(f"no {what} {name!r} in this fleet")


class _Do(StrEnum):
    SMOKE_ON = "smoke_on"
    SMOKE_OFF = "smoke_off"
    SELF_TEST = "self_test"
    TAMPER_ON = "tamper_on"
    TAMPER_OFF = "tamper_off"
    SOS = "sos"
    PHANTOM_SOS = "phantom_sos"
    CUT_ON = "cut_on"
    CUT_OFF = "cut_off"
    FLAP_ON = "flap_on"
    FLAP_OFF = "flap_off"
    DRIFT = "drift"
    HEAT = "heat"
    LOW_BATTERY = "low_battery"
    DRILL_OFF = "drill_off"
    REPAIR = "repair"


@dataclass(frozen=True, slots=True)
class _Action:
    do: _Do
    target: int  # device index, or building index for power cuts
    duration_s: float = 0.0
    rate: float = 0.0
    drill: bool = False
    detail: str | None = None  # what the device's event says, when not its usual text (a demo's marking)


def _heat_extra(start: F64, until: F64, rate: F64, t: F64) -> F64:
    """Degrees C a loose terminal adds to the cable's settling temperature while it heats."""
    heating = (start <= t) & (t < until)
    return np.asarray(np.where(heating, rate * (t - np.where(heating, start, t)) / 60.0, 0.0), dtype=np.float64)


def _el_readings(*, volts: F64, current: F64, power: F64, energy: F64, leak: F64, temp: F64) -> dict[str, F64]:
    return {
        "voltage_v": _round(volts, 1),
        "current_a": _round(current, 3),
        "power_w": _round(power, 1),
        "energy_wh": _round(energy, 1),
        "residual_current_ma": _round(leak, 1),
        "temperature_c": _round(temp, 1),
    }


def _due(phase: F64, interval: F64, t0: float, t1: float) -> tuple[I64, F64]:
    """Rows reporting in (t0, t1] and when; assumes t1 - t0 <= min(interval)."""
    k1 = np.floor((t1 - phase) / interval)
    rows = np.flatnonzero(k1 > np.floor((t0 - phase) / interval)).astype(np.int64)
    return rows, phase[rows] + k1[rows] * interval[rows]


class Fleet:
    """Every device of a site directory, simulated. `advance(t)` returns what happened up to simulated time t."""

    def __init__(self, sites: SiteDirectory, *, seed: int = 7, start: float, profile: SimulationProfile | None = None) -> None:
        self.profile = profile or SimulationProfile.live()
        self.t = float(start)
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        self.devices: tuple[Device, ...] = tuple(sorted(sites.devices.values(), key=lambda d: d.id))
        self.index = {d.id: i for i, d in enumerate(self.devices)}
        self.buildings = tuple(sorted(sites.buildings))
        self._building_index = {b: i for i, b in enumerate(self.buildings)}
        self.gateways = tuple(sorted(sites.gateways))
        n = len(self.devices)
        self.kind = np.array([d.kind.value for d in self.devices], dtype=object)
        self.kind_code = np.array([_KIND_CODE[d.kind] for d in self.devices], dtype=np.int64)
        self.building_of = np.array([self._building_index[d.building] for d in self.devices], dtype=np.int64)
        self.interval = np.array([max(d.report_interval_s, 1.0) for d in self.devices], dtype=np.float64)
        self.phase = rng.uniform(0.0, self.interval) + self.t
        self.drill = np.zeros(n, dtype=np.bool_)  # a drill runs on the device: its reports also go out as drill copies
        self._drill_dirty = False  # a drill's state changed: `drill` is worked out again before the next reports
        self._drilling = False  # any drill at all (a fleet without one does no drill work)
        self._seq = itertools.count()
        self._pending: list[tuple[float, int, _Action]] = []
        nb = len(self.buildings)
        self.cut_start = np.full(nb, np.inf)
        self.cut_until = np.full(nb, -np.inf)
        self.cut_start_d = np.full(nb, np.inf)  # a drill's power cut (the building's real mains stay on)
        self.cut_until_d = np.full(nb, -np.inf)

        def members(*kinds: DeviceKind) -> I64:
            return np.flatnonzero(np.isin(self.kind, [k.value for k in kinds])).astype(np.int64)

        p = self.profile
        # electrical: household meters and distribution boxes (no household)
        self.el = members(DeviceKind.ELECTRICAL)
        ne = len(self.el)
        self.el_box = np.array([self.devices[i].household is None for i in self.el], dtype=np.bool_)
        # a unit's feeder carries ~30 flats (mean ~13 kW); a flat draws ~450 W on average
        self.el_base_w = np.where(self.el_box, rng.uniform(8_000, 16_000, ne), rng.lognormal(np.log(450.0), 0.35, ne))
        self.el_noise = np.where(self.el_box, 0.04, 0.12)  # thirty flats together are smoother than one
        self.el_shift_h = rng.uniform(-0.75, 0.75, ne)
        self.el_pf = rng.uniform(0.88, 0.99, ne)
        self.el_rated_a = np.where(self.el_box, 250.0, 40.0)  # a unit's feeder vs a flat's 40 A breaker
        self.el_rise_c = rng.uniform(25.0, 35.0, ne)  # rise at rated current
        self.el_leak_base = rng.uniform(1.5, 8.0, ne)
        self.el_leak_healthy = self.el_leak_base.copy()  # what a repaired circuit goes back to
        drifting = rng.random(ne) < p.drift_fault_fraction
        self.el_drift_rate = np.where(drifting, rng.uniform(*p.drift_ma_per_h, ne), 0.0)
        self.el_drift_start = np.where(drifting, self.t + rng.uniform(0.0, DAY_S, ne), np.inf)
        self.el_heat_start = np.full(ne, np.inf)
        self.el_heat_until = np.full(ne, -np.inf)
        self.el_heat_rate = np.zeros(ne)  # degrees C per minute while heating
        self.el_temp = 24.0 + self.el_rise_c * 0.05
        self.el_last = np.full(ne, self.t)
        self.el_energy_wh = rng.uniform(0.0, 5e6, ne)
        self.el_leak_alarm = np.zeros(ne, dtype=np.bool_)
        self.el_temp_alarm = np.zeros(ne, dtype=np.bool_)
        self._el_row = {int(g): r for r, g in enumerate(self.el)}
        self._el_row_of = np.full(n, -1, dtype=np.int64)
        self._el_row_of[self.el] = np.arange(ne)
        # a drill's pretend faults on a circuit, and what its drill copies report (their own cable temperature and alarms)
        self.el_heat_start_d = np.full(ne, np.inf)
        self.el_heat_until_d = np.full(ne, -np.inf)
        self.el_heat_rate_d = np.zeros(ne)
        self.el_heat_drill = np.zeros(ne, dtype=np.bool_)  # until the cable has cooled (3 time constants after the fault)
        self.el_drift_drill = np.zeros(ne, dtype=np.bool_)  # until the drill's electrician repairs it
        self.el_leak_base_d = np.zeros(ne)
        self.el_drift_rate_d = np.zeros(ne)
        self.el_drift_start_d = np.full(ne, np.inf)
        self.el_temp_d = self.el_temp.copy()
        self.el_leak_alarm_d = np.zeros(ne, dtype=np.bool_)  # a drill alarm still raised keeps the drill copies going
        self.el_temp_alarm_d = np.zeros(ne, dtype=np.bool_)
        # battery devices: smoke detectors, SOS buttons and anything else that checks in
        self.bat = members(DeviceKind.SMOKE, DeviceKind.SOS, DeviceKind.WATER_LEAK, DeviceKind.OTHER)
        nbat = len(self.bat)
        self.bat_b0 = rng.uniform(*p.battery_start_pct, nbat)
        self.bat_t0 = np.full(nbat, self.t)
        self.bat_rate = 100.0 / (rng.uniform(*p.battery_life_days, nbat) * DAY_S)  # percent per second
        self._bat_row = {int(g): r for r, g in enumerate(self.bat)}
        self.bat_drill = np.zeros(nbat, dtype=np.bool_)  # a drill's low battery (its copies run low; the real battery does not)
        self.bat_b0_d = np.zeros(nbat)
        self.bat_t0_d = np.full(nbat, self.t)
        self.smoke = members(DeviceKind.SMOKE)
        self.smoke_on = np.zeros(n, dtype=np.bool_)
        self.tamper_on = np.zeros(n, dtype=np.bool_)
        self.smoke_on_d = np.zeros(n, dtype=np.bool_)  # a drill's smoke and tamper
        self.tamper_on_d = np.zeros(n, dtype=np.bool_)
        self.sos = members(DeviceKind.SOS)
        self.sos_prone = np.zeros(n, dtype=np.bool_)
        self.sos_prone[self.sos] = rng.random(len(self.sos)) < p.phantom_prone_fraction
        # cameras
        self.cam = members(DeviceKind.CAMERA)
        nc = len(self.cam)
        self.cam_flap_start = np.full(nc, np.inf)
        self.cam_flap_until = np.full(nc, -np.inf)
        self.cam_down_since = np.full(nc, np.nan)
        self.cam_offline_sent = np.zeros(nc, dtype=np.bool_)
        self.cam_flap_start_d = np.full(nc, np.inf)  # a drill's outage: the drill's availability, never the real link
        self.cam_flap_until_d = np.full(nc, -np.inf)
        self.cam_down_since_d = np.full(nc, np.nan)
        self.cam_offline_sent_d = np.zeros(nc, dtype=np.bool_)
        self.cam_boot = self.t - rng.uniform(0.0, 30 * DAY_S, nc)
        self._cam_row = {int(g): r for r, g in enumerate(self.cam)}
        # gateways: patrol heartbeats
        self.gw_phase = rng.uniform(0.0, p.patrol_period_s, len(self.gateways)) + self.t
        self.gw_period = np.full(len(self.gateways), p.patrol_period_s)
        self.gw_seq = np.zeros(len(self.gateways), dtype=np.int64)
        self._boxes_of_building: dict[int, list[int]] = {}
        for row, i in enumerate(self.el):
            if self.el_box[row]:
                self._boxes_of_building.setdefault(int(self.building_of[i]), []).append(int(i))
        self.min_interval = float(min(self.interval.min(initial=3600.0), p.patrol_period_s))
        self._drawn_until = self.t
        self._events: list[SimEvent] = []
        self._avail: list[AvailabilityChange] = []

    # ------------------------------------------------------------------ lookups

    def device_index(self, device_id: str, *kinds: DeviceKind) -> int:
        i = self.index.get(device_id)
        if i is None or (kinds and self.devices[i].kind not in kinds):
            raise UnknownTarget("/".join(k.value for k in kinds) or "device", device_id)
        return i

    def building_index(self, building_id: str) -> int:
        if building_id not in self._building_index:
            raise UnknownTarget("building", building_id)
        return self._building_index[building_id]

    def battery_pct(self, device_id: str, t: float | None = None) -> float:
        r = self._bat_row[self.device_index(device_id)]
        return float(self._battery(np.array([r]), np.array([self.t if t is None else t]))[0])

    def cameras_down(self, t: float | None = None) -> list[str]:
        """Ids of cameras without a working link at time t (default: now)."""
        rows = np.arange(len(self.cam))
        mask = self._cam_down(rows, np.full(len(rows), self.t if t is None else t))
        return [self.devices[int(i)].id for i in self.cam[mask]]

    # ------------------------------------------------------------------ injections (drills, tests)

    def _push(self, at: float | None, action: _Action) -> None:
        heapq.heappush(self._pending, (self.t if at is None else at, next(self._seq), action))

    def smoke_alarm(self, device_id: str, *, at: float | None = None, duration_s: float | None = None, drill: bool = False,
                    detail: str | None = None) -> None:
        """Smoke at a detector from `at`; it clears by itself after duration_s (None: only by smoke_clear).
        `detail` replaces the event's text (a demo says it is one)."""
        i = self.device_index(device_id, DeviceKind.SMOKE)
        self._push(at, _Action(_Do.SMOKE_ON, i, duration_s or 0.0, drill=drill, detail=detail))

    def smoke_clear(self, device_id: str, *, at: float | None = None, drill: bool = False) -> None:
        self._push(at, _Action(_Do.SMOKE_OFF, self.device_index(device_id, DeviceKind.SMOKE), drill=drill))

    def self_test(self, device_id: str, *, at: float | None = None, drill: bool = False) -> None:
        self._push(at, _Action(_Do.SELF_TEST, self.device_index(device_id, DeviceKind.SMOKE), drill=drill))

    def tamper(self, device_id: str, *, at: float | None = None, duration_s: float = 300.0, drill: bool = False) -> None:
        self._push(at, _Action(_Do.TAMPER_ON, self.device_index(device_id, DeviceKind.SMOKE), duration_s, drill=drill))

    def sos_press(self, device_id: str, *, at: float | None = None, phantom: bool = False, drill: bool = False) -> None:
        i = self.device_index(device_id, DeviceKind.SOS)
        self._push(at, _Action(_Do.PHANTOM_SOS if phantom else _Do.SOS, i, drill=drill))

    def power_cut(self, building_id: str, *, at: float | None = None, duration_s: float = 600.0, drill: bool = False) -> None:
        self._push(at, _Action(_Do.CUT_ON, self.building_index(building_id), duration_s, drill=drill))

    def camera_outage(self, device_id: str, *, at: float | None = None, duration_s: float = 300.0, drill: bool = False) -> None:
        self._push(at, _Action(_Do.FLAP_ON, self.device_index(device_id, DeviceKind.CAMERA), duration_s, drill=drill))

    def leakage_drift(self, device_id: str, *, at: float | None = None, ma_per_h: float = 60.0, drill: bool = False,
                      duration_s: float | None = None) -> None:
        """Residual current starts rising by ma_per_h from `at` (a slowly failing insulation); after duration_s (None:
        never) an electrician repairs it and the circuit is back at its own baseline."""
        i = self.device_index(device_id, DeviceKind.ELECTRICAL)
        self._push(at, _Action(_Do.DRIFT, i, rate=ma_per_h, drill=drill))
        if duration_s is not None:
            self._push((self.t if at is None else at) + duration_s, _Action(_Do.REPAIR, i, drill=drill))

    def heating(self, device_id: str, *, at: float | None = None, c_per_min: float = 1.0, duration_s: float = 3600.0, drill: bool = False) -> None:
        """A loose terminal: the cable's settling temperature climbs c_per_min for duration_s, then the fault ends."""
        i = self.device_index(device_id, DeviceKind.ELECTRICAL)
        self._push(at, _Action(_Do.HEAT, i, duration_s, rate=c_per_min, drill=drill))

    def low_battery(self, device_id: str, *, at: float | None = None, drill: bool = False) -> None:
        """The device's battery crosses the low threshold at `at` (a drill's: only its drill copies run low, from then on)."""
        i = self.device_index(device_id, DeviceKind.SMOKE, DeviceKind.SOS, DeviceKind.WATER_LEAK, DeviceKind.OTHER)
        self._push(at, _Action(_Do.LOW_BATTERY, i, drill=drill))

    # ------------------------------------------------------------------ stepping

    def advance(self, t1: float) -> Step:
        """Simulate (self.t, t1] and return everything reported in it, time-ordered within each part."""
        t0 = self.t
        readings: list[ReadingBatch] = []
        patrols: list[PatrolDue] = []
        self._events, self._avail = [], []
        while self.t < t1:
            a = self.t
            self._run_pending(a)  # whatever is due now (an injection "now", or the end of the last sub-step)
            if self._drill_dirty:
                self._refresh_drill()
            b = min(t1, a + self.min_interval)
            if b > self._drawn_until:
                self._draw_random(max(a, self._drawn_until), b)
                self._drawn_until = b
            if self._pending and self._pending[0][0] < b:
                b = self._pending[0][0]  # cut the step at the next action, so reports before it see the old state
            self._check_cameras(b)
            if self._drilling:
                self._check_cameras(b, drill=True)
            self._check_batteries(a, b)
            readings += self._reports(a, b)
            patrols += self._patrols(a, b)
            self.t = b
        events = tuple(sorted(self._events, key=lambda e: e.t))
        avail = tuple(sorted(self._avail, key=lambda e: e.t))
        return Step(t0, t1, tuple(r for r in readings if len(r)), events, avail, tuple(patrols))

    def _draw_random(self, a: float, b: float) -> None:
        p, rng, per_s, dt = self.profile, self._rng, 1.0 / DAY_S, b - a

        def push(rows: Iterable[int], members: I64, do: _Do, span: tuple[float, float] | None = None) -> None:
            for r in rows:
                dur = float(rng.uniform(*span)) if span else 0.0
                self._push(float(rng.uniform(a, b)), _Action(do, int(members[r]), dur))

        push(poisson_picks(rng, len(self.smoke), p.smoke_alarms_per_day * per_s, dt), self.smoke, _Do.SMOKE_ON, p.smoke_alarm_s)
        push(poisson_picks(rng, len(self.smoke), p.self_tests_per_day * per_s, dt), self.smoke, _Do.SELF_TEST)
        push(poisson_picks(rng, len(self.smoke), p.tampers_per_day * per_s, dt), self.smoke, _Do.TAMPER_ON, p.tamper_s)
        push(poisson_picks(rng, len(self.sos), p.sos_presses_per_day * per_s, dt), self.sos, _Do.SOS)
        prone = self.sos[self.sos_prone[self.sos]]
        push(poisson_picks(rng, len(prone), p.phantom_presses_per_day * per_s, dt), prone, _Do.PHANTOM_SOS)
        push(poisson_picks(rng, len(self.cam), p.camera_flaps_per_day * per_s, dt), self.cam, _Do.FLAP_ON, p.camera_flap_s)
        cuts = poisson_picks(rng, len(self.buildings), p.power_cuts_per_building_day * per_s, dt)
        push(cuts, np.arange(len(self.buildings), dtype=np.int64), _Do.CUT_ON, p.power_cut_s)
        heats = poisson_picks(rng, len(self.el), p.heating_events_per_day * per_s, dt)
        for r in heats:
            self._push(float(rng.uniform(a, b)), _Action(_Do.HEAT, int(self.el[r]), float(rng.uniform(1800, 7200)), rate=float(rng.uniform(0.3, 1.5))))

    def _event(
        self,
        t: float,
        i: int,
        event: EventKind,
        *,
        value: float | None = None,
        detail: str | None = None,
        needs_callback: bool = False,
        drill: bool = False,
        phantom: bool = False,
    ) -> None:
        self._events.append(SimEvent(t, self.devices[i].id, event, value, detail, needs_callback, drill, phantom))

    def _run_pending(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            _at, _, act = heapq.heappop(self._pending)
            t = now  # an action injected for the past happens now
            i, d = act.target, act.drill
            self._drill_dirty |= d
            match act.do:
                case _Do.SMOKE_ON:
                    on = self.smoke_on_d if d else self.smoke_on
                    if not on[i]:
                        on[i] = True
                        self._event(t, i, EventKind.SMOKE_ALARM, drill=d, detail=act.detail or "smoke detected")
                    if act.duration_s > 0:
                        self._push(t + act.duration_s, _Action(_Do.SMOKE_OFF, i, drill=d))
                case _Do.SMOKE_OFF:
                    on = self.smoke_on_d if d else self.smoke_on
                    if on[i]:
                        on[i] = False
                        self._event(t, i, EventKind.SMOKE_CLEAR, drill=d)
                case _Do.SELF_TEST:
                    self._event(t, i, EventKind.SELF_TEST, drill=d, detail="test button pressed")
                case _Do.TAMPER_ON:
                    on = self.tamper_on_d if d else self.tamper_on
                    if not on[i]:
                        on[i] = True
                        self._event(t, i, EventKind.TAMPER, drill=d, detail="removed from its base")
                        self._push(t + max(act.duration_s, 1.0), _Action(_Do.TAMPER_OFF, i, drill=d))
                case _Do.TAMPER_OFF:
                    on = self.tamper_on_d if d else self.tamper_on
                    if on[i]:
                        on[i] = False
                        self._event(t, i, EventKind.TAMPER_CLEAR, drill=d)
                case _Do.SOS | _Do.PHANTOM_SOS:
                    phantom = act.do is _Do.PHANTOM_SOS
                    self._event(t, i, EventKind.SOS_PRESS, drill=d, needs_callback=bool(self.sos_prone[i]) or phantom, phantom=phantom)
                case _Do.LOW_BATTERY:
                    r = self._bat_row[i]
                    low = self.profile.low_battery_pct
                    if d:  # the drill's copies run low from now; the real battery is left as it is
                        self.bat_drill[r], self.bat_b0_d[r], self.bat_t0_d[r] = True, low, t
                        self._event(t, i, EventKind.LOW_BATTERY, value=low, detail=f"battery below {low:.0f} %", drill=True)
                    else:
                        self.bat_b0[r], self.bat_t0[r] = low + 1e-6, t  # crosses the threshold right now
                case _Do.DRIFT:
                    r = self._el_row[i]
                    sl = slice(r, r + 1)
                    if d:  # from where the drill's copies are now: the real circuit, or an earlier drill's drift
                        was = (self.el_leak_base_d, self.el_drift_rate_d, self.el_drift_start_d) if self.el_drift_drill[r] else \
                            (self.el_leak_base, self.el_drift_rate, self.el_drift_start)
                        base = float(leakage_ma(was[0][sl], was[1][sl], was[2][sl], np.array([t]), np.zeros(1))[0])
                        self.el_leak_base_d[r], self.el_drift_start_d[r], self.el_drift_rate_d[r] = base, t, act.rate
                        self.el_drift_drill[r] = True
                    else:
                        base = float(leakage_ma(self.el_leak_base[sl], self.el_drift_rate[sl], self.el_drift_start[sl], np.array([t]), np.zeros(1))[0])
                        self.el_leak_base[r], self.el_drift_start[r], self.el_drift_rate[r] = base, t, act.rate
                case _Do.REPAIR:
                    r = self._el_row[i]
                    if d:
                        self.el_drift_drill[r] = False  # its copies go on until the drill's alarm has cleared
                    else:
                        self.el_leak_base[r], self.el_drift_start[r], self.el_drift_rate[r] = self.el_leak_healthy[r], np.inf, 0.0
                case _Do.HEAT:
                    r = self._el_row[i]
                    if d:
                        self.el_heat_start_d[r], self.el_heat_until_d[r], self.el_heat_rate_d[r] = t, t + act.duration_s, act.rate
                        self.el_heat_drill[r] = True
                        # the cable cools for a while after the fault ends: keep the drill copies for 3 time constants
                        self._push(t + act.duration_s + 3 * _THERMAL_TAU_S, _Action(_Do.DRILL_OFF, i, drill=True))
                    else:
                        self.el_heat_start[r], self.el_heat_until[r], self.el_heat_rate[r] = t, t + act.duration_s, act.rate
                case _Do.DRILL_OFF:
                    r = self._el_row[i]
                    if t >= self.el_heat_until_d[r] + 3 * _THERMAL_TAU_S - 1e-6:  # not while a later drill's heating lasts
                        self.el_heat_drill[r] = False
                case _Do.FLAP_ON:
                    r = self._cam_row[i]
                    start, until, since = (self.cam_flap_start_d, self.cam_flap_until_d, self.cam_down_since_d) if d else \
                        (self.cam_flap_start, self.cam_flap_until, self.cam_down_since)
                    start[r] = t
                    until[r] = max(until[r], t + act.duration_s)
                    if np.isnan(since[r]):
                        since[r] = t
                    self._push(t + act.duration_s, _Action(_Do.FLAP_OFF, i, drill=d))
                case _Do.FLAP_OFF:
                    self._camera_maybe_up(self._cam_row[i], t, d)
                case _Do.CUT_ON:
                    self._power_cut(i, t, act.duration_s, d)
                case _Do.CUT_OFF:
                    self._power_restored(i, t, d)

    def _refresh_drill(self) -> None:
        """Which devices have a drill running: a drill fault lasting, a drill camera not yet back, or a drill alarm not yet cleared."""
        drill = self.smoke_on_d | self.tamper_on_d
        drill[self.el] |= self.el_heat_drill | self.el_drift_drill | self.el_leak_alarm_d | self.el_temp_alarm_d
        drill[self.bat] |= self.bat_drill
        drill[self.cam] |= ~np.isnan(self.cam_down_since_d)
        drill |= np.isfinite(self.cut_start_d)[self.building_of]
        started = self._el_row_of[drill & ~self.drill]
        started = started[started >= 0]
        self.el_temp_d[started] = self.el_temp[started]  # a drill's copies start from the cable as it really is
        self.drill = drill
        self._drilling = bool(drill.any())
        self._drill_dirty = False

    def _power_cut(self, bi: int, t: float, duration_s: float, drill: bool) -> None:
        start, until, since = (self.cut_start_d, self.cut_until_d, self.cam_down_since_d) if drill else \
            (self.cut_start, self.cut_until, self.cam_down_since)
        if until[bi] > t:  # already dark: extend
            until[bi] = max(until[bi], t + duration_s)
            self._push(until[bi], _Action(_Do.CUT_OFF, bi, drill=drill))
            return
        start[bi], until[bi] = t, t + duration_s
        for box in self._boxes_of_building.get(bi, []):
            self._event(t, box, EventKind.POWER_LOST, drill=drill, detail=f"mains lost in building {self.buildings[bi]}")
        rows = np.flatnonzero(self.building_of[self.cam] == bi)
        fresh = rows[np.isnan(since[rows])]
        since[fresh] = t
        self._push(t + duration_s, _Action(_Do.CUT_OFF, bi, drill=drill))

    def _power_restored(self, bi: int, t: float, drill: bool) -> None:
        start, until = (self.cut_start_d, self.cut_until_d) if drill else (self.cut_start, self.cut_until)
        if until[bi] > t + 1e-9 or not np.isfinite(start[bi]):
            return  # extended, or already restored
        start[bi], until[bi] = np.inf, -np.inf
        for box in self._boxes_of_building.get(bi, []):
            self._event(t, box, EventKind.POWER_RESTORED, drill=drill, detail=f"mains back in building {self.buildings[bi]}")
        for r in np.flatnonzero(self.building_of[self.cam] == bi):
            if not drill:
                self.cam_boot[r] = t  # the cameras boot again
            self._camera_maybe_up(int(r), t, drill)

    def _dark(self, building: I64, t: F64, drill: bool = False) -> B:
        start, until = (self.cut_start_d, self.cut_until_d) if drill else (self.cut_start, self.cut_until)
        return np.asarray((start[building] <= t) & (t < until[building]), dtype=np.bool_)

    def _cam_down(self, rows: I64, t: F64, drill: bool = False) -> B:
        """Cameras without a link at t: really (drill False), or in a drill's pretence (its outages and power cuts alone)."""
        start, until = (self.cam_flap_start_d, self.cam_flap_until_d) if drill else (self.cam_flap_start, self.cam_flap_until)
        flap = (start[rows] <= t) & (t < until[rows])
        return np.asarray(flap | self._dark(self.building_of[self.cam[rows]], t, drill), dtype=np.bool_)

    def _camera_maybe_up(self, r: int, t: float, drill: bool) -> None:
        since, sent = (self.cam_down_since_d, self.cam_offline_sent_d) if drill else (self.cam_down_since, self.cam_offline_sent)
        if self._cam_down(np.array([r]), np.array([t]), drill)[0] or np.isnan(since[r]):
            return
        self._check_cameras(t, only=r, drill=drill)  # an outage that outlived the keepalive deadline is reported first
        since[r] = np.nan
        if sent[r]:
            sent[r] = False
            self._avail.append(AvailabilityChange(t, self.devices[int(self.cam[r])].id, AvailabilityState.ONLINE, "keepalive resumed", drill))

    def _check_cameras(self, b: float, only: int | None = None, drill: bool = False) -> None:
        """The gateway declares a camera offline after N missed keepalives (GB/T 28181: 3 x 60 s); a drill's
        outage is declared the same way, drill-flagged."""
        since, sent = (self.cam_down_since_d, self.cam_offline_sent_d) if drill else (self.cam_down_since, self.cam_offline_sent)
        deadline = since + self.profile.camera_missed_heartbeats_offline * self.interval[self.cam]
        late = ~sent & (deadline <= b)
        if only is not None:
            late &= np.arange(len(self.cam)) == only
        for r in np.flatnonzero(late):
            sent[r] = True
            i = int(self.cam[r])
            n = self.profile.camera_missed_heartbeats_offline
            reason = f"no keepalive for {n} periods ({n * self.interval[i]:.0f} s)"
            self._avail.append(AvailabilityChange(float(deadline[r]), self.devices[i].id, AvailabilityState.OFFLINE, reason, drill))

    def _battery(self, rows: I64, t: F64) -> F64:
        return np.asarray(np.clip(self.bat_b0[rows] - (t - self.bat_t0[rows]) * self.bat_rate[rows], 0.0, 100.0), dtype=np.float64)

    def _check_batteries(self, a: float, b: float) -> None:
        low = self.profile.low_battery_pct
        t_low = self.bat_t0 + (self.bat_b0 - low) / self.bat_rate
        for r in np.flatnonzero((t_low > a) & (t_low <= b)):
            i = int(self.bat[r])
            self._event(float(t_low[r]), i, EventKind.LOW_BATTERY, value=low, detail=f"battery below {low:.0f} %")

    def _reports(self, a: float, b: float) -> list[ReadingBatch]:
        out = self._electrical(a, b) + self._cameras(a, b)
        rows, t = _due(self.phase[self.bat], self.interval[self.bat], a, b)
        idx = self.bat[rows]
        real = self._battery(rows, t)
        out += self._battery_batches(idx, t, _round(real, 1), drill=False)
        c = np.flatnonzero(self.drill[idx]) if self._drilling else np.empty(0, dtype=np.int64)
        if len(c):
            rc, tc = rows[c], t[c]
            pretend = np.clip(self.bat_b0_d[rc] - (tc - self.bat_t0_d[rc]) * self.bat_rate[rc], 0.0, 100.0)
            copies = np.where(self.bat_drill[rc], np.minimum(pretend, real[c]), real[c])
            out += self._battery_batches(idx[c], tc, _round(copies, 1), drill=True)
        return out

    def _battery_batches(self, idx: I64, t: F64, battery: F64, *, drill: bool) -> list[ReadingBatch]:
        out: list[ReadingBatch] = []
        for kind in (DeviceKind.SMOKE, DeviceKind.SOS, DeviceKind.WATER_LEAK, DeviceKind.OTHER):
            m = self.kind_code[idx] == _KIND_CODE[kind]
            if m.any():
                out.append(ReadingBatch(kind, idx[m], t[m], {"battery_pct": battery[m]}, np.full(int(m.sum()), drill)))
        return out

    def _electrical(self, a: float, b: float) -> list[ReadingBatch]:
        """Real reports (and a drilled circuit's drill copies, from the same draws with the drill's faults laid over)."""
        rows, t = _due(self.phase[self.el], self.interval[self.el], a, b)
        idx = self.el[rows]
        dark = self._dark(self.building_of[idx], t)
        keep = ~dark | self.el_box[rows]  # household meters lose power; boxes report the outage on backup
        rows, t, idx, dark = rows[keep], t[keep], idx[keep], dark[keep]
        rng, n = self._rng, len(rows)
        hour = local_hour(t, self.profile.utc_offset_s)
        shape = daily_load_shape(hour - self.el_shift_h[rows]) * np.clip(1.0 + self.el_noise[rows] * rng.standard_normal(n), 0.3, None)
        load_w = self.el_base_w[rows] * shape
        mains_v = mains_voltage_v(hour, shape, rng.standard_normal(n))
        power, volts, current = self._supply(rows, dark, load_w, mains_v)
        dt = np.clip(t - self.el_last[rows], 0.0, 2 * self.interval[idx])
        self.el_energy_wh[rows] += power * dt / 3600.0
        ambient = 22.0 + 4.0 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi)
        extra = _heat_extra(self.el_heat_start[rows], self.el_heat_until[rows], self.el_heat_rate[rows], t)
        steady = cable_temperature_steady_c(ambient, self.el_rise_c[rows], current, self.el_rated_a[rows]) + extra
        lag = np.exp(-np.clip(t - self.el_last[rows], 0.0, None) / _THERMAL_TAU_S)
        self.el_temp[rows] = steady + (self.el_temp[rows] - steady) * lag
        self.el_last[rows] = t
        leak_noise = rng.standard_normal(n)
        leak = leakage_ma(self.el_leak_base[rows], self.el_drift_rate[rows], self.el_drift_start[rows], t, leak_noise)
        temp_noise = 0.2 * rng.standard_normal(n)
        temp = self.el_temp[rows] + temp_noise
        self._electrical_alarms(rows, idx, t, leak, temp)
        energy = self.el_energy_wh[rows]
        readings = _el_readings(volts=volts, current=current, power=power, energy=energy, leak=leak, temp=temp)
        out = [ReadingBatch(DeviceKind.ELECTRICAL, idx, t, readings, np.zeros(n, dtype=np.bool_))]
        if not self._drilling:
            return out
        dark_d = dark | self._dark(self.building_of[idx], t, drill=True)
        c = np.flatnonzero(self.drill[idx] & (~dark_d | self.el_box[rows]))  # a meter dark in the drill sends no copy
        if not len(c):
            return out
        rc, tc = rows[c], t[c]
        power_c, volts_c, current_c = self._supply(rc, dark_d[c], load_w[c], mains_v[c])
        extra_c = extra[c] + _heat_extra(self.el_heat_start_d[rc], self.el_heat_until_d[rc], self.el_heat_rate_d[rc], tc)
        steady_c = cable_temperature_steady_c(ambient[c], self.el_rise_c[rc], current_c, self.el_rated_a[rc]) + extra_c
        self.el_temp_d[rc] = steady_c + (self.el_temp_d[rc] - steady_c) * lag[c]
        drift_c = leakage_ma(self.el_leak_base_d[rc], self.el_drift_rate_d[rc], self.el_drift_start_d[rc], tc, leak_noise[c])
        leak_c = np.where(self.el_drift_drill[rc], drift_c, leak[c])
        temp_c = self.el_temp_d[rc] + temp_noise[c]
        self._electrical_alarms(rc, idx[c], tc, leak_c, temp_c, drill=True)
        readings_c = _el_readings(volts=volts_c, current=current_c, power=power_c, energy=energy[c], leak=leak_c, temp=temp_c)
        return [*out, ReadingBatch(DeviceKind.ELECTRICAL, idx[c], tc, readings_c, np.ones(len(c), dtype=np.bool_))]

    def _supply(self, rows: I64, dark: B, load_w: F64, mains_v: F64) -> tuple[F64, F64, F64]:
        """Power, voltage and current of circuits: what they draw, or nothing while dark."""
        power = np.where(dark, 0.0, load_w)
        volts = np.where(dark, 0.0, mains_v)
        current = np.where(dark, 0.0, power / np.maximum(volts, 1.0) / self.el_pf[rows])
        return power, volts, current

    def _electrical_alarms(self, rows: I64, idx: I64, t: F64, leak: F64, temp: F64, *, drill: bool = False) -> None:
        p = self.profile
        leak_alarm, temp_alarm = (self.el_leak_alarm_d, self.el_temp_alarm_d) if drill else (self.el_leak_alarm, self.el_temp_alarm)
        for name, values, limit, active, unit in (
            ("residual current", leak, p.leakage_alarm_ma, leak_alarm, "mA"),
            ("cable temperature", temp, p.cable_temp_alarm_c, temp_alarm, "°C"),
        ):
            was = active[rows]
            rise = np.flatnonzero(~was & (values >= limit))
            fall = np.flatnonzero(was & (values < 0.9 * limit))  # 10 % hysteresis, so noise does not chatter
            for k in rise:
                active[rows[k]] = True
                v, i = float(values[k]), int(idx[k])
                detail = f"{name} {v:.0f} {unit} ≥ {limit:.0f} {unit}"
                self._event(float(t[k]), i, EventKind.ELECTRICAL_ALARM, value=v, detail=detail, drill=drill)
            for k in fall:
                active[rows[k]] = False
                v, i = float(values[k]), int(idx[k])
                self._event(float(t[k]), i, EventKind.ELECTRICAL_CLEAR, value=v, detail=f"{name} back to {v:.0f} {unit}", drill=drill)
            self._drill_dirty |= drill and len(fall) > 0  # a drill alarm cleared: the drill may be over

    def _cameras(self, a: float, b: float) -> list[ReadingBatch]:
        rows, t = _due(self.phase[self.cam], self.interval[self.cam], a, b)
        up = ~self._cam_down(rows, t)
        rows, t = rows[up], t[up]
        idx = self.cam[rows]
        fps = _round(_CAMERA_FPS + 0.3 * self._rng.standard_normal(len(rows)), 1)
        uptime = _round(t - self.cam_boot[rows])
        out = [ReadingBatch(DeviceKind.CAMERA, idx, t, {"frame_rate_fps": fps, "uptime_s": uptime}, np.zeros(len(rows), dtype=np.bool_))]
        if self._drilling:
            c = np.flatnonzero(self.drill[idx] & ~self._cam_down(rows, t, drill=True))  # a camera down in the drill sends no copy
            if len(c):
                copies = {"frame_rate_fps": fps[c], "uptime_s": uptime[c]}
                out.append(ReadingBatch(DeviceKind.CAMERA, idx[c], t[c], copies, np.ones(len(c), dtype=np.bool_)))
        return out

    def _patrols(self, a: float, b: float) -> list[PatrolDue]:
        rows, t = _due(self.gw_phase, self.gw_period, a, b)
        out = []
        for r, tr in zip(rows.tolist(), t.tolist(), strict=True):
            self.gw_seq[r] += 1
            out.append(PatrolDue(tr, self.gateways[r], int(self.gw_seq[r]), float(self.gw_period[r])))
        return out
