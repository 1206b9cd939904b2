"""Signal shapes of the simulated devices, as vectorised numpy functions of time and per-device parameters.

How this works: every function takes arrays (one entry per device) and returns arrays; nothing here reads a
clock or keeps state. The stateful parts (battery left, cable temperature lag, energy counters, pending
faults) live in simulators/fleet.py, which calls these with the simulated time it is given.

Shapes, with the numbers they rest on:
  load      a household's daily curve: low at night (~35 % of its mean), a breakfast bump at 07:30, a
            lunch bump at 12:00 and the evening peak at 19:30 (~2x the mean), each household shifted by up to
            +-45 min, with multiplicative noise.
  voltage   220 V nominal (GB/T 12325 allows +7 %/-10 %), a little lower at the evening peak, noise ~1 V.
  leakage   residual current: a baseline of a few mA, plus a drift fault that rises linearly (mA per hour)
            once started; the alarm setting is 300 mA (GB 50116 9.2.3 default).
  cable     temperature: ambient plus a rise proportional to (I / I_rated)^2 (Joule heating), approached
            with a first-order lag (tau ~ 20 min), plus heating events (a loose terminal) that add a ramp.
  battery   percent left, linear decay over a battery life of years; low battery below 15 %.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

__all__ = [
    "DAY_S",
    "FloatArray",
    "SimulationProfile",
    "cable_temperature_steady_c",
    "daily_load_shape",
    "leakage_ma",
    "local_hour",
    "mains_voltage_v",
    "poisson_picks",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86_400.0

# (hour of the peak, width in hours, height relative to the night floor): a residential curve.
_LOAD_BUMPS: tuple[tuple[float, float, float], ...] = ((7.5, 1.0, 0.9), (12.0, 1.2, 0.7), (19.5, 1.8, 2.1), (22.5, 1.2, 0.6))
_NIGHT_FLOOR = 0.35


def _shape_raw(hour: FloatArray) -> FloatArray:
    out = np.full_like(hour, _NIGHT_FLOOR)
    for peak, width, height in _LOAD_BUMPS:
        # distance on the 24 h circle, so the 22:30 bump wraps past midnight
        d = np.abs(((hour - peak + 12.0) % 24.0) - 12.0)
        out += height * np.exp(-0.5 * (d / width) ** 2)
    return out


_GRID = np.linspace(0.0, 24.0, 24 * 60, endpoint=False)
_SHAPE_MEAN = float(_shape_raw(_GRID).mean())


def local_hour(t: FloatArray | float, utc_offset_s: float) -> FloatArray:
    """Hour of the local day in [0, 24) for Unix time(s) t."""
    return np.asarray(((np.asarray(t, dtype=np.float64) + utc_offset_s) % DAY_S) / 3600.0, dtype=np.float64)


def daily_load_shape(hour: FloatArray) -> FloatArray:
    """Relative load at a local hour, normalised so its daily mean is 1.0."""
    return _shape_raw(np.asarray(hour, dtype=np.float64)) / _SHAPE_MEAN


def mains_voltage_v(hour: FloatArray, load_ratio: FloatArray, noise: FloatArray) -> FloatArray:
    """Mains voltage: 222 V at night, sagging ~4 V with the evening load; `noise` is standard normal."""
    return 222.0 - 2.0 * np.clip(load_ratio, 0.0, 3.0) + 1.0 * noise


def leakage_ma(baseline_ma: FloatArray, drift_ma_per_h: FloatArray, drift_start: FloatArray, t: FloatArray, noise: FloatArray) -> FloatArray:
    """Residual current: baseline, plus a linear drift since `drift_start` (inf = no drift), plus noise."""
    hours = np.clip((t - drift_start) / 3600.0, 0.0, None)
    hours = np.where(np.isfinite(hours), hours, 0.0)
    return np.clip(baseline_ma + drift_ma_per_h * hours + 0.3 * noise, 0.0, None)


def cable_temperature_steady_c(ambient_c: FloatArray, rise_at_rated_c: FloatArray, current_a: FloatArray, rated_a: FloatArray) -> FloatArray:
    """Where the cable temperature settles at a given current (Joule heating goes with I^2)."""
    return ambient_c + rise_at_rated_c * (current_a / rated_a) ** 2


def poisson_picks(rng: np.random.Generator, n: int, rate_per_s: float, dt: float) -> IntArray:
    """Indices (0..n-1, repeats possible) of devices that see a random event in a window of dt seconds,
    when each device has events at `rate_per_s`. Costs O(events), not O(n)."""
    if n == 0 or rate_per_s <= 0.0 or dt <= 0.0:
        return np.empty(0, dtype=np.int64)
    count = int(rng.poisson(n * rate_per_s * dt))
    return rng.integers(0, n, size=count, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class SimulationProfile:
    """Rates and settings of a simulation. Rates are per device (or per building) per day.

    The default is the live demo: background life (an occasional camera flap, a battery running low, a rare
    power cut) and NO random smoke alarms or SOS presses, so a demo never cries wolf. `lively()` adds them.
    """

    utc_offset_s: float = 8 * 3600.0  # China Standard Time
    # electrical
    leakage_alarm_ma: float = 300.0  # GB 50116 9.2.3 default residual-current alarm setting
    cable_temp_alarm_c: float = 70.0  # PVC cable insulation is rated 70 C continuous
    drift_fault_fraction: float = 0.0  # share of electrical devices with a leakage drift from the start
    drift_ma_per_h: tuple[float, float] = (5.0, 40.0)  # drift rate range of such faults
    heating_events_per_day: float = 0.0  # loose-terminal heating events per electrical device per day
    # power
    power_cuts_per_building_day: float = 1.0 / 400.0  # about one cut per community of ~80 buildings a week
    power_cut_s: tuple[float, float] = (300.0, 1800.0)
    # smoke detectors
    smoke_alarms_per_day: float = 0.0
    smoke_alarm_s: tuple[float, float] = (60.0, 600.0)
    self_tests_per_day: float = 1.0 / 90.0
    tampers_per_day: float = 1.0 / 730.0
    tamper_s: tuple[float, float] = (60.0, 900.0)
    battery_life_days: tuple[float, float] = (365.0 * 3, 365.0 * 10)
    battery_start_pct: tuple[float, float] = (15.5, 100.0)
    low_battery_pct: float = 15.0
    # cameras
    camera_flaps_per_day: float = 0.05
    camera_flap_s: tuple[float, float] = (30.0, 600.0)
    camera_missed_heartbeats_offline: int = 3  # GB/T 28181: offline after 3 missed keepalives
    # SOS buttons
    sos_presses_per_day: float = 0.0
    phantom_presses_per_day: float = 0.0  # presses nobody made, on buttons known to fire by themselves
    phantom_prone_fraction: float = 0.3  # share of buttons of a model known for phantom presses
    # gateways
    patrol_period_s: float = 3600.0  # the standard's ceiling is 2 h

    @classmethod
    def live(cls) -> SimulationProfile:
        return cls()

    @classmethod
    def quiet(cls) -> SimulationProfile:
        """Readings only: no random events at all (drills and tests inject what they need)."""
        return cls(
            power_cuts_per_building_day=0.0,
            self_tests_per_day=0.0,
            tampers_per_day=0.0,
            camera_flaps_per_day=0.0,
            battery_start_pct=(60.0, 100.0),
        )

    def lively(self) -> SimulationProfile:
        """This profile plus random life-safety events and electrical faults (an explicit choice)."""
        return replace(
            self,
            smoke_alarms_per_day=1.0 / 3650.0,
            sos_presses_per_day=1.0 / 365.0,
            phantom_presses_per_day=1.0 / 120.0,
            drift_fault_fraction=0.002,
            heating_events_per_day=1.0 / 3650.0,
        )
