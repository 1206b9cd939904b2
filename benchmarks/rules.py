"""How many readings per second the alerting core evaluates with 100,000 devices and the full default rule set.

Figures (a synthetic street: 100,000 devices in 2,000 buildings, 40 % electrical with five metrics each):
  baseline numpy   readings/s of a bare numpy pass over the same columns: one gather + compare per rule
                   (the floor any columnar evaluation pays)
  core (columns)   readings/s of Engine.on_batch: thresholds with hysteresis and debounce, rate of rise,
                   residual drift, presence and welfare activity, over batches already in columns
  full path        readings/s of Engine.on_readings: the same plus building the columns from Reading objects
                   (one dict look-up per reading) - this is what the alarm service pays, held against the target
  tick             ms for one absence/welfare/silence scan over all devices
Target: full path >= 50,000 readings/s in one process (issue 5). Ratios are to the baseline.

Run: .venv/bin/python benchmarks/rules.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from alerting.directory import DeviceInfo, WelfareHousehold
from alerting.engine import Batch, Engine
from backend.alarms.rules import load_rules
from backend.ingest.handoff import Reading
from broker.kinds import DeviceKind

T0 = 1_767_225_600_000
TARGET = 50_000.0
METRICS = {
    DeviceKind.ELECTRICAL: [("residual_current_ma", 40.0, 15.0), ("temperature_c", 35.0, 3.0), ("voltage_v", 221.0, 3.0),
                            ("current_a", 8.0, 4.0), ("power_w", 900.0, 400.0)],
    DeviceKind.SMOKE: [("temperature_c", 22.0, 1.0), ("battery_pct", 80.0, 5.0)],
    DeviceKind.CAMERA: [("fps_fps", 25.0, 0.5)],
    DeviceKind.SOS: [("battery_pct", 90.0, 3.0)],
}


@dataclass(frozen=True)
class StreetSite:
    devices_n: int
    per_building: int = 50

    def _kind(self, i: int) -> DeviceKind:
        r = i % 20
        return DeviceKind.ELECTRICAL if r < 8 else DeviceKind.SMOKE if r < 14 else DeviceKind.CAMERA if r < 17 else DeviceKind.SOS

    def devices(self) -> Iterator[DeviceInfo]:
        for i in range(self.devices_n):
            b = i // self.per_building
            kind = self._kind(i)
            interval = 60.0 if kind in (DeviceKind.CAMERA, DeviceKind.ELECTRICAL) else 86_400.0
            yield DeviceInfo(f"d{i}", kind, f"gw{b}", f"b{b}", 1 + (i % 2), f"h{i // 4}", interval, f"{b}号楼")

    def gateways(self) -> Iterator[tuple[str, str | None]]:
        for b in range((self.devices_n + self.per_building - 1) // self.per_building):
            yield f"gw{b}", f"b{b}"

    def welfare_households(self) -> Iterator[WelfareHousehold]:
        for h in range(0, self.devices_n // 4, 10):
            yield WelfareHousehold(f"h{h}", f"b{(h * 4) // self.per_building}", 1, 24.0)


def make_readings(site: StreetSite, rng: np.random.Generator, n: int, t_ms: int) -> list[Reading]:
    """`n` readings from random devices and metrics; one device in 500 is faulty and reads far out of range."""
    out: list[Reading] = []
    devs = rng.integers(0, site.devices_n, size=n)
    noise = rng.standard_normal(n)
    spikes = devs % 500 == 0
    for j, i in enumerate(devs):
        kind = site._kind(int(i))
        metrics = METRICS[kind]
        name, mean, sd = metrics[j % len(metrics)]
        value = mean + sd * float(noise[j]) + (400.0 if spikes[j] else 0.0)
        out.append(Reading(f"d{i}", f"gw{int(i) // site.per_building}", name, value, t_ms + j % 1000, t_ms + 1000))
    return out


def baseline(engine: Engine, b: Batch) -> None:
    """A bare numpy pass: for each rule, gather its level by slot and compare (no state, no debounce)."""
    for _, cols, mid in engine.thresholds:
        sel = b.metric == mid
        _ = b.value[sel] > cols.level[b.slot[sel]]
    for mid in (engine._rise_metric, engine._drift_metric):
        sel = b.metric == mid
        _ = b.value[sel] > 0.0


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 devices and few batches: a smoke run")
    parser.add_argument("--devices", type=int, default=None)
    args = parser.parse_args()
    devices = args.devices or (10_000 if args.quick else 100_000)
    batch_n = 5_000 if args.quick else 20_000
    batches = 4 if args.quick else 20
    rng = np.random.default_rng(7)
    site = StreetSite(devices)
    t = time.perf_counter()
    engine = Engine(load_rules(), site, T0)
    build_s = time.perf_counter() - t
    # warm-up: every device's series gets its slot (first sight), as after a few minutes of live traffic
    warm = [Reading(d.id, d.gateway, m, mean, T0, T0) for d in site.devices() for m, mean, _ in METRICS[d.kind]]
    engine.on_readings(warm, T0)
    work = [make_readings(site, rng, batch_n, T0 + (k + 1) * 1000) for k in range(batches)]
    cols = [engine.batch(rs) for rs in work]

    t = time.perf_counter()
    for b in cols:
        baseline(engine, b)
    base_s = time.perf_counter() - t

    t = time.perf_counter()
    actions = 0
    for k, b in enumerate(cols):
        actions += len(engine.on_batch(b, T0 + (k + 1) * 1000))
    core_s = time.perf_counter() - t

    work2 = [make_readings(site, rng, batch_n, T0 + (batches + k + 1) * 1000) for k in range(batches)]
    t = time.perf_counter()
    for k, rs in enumerate(work2):
        actions += len(engine.on_readings(rs, T0 + (batches + k + 1) * 1000))
    full_s = time.perf_counter() - t

    t = time.perf_counter()
    for rs in work2:
        engine.batch(rs)
    batch_build_s = time.perf_counter() - t

    ticks = 5
    t = time.perf_counter()
    for k in range(ticks):
        engine.tick(T0 + (2 * batches + k) * 1000)
    tick_ms = (time.perf_counter() - t) / ticks * 1000

    n = batch_n * batches
    figures: dict[str, float | int] = {
        "devices": devices,
        "readings": n,
        "rules": len(engine.thresholds) + 2,
        "engine_build_s": round(build_s, 3),
        "baseline_numpy_per_s": round(rate(n, base_s)),
        "core_columns_per_s": round(rate(n, core_s)),
        "batch_build_only_per_s": round(rate(n, batch_build_s)),
        "full_path_per_s": round(rate(n, full_s)),
        "core_to_baseline_ratio": round(base_s / core_s, 3) if core_s else 0.0,
        "full_to_baseline_ratio": round(base_s / full_s, 3) if full_s else 0.0,
        "tick_ms": round(tick_ms, 2),
        "actions": actions,
    }
    rows = [
        ("baseline numpy (compare only)", figures["baseline_numpy_per_s"], 1.0),
        ("core: Engine.on_batch (columns)", figures["core_columns_per_s"], figures["core_to_baseline_ratio"]),
        ("building columns from Readings", figures["batch_build_only_per_s"], round(base_s / batch_build_s, 3)),
        ("full path: Engine.on_readings", figures["full_path_per_s"], figures["full_to_baseline_ratio"]),
    ]
    print(f"alerting rules: {devices:,} devices, {n:,} readings in batches of {batch_n:,}, {figures['rules']} columnar rules")
    print(f"{'what':40} {'readings/s':>14} {'x baseline':>11}")
    for name, r, ratio in rows:
        print(f"{name:40} {r:>14,} {ratio:>11}")
    print(f"{'tick (absence + welfare scan)':40} {tick_ms:>11.2f} ms")
    print(f"target: full path >= {TARGET:,.0f} readings/s -> {'met' if figures['full_path_per_s'] >= TARGET else 'NOT met'}")
    met = {"full_path_per_s": figures["full_path_per_s"] >= TARGET}
    print(json.dumps({"benchmark": "rules", "quick": args.quick, "figures": figures, "targets": {"full_path_per_s": TARGET}, "met": met}))


if __name__ == "__main__":
    main()
