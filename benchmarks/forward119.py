"""转警 119: how long from a person's verification to the receiving system's receipt, on the real path.

N fires, one after another: a smoke alarm raised through the alarm service (its ladder started by the bridge), the
duty officer's 核实 through the escalation service (the ladder's stored step, then the centre's stream), the
forwarder (its store, the HTTP POST, the receipt stored), against a local receiving system on a loopback port
(tests/forward/receiver.py, our documented webhook). Measured: from the `verify` call to the forward's receipt
bulletin on the stream (what the console's feed shows). Then a storm: `--storm` fires verified at once.
Baseline in the same run: the bare HTTP round trip (httpx, the same body) to the same receiver. Target: p99 within
GB 50440's 3 s; aim: milliseconds plus the receiver's answer time.

    .venv/bin/python benchmarks/forward119.py [--fires 100] [--storm 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the local receiver and the rig are the tests' (tests/forward)

from backend.sites.loader import load_site_directory  # noqa: E402
from backend.stream import Bulletin, Event  # noqa: E402
from tests.forward.receiver import Receiver  # noqa: E402
from tests.forward.rig import Rig, forward_settings, rig  # noqa: E402

SITE = REPO / "sites" / "sample-community.yaml"
TARGET_MS = 3000.0


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


async def receipts(q: asyncio.Queue[Event], n: int) -> None:
    seen = 0
    while seen < n:
        e = await q.get()
        if isinstance(e, Bulletin) and e.kind == "forward" and e.data.get("status") == "receipted":
            seen += 1


async def one(r: Rig, rx: Receiver, i: int, ladder: list[float], arrived: list[float]) -> float:
    alarm_id = await r.raise_fire(subject=f"device:bench-smoke-{i}")
    n = len(rx.requests)
    with r.stream.tap() as q:
        t = time.perf_counter()
        await r.verify(alarm_id, "duty1")  # the ladder's step stored and published (the forward starts as it is published)
        ladder.append((time.perf_counter() - t) * 1000)
        await asyncio.wait_for(receipts(q, 1), 10)
        arrived.append((rx.requests[n].at - t) * 1000)
        return (time.perf_counter() - t) * 1000


async def storm(r: Rig, n: int, first: int) -> float:
    ids = [await r.raise_fire(subject=f"device:bench-storm-{first + i}") for i in range(n)]
    with r.stream.tap() as q:
        t = time.perf_counter()
        await asyncio.gather(*(r.verify(a, "duty1") for a in ids))
        await asyncio.wait_for(receipts(q, n), 30)
        return (time.perf_counter() - t) * 1000


async def bare(url: str, body: bytes, n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=3) as http:
        for i in range(n):
            t = time.perf_counter()
            resp = await http.post(url, content=body, headers={"Content-Type": "application/json", "Idempotency-Key": f"bare-{i}"})
            resp.raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
    return out


async def run(fires: int, storm_n: int) -> dict[str, object]:
    site = load_site_directory(SITE)
    with tempfile.TemporaryDirectory() as d:
        async with Receiver("rx") as rx, rig(Path(d), site, forward_settings(primary_url=rx.url)) as r:
            ladder: list[float] = []
            arrived: list[float] = []
            await one(r, rx, -1, [], [])  # warm: the first connection, the first statements
            lat = [await one(r, rx, i, ladder, arrived) for i in range(fires)]
            body = rx.requests[-1].raw
            base = await bare(rx.url, body, fires)
            storm_ms = await storm(r, storm_n, fires) if storm_n else 0.0
    rows = [("verify → forward at the receiver", arrived), ("verify → receipt recorded, on the feed", lat),
            ("  of which the verify call (ladder)", ladder), ("bare HTTP round trip (baseline)", base)]
    print(f"{'what':40} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for what, xs in rows:
        print(f"{what:40} {len(xs):5d} {statistics.median(xs):8.1f} {pct(xs, 99):8.1f} {max(xs):8.1f}")
    if storm_n:
        print(f"{'storm: ' + str(storm_n) + ' fires verified at once':40} {storm_n:5d} {'':>8} {'':>8} {storm_ms:8.1f}  (last receipt)")
    p99 = pct(lat, 99)
    return {"fires": fires,
            "verify_to_forward_ms": {"p50": round(statistics.median(arrived), 1), "p99": round(pct(arrived, 99), 1), "max": round(max(arrived), 1)},
            "verify_to_receipt_ms": {"p50": round(statistics.median(lat), 1), "p99": round(p99, 1), "max": round(max(lat), 1)},
            "baseline_http_ms": {"p50": round(statistics.median(base), 1), "p99": round(pct(base, 99), 1), "max": round(max(base), 1)},
            "verify_call_ms": {"p50": round(statistics.median(ladder), 1), "p99": round(pct(ladder, 99), 1)},
            "storm": {"fires": storm_n, "last_receipt_ms": round(storm_ms, 1)},
            "overhead_p50_ms": round(statistics.median(lat) - statistics.median(base), 1),
            "targets": {"p99_ms_max": TARGET_MS}, "ok": p99 <= TARGET_MS and (not storm_n or storm_ms <= TARGET_MS)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fires", type=int, default=100)
    ap.add_argument("--storm", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    result = asyncio.run(run(10 if a.quick else a.fires, 5 if a.quick else a.storm))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
