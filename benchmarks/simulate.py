"""How fast the simulator generates, encodes and publishes, against what a street needs.

Figures (on the sample community, ~6,000 devices):
  encode only     msg/s of the native encoder over steps generated beforehand (the baseline)
  generate+encode msg/s of fleet stepping plus native encoding (the ratio to the baseline shows what
                  the numpy generation costs on top of building and serialising the messages)
  generate+mixed  the same with every device speaking its directory dialect
  publish         msg/s published to a real Mosquitto through one connection per gateway, simulated time
                  running as fast as the process can go
Targets: a street (15 communities, ~90,000 devices) at real rates is 15 x the community's real-time rate;
generation+encoding must reach 10 x that (load tests at --speed 10), publishing 4 x that.

Run: .venv/bin/python benchmarks/simulate.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from backend.sites import SiteDirectory, load_site_directory
from broker.clock import VirtualClock
from broker.process import MosquittoProcess
from simulators.dialects import MixedEncoder
from simulators.fleet import Fleet
from simulators.live import CommunitySimulator
from simulators.native import NativeEncoder
from simulators.records import Step
from simulators.signals import SimulationProfile

REPO = Path(__file__).resolve().parent.parent
START = 1_767_225_600.0
COMMUNITIES_PER_STREET = 15


def steps_for(sites: SiteDirectory, seconds: float, step_s: float = 1.0) -> tuple[Fleet, list[Step], float]:
    fleet = Fleet(sites, seed=7, start=START, profile=SimulationProfile.live())
    t0 = time.perf_counter()
    steps = []
    while fleet.t < START + seconds:
        steps.append(fleet.advance(fleet.t + step_s))
    return fleet, steps, time.perf_counter() - t0


def encode_all(fleet: Fleet, steps: list[Step], *, mixed: bool, sites: SiteDirectory) -> tuple[int, float]:
    native = NativeEncoder(fleet.devices, "bench")
    encoder = MixedEncoder(native, sites) if mixed else native
    by_device = {d.id: d for d in fleet.devices}
    t0 = time.perf_counter()
    n = sum(1 for s in steps for _ in encoder.step(s, by_device))
    return n, time.perf_counter() - t0


async def publish(sites: SiteDirectory, seconds: float) -> tuple[int, float, int]:
    with MosquittoProcess(Path(tempfile.mkdtemp(prefix="bench-sim-"))) as m:
        clock = VirtualClock(round(START * 1000))
        sim = CommunitySimulator(sites, m.host, m.port, clock=clock, duration_s=seconds, profile=SimulationProfile.live(), step_s=5.0)
        async with sim:
            t0 = time.perf_counter()
            while not sim.finished.is_set():  # as fast as the generator goes: time moves a step whenever it sleeps
                await clock.run_for(sim.step_s)
            await sim.drained()
            elapsed = time.perf_counter() - t0
        return sim.stats.total - 2 * len(sim.links), elapsed, len(sim.links)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    seconds = 300.0 if args.quick else 1800.0
    sites = load_site_directory(REPO / "sites" / "sample-community.yaml")

    fleet, steps, gen_s = steps_for(sites, seconds)
    n_native, enc_s = encode_all(fleet, steps, mixed=False, sites=sites)
    n_mixed, mixed_s = encode_all(fleet, steps, mixed=True, sites=sites)
    community_real_rate = n_native / seconds  # messages per simulated second = msg/s at real rates
    street_real_rate = community_real_rate * COMMUNITIES_PER_STREET
    encode_only = n_native / enc_s
    full = n_native / (gen_s + enc_s)
    full_mixed = n_mixed / (gen_s + mixed_s)
    n_pub, pub_s, links = asyncio.run(publish(sites, seconds / 2))
    publish_rate = n_pub / pub_s

    rows = [
        ("encode only (baseline)", n_native, enc_s, encode_only),
        ("generate + encode native", n_native, gen_s + enc_s, full),
        ("generate + encode mixed dialects", n_mixed, gen_s + mixed_s, full_mixed),
        (f"publish to Mosquitto ({links} gateway connections)", n_pub, pub_s, publish_rate),
    ]
    print(f"sample community: {len(fleet.devices):,} devices, {community_real_rate:,.1f} msg/s at real rates; a street ~{street_real_rate:,.0f} msg/s")
    print(f"{'what':<52}{'messages':>12}{'seconds':>10}{'msg/s':>12}")
    for name, n, s, rate in rows:
        print(f"{name:<52}{n:>12,}{s:>10.2f}{rate:>12,.0f}")
    targets = {"generate_encode_msg_per_s": 10 * street_real_rate, "publish_msg_per_s": 4 * street_real_rate}
    figures = {
        "devices": len(fleet.devices),
        "community_real_rate_msg_per_s": round(community_real_rate, 1),
        "street_real_rate_msg_per_s": round(street_real_rate, 1),
        "encode_only_msg_per_s": round(encode_only),
        "generate_encode_msg_per_s": round(full),
        "generate_encode_mixed_msg_per_s": round(full_mixed),
        "generation_cost_ratio": round(encode_only / full, 2),
        "publish_msg_per_s": round(publish_rate),
        "street_speedup_possible": round(min(full, publish_rate) / street_real_rate, 1),
    }
    met = {k: figures[k] >= v for k, v in targets.items()}
    print(
        f"targets: generate+encode >= {targets['generate_encode_msg_per_s']:,.0f} msg/s: {'met' if met['generate_encode_msg_per_s'] else 'MISSED'}; "
        f"publish >= {targets['publish_msg_per_s']:,.0f} msg/s: {'met' if met['publish_msg_per_s'] else 'MISSED'}"
    )
    print(json.dumps({"benchmark": "simulate", "quick": args.quick, "figures": figures, "targets": {k: round(v) for k, v in targets.items()}, "met": met}))


if __name__ == "__main__":
    main()
