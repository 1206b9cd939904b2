"""Memory that scales: the backend's memory per device, and the longest event-loop stall while it starts.

    .venv/bin/python benchmarks/memory.py [--sizes 1,15,75] [--settle-s 5]

How this works (issue 19, docs/scaling.md "Memory and start-up"):
1. Site directories are generated once into a temp folder, as `shouwang sites generate` writes them: a near-empty
   site (one community of one grid with one building: the fixed base), a street of 15 communities (~89 k devices)
   and a district of 75 (~447 k devices). Each size is a number of communities; 0 is the near-empty site.
2. For each, a real Mosquitto starts and the backend runs as `shouwang run --no-simulate` on it, with a temp data
   dir and no traffic (as benchmarks/soak.py and e2e.py start it). Once it prints its console URL, and
   --settle-s later (the start's last work: the heap settled, the first snapshot not yet due), this process reads
   /api/ingest/stats: the backend's own memory by holder (backend/memstats.py) and its event-loop watch
   (backend/loopwatch.py: the longest heartbeat lag since the loop started, which covers the whole start, and
   the stalls its watchdog logged; the start stall is the worse of the two). RSS is also read from outside (psutil, the process and its children).
3. Where the bytes go (--owners, on by default): in a fresh process, the street's site directory is loaded and the
   rule core built under tracemalloc, so the bytes per device each holds (and the directory's load peak) are named.
4. The fit: per-device cost = the slope of RSS over devices by least squares over every size run; the
   marginal cost between the two largest sizes is printed too (it holds no fixed part at all). The base is the
   near-empty site's RSS: what a backend costs with (almost) no devices, measured in the same run.
Prints a table, and as its last line one JSON object with the figures and the targets: per-device cost
<= 2,048 bytes above the base, the longest start stall <= 500 ms at the largest size.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository's packages

from backend.sites.generator import generate_site_document, write_site_document
from benchmarks.e2e import CLI, _procs, _rss, mosquitto, spawn, stop_all

TARGETS = {"per_device_bytes": 2048, "start_stall_ms": 500.0}
MIB = 2**20


def site_file(work: Path, communities: int) -> tuple[Path, int]:
    """Write the site of `communities` communities (0: the near-empty one); return its path and its device count."""
    path = work / f"site-{communities}.yaml"
    doc = generate_site_document(1, seed=7, grids=1, buildings_per_grid=1) if communities == 0 else generate_site_document(communities, seed=7)
    write_site_document(doc, path)
    devices = len(doc["devices"])
    return path, devices


def measure(work: Path, path: Path, devices: int, settle_s: float, console: Console) -> dict[str, Any]:
    password = "memory-pass"
    run_dir = work / f"run-{path.stem}"
    with mosquitto(run_dir, "central") as central:
        procs = []
        try:
            t0 = time.monotonic()
            backend = spawn(f"backend-{path.stem}", [*CLI, "run", "--no-simulate", "--port", "0", "--data-dir", str(run_dir / "var"),
                                                     "--sites", str(path)],
                            env={"SHOUWANG_BROKER__URL": central.url, "SHOUWANG_API__ADMIN_PASSWORD": password})
            procs.append(backend)
            url = backend.wait_line(lambda s: "console:" in s, 900).split("console:", 1)[1].strip().rstrip("/")
            ready_s = time.monotonic() - t0
            time.sleep(settle_s)
            with httpx.Client(base_url=url, timeout=60) as http:
                token = http.post("/api/login", json={"username": "admin", "password": password}).json()["token"]
                stats = http.get("/api/ingest/stats", headers={"Authorization": f"Bearer {token}"}).json()
            rss = _rss(_procs(backend.popen.pid))
            stalls = [line for line in backend.lines if "event loop stalled" in line]
        finally:
            stop_all(procs, run_dir, console)
    loop = stats.get("loop", {})
    mem = loop.get("memory", {})
    out = {
        "devices": devices, "ready_s": round(ready_s, 1), "rss_mib": round(rss / MIB, 1),
        # The worse of the heartbeat's longest lag and the watchdog's longest logged stall (which counts the 50 ms beat too)
        "start_stall_ms": max(loop.get("lag_max_ms") or 0.0, loop.get("worst_stall_ms") or 0.0), "lag_max_ms": loop.get("lag_max_ms"),
        "watchdog_stalls": loop.get("stalls"), "watchdog_worst_ms": loop.get("worst_stall_ms"),
        "memory": mem, "stall_logs": [s[:200] for s in stalls],
    }
    console.print(f"  {path.stem}: {devices:,} devices, RSS {out['rss_mib']} MiB, ready in {ready_s:.1f} s, "
                  f"longest loop stall {out['start_stall_ms']} ms")
    return out


def owners(path: Path) -> dict[str, float]:
    """Bytes per device held by the site directory and by the rule core (its numpy columns apart), measured with
    tracemalloc in this process (run it in a fresh one: `--role owners`)."""
    from alerting.engine import Engine
    from backend.alarms.adapter import SiteAdapter
    from backend.alarms.rules import load_rules
    from backend.sites import load_site_directory

    rules = load_rules()
    tracemalloc.start()
    sites = load_site_directory(path)
    gc.collect()
    directory, directory_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    engine = Engine(rules, SiteAdapter(sites), 1_700_000_000_000)
    gc.collect()
    snap = tracemalloc.take_snapshot()
    core = tracemalloc.get_traced_memory()[0] - directory
    columns = sum(st.size for st in snap.filter_traces([tracemalloc.Filter(True, "*numpy*")]).statistics("filename"))
    tracemalloc.stop()
    n = len(sites.devices)
    assert engine.devices
    return {"devices": n, "site_directory": round(directory / n), "site_directory_load_peak": round(directory_peak / n),
            "rule_core": round(core / n), "rule_core_columns": round(columns / n), "rule_core_objects": round((core - columns) / n)}


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares RSS (bytes) = base + slope * devices; returns (base bytes, bytes per device)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if len(points) < 2:
        return (ys[0] if ys else 0.0), 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def run(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="shouwang-memory-"))
    sizes = [int(x) for x in args.sizes.split(",")]
    console.print(f"memory: generating sites of {sizes} communities into {work}")
    files = {n: site_file(work, n) for n in sizes}
    runs = {n: measure(work, path, devices, args.settle_s, console) for n, (path, devices) in files.items()}
    by_owner: dict[str, float] = {}
    if args.owners:
        street = files.get(15) or files[max(files)]
        done = subprocess.run([sys.executable, __file__, "--role", "owners", "--site", str(street[0])], capture_output=True, text=True, check=True)
        by_owner = json.loads(done.stdout.strip().splitlines()[-1])
        console.print(f"  bytes per device by owner (tracemalloc, {by_owner['devices']:,} devices): " +
                      ", ".join(f"{k} {v:,}" for k, v in by_owner.items() if k != "devices"))
    points = [(r["devices"], r["rss_mib"] * MIB) for r in runs.values()]
    _base_fit, slope = fit(points)
    by_size = sorted(runs.values(), key=lambda r: r["devices"])
    big, second = by_size[-1], by_size[-2] if len(by_size) > 1 else by_size[-1]
    marginal = ((big["rss_mib"] - second["rss_mib"]) * MIB / (big["devices"] - second["devices"])) if big is not second else 0.0
    base = by_size[0]
    out: dict[str, Any] = {
        "benchmark": "memory",
        "base_devices": base["devices"], "base_rss_mib": base["rss_mib"],
        "per_device_bytes": round(slope), "per_device_bytes_marginal": round(marginal),
        "start_stall_ms": big["start_stall_ms"], "start_stall_devices": big["devices"],
        "by_owner_bytes_per_device": by_owner,
        "runs": {str(n): {k: v for k, v in r.items() if k != "stall_logs"} for n, r in runs.items()},
        "targets": TARGETS,
    }
    out["met"] = {"per_device_bytes": out["per_device_bytes"] <= TARGETS["per_device_bytes"],
                  "start_stall_ms": (big["start_stall_ms"] or 0.0) <= TARGETS["start_stall_ms"]}
    t = Table(title="backend memory and start, no traffic (this machine: 2 cores, shared; noisy)")
    for col in ("site", "devices", "RSS MiB", "above base, B/device", "anon / malloc used / free / py other MiB", "ready s", "longest stall ms"):
        t.add_column(col)
    for n, r in sorted(runs.items(), key=lambda kv: kv[1]["devices"]):
        m = r["memory"]
        above = (r["rss_mib"] - base["rss_mib"]) * MIB / (r["devices"] - base["devices"]) if r is not base else None
        t.add_row(f"{n} communities" if n else "near-empty", f"{r['devices']:,}", f"{r['rss_mib']}", f"{above:,.0f}" if above is not None else "(base)",
                  f"{m.get('anon_mib')} / {m.get('malloc_in_use_mib')} / {m.get('malloc_free_held_mib')} / {m.get('anon_other_mib')}",
                  f"{r['ready_s']}", f"{r['start_stall_ms']}")
    t.add_row("fit", "", f"base {base['rss_mib']}", f"{out['per_device_bytes']:,} (slope); {out['per_device_bytes_marginal']:,} (marginal)",
              "", "", f"target {TARGETS['start_stall_ms']:.0f}")
    Console(stderr=True).print(t)
    for r in runs.values():
        for s in r["stall_logs"]:
            console.print(f"  [stall] {s}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Backend memory per device and start-up stalls (docs/scaling.md).")
    ap.add_argument("--sizes", default="0,15,75", help="communities per run, comma-separated; 0 is the near-empty base site")
    ap.add_argument("--settle-s", type=float, default=5.0, help="wait after the backend is ready before reading its memory")
    ap.add_argument("--no-owners", dest="owners", action="store_false", help="skip the bytes-per-device-by-owner breakdown")
    ap.add_argument("--role", choices=["run", "owners"], default="run", help=argparse.SUPPRESS)
    ap.add_argument("--site", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "owners":
        print(json.dumps(owners(args.site)), flush=True)
        return
    print(json.dumps(run(args), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
