"""Soak: a street of ~100,000 devices for --minutes (default 30), with memory growth, lost alarms and late
escalations measured. Not part of the test suite; documented in docs/reliability.md.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--communities 17] [--probe-every-s 10] [--quick]

How this works: like benchmarks/e2e.py (real Mosquitto; the backend as `shouwang run --no-simulate`; the
street simulator at real rates; an SSE console client), without the edge agent and the blasts. Every
--probe-every-s a smoke alarm is published for a fresh smoke detector, rotating over buildings so no responder
is rate-limited. A responder-app listener records the ladder's notices. At the end:
- memory growth: the backend's RSS (median of the last minute) against its RSS after warm-up (median of the
  minute after --warmup-s), in %; target < 5 %. The default warm-up is a sixth of the run (5 minutes of 30):
  at street scale the backend's bounded parts (the time-series store's SQLite page caches, the rule state
  of every device that has reported) fill in ~4 minutes and are flat after (docs/reliability.md); the
  de-duplication window is full from the start. The RSS every 5 minutes, and the memory by holder (malloc,
  SQLite, Python; backend/memstats.py) at minute 1 and every 5 minutes, are printed, so the baseline can be
  judged;
- no alarm lost: every probe's alarm reached the console client and is on the board (API);
- no escalation late: the default fire policy pages the grid worker and the micro fire station at once and,
  unacknowledged, escalates after 60 s; each probe old enough must have its first `escalate` notice issued
  within 60 s + 5 s of the alarm being raised (the timer loop polls every 0.5 s).
Prints a table and one line of JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository's packages

from backend.sites import load_site_directory
from benchmarks.e2e import CLI, REPO, FeedClient, Proc, Sampler, mosquitto, now_ms, spawn, stop_all
from broker.kinds import DeviceKind, EventKind
from broker.notices import Notice
from broker.schemas import DeviceEvent, encode
from broker.topics import NOTIFY_PREFIX, event_topic

TARGETS = {"memory_growth_pct": 5.0, "lost": 0, "late_escalations": 0}
ESCALATE_AFTER_MS, LATE_SLACK_MS = 60_000, 5_000


class NoticeTap:
    """Every notice on the responder-app topics: alarm id -> [(reason, issued_ts_ms)]."""

    def __init__(self, host: str, port: int) -> None:
        self.by_alarm: dict[str, list[tuple[str, int]]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-responder-apps")
        self.client.on_message = self._on
        self.client.connect(host, port)
        self.client.subscribe(f"{NOTIFY_PREFIX}/responder/+", qos=1)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, m: Any) -> None:
        n = msgspec.json.decode(m.payload, type=Notice)
        with self.lock:
            self.by_alarm.setdefault(n.alarm_id, []).append((n.reason, n.issued_ts_ms))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class MemoryPoll:
    """The backend's memory by holder (/api/ingest/stats `loop.memory`, backend/memstats.py) every `every_s`."""

    def __init__(self, url: str, token: str, every_s: float = 60.0) -> None:
        self.url, self.token, self.every_s = url, token, every_s
        self.points: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            with contextlib.suppress(httpx.HTTPError):
                mem = http_get_json(self.url, "/api/ingest/stats", self.token).get("loop", {}).get("memory")
                if mem:
                    self.points.append((time.monotonic() - t0, mem))
            if self._stop.wait(self.every_s):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def at_minutes(self, minutes: list[int]) -> dict[str, dict[str, Any]]:
        """The poll nearest each minute mark."""
        out: dict[str, dict[str, Any]] = {}
        for m in minutes:
            if self.points:
                t, mem = min(self.points, key=lambda p: abs(p[0] - m * 60))
                if abs(t - m * 60) <= 45:
                    out[f"{m}min"] = mem
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="shouwang-soak-"))
    site_file = work / "street.yaml"
    subprocess.run([*CLI, "sites", "generate", "--communities", str(args.communities), "-o", str(site_file)], cwd=REPO, check=True, capture_output=True)
    sites = load_site_directory(site_file)
    # One smoke detector per building, in rotation: a responder gets at most one probe per rate-limit window.
    per_building: dict[str, list[Any]] = {}
    for d in sites.devices.values():
        if d.kind is DeviceKind.SMOKE and d.building:
            per_building.setdefault(d.building, []).append(d)
    buildings = sorted(per_building)
    password = "soak-pass"
    procs: list[Proc] = []
    sampler = Sampler(every_s=1.0)
    probes: dict[str, float] = {}  # device -> monotonic publish time
    with mosquitto(work, "central") as central:
        try:
            backend = spawn("backend", [*CLI, "run", "--no-simulate", "--port", "0", "--data-dir", str(work / "var"), "--sites", str(site_file)],
                            env={"SHOUWANG_BROKER__URL": central.url, "SHOUWANG_API__ADMIN_PASSWORD": password})
            procs.append(backend)
            url = backend.wait_line(lambda s: "console:" in s, 120).split("console:", 1)[1].strip().rstrip("/")
            sampler.watch("backend", backend.popen.pid)
            sim = spawn("street simulator", [*CLI, "simulate", "--sites", str(site_file), "--broker", central.url, "--speed", "1"],
                        env={"COLUMNS": "120", "TERM": "dumb"})
            procs.append(sim)
            sampler.watch("street simulator", sim.popen.pid)
            sampler.start()
            client = FeedClient(url, password).start()
            mempoll = MemoryPoll(url, client.token)
            tap = NoticeTap(central.host, central.port)
            probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-probe")
            probe.connect(central.host, central.port)
            probe.loop_start()
            t_start = time.monotonic()
            end = t_start + args.minutes * 60
            console.print(f"soak: {len(sites.devices):,} devices for {args.minutes} min; a smoke probe every {args.probe_every_s:.0f} s")
            k = 0
            while time.monotonic() < end:
                b = buildings[(k * 7919) % len(buildings)]
                d = per_building[b][k // len(buildings) % len(per_building[b])]
                ts = now_ms()
                payload = encode(DeviceEvent(msg_id=f"soak-{k}", source_ts_ms=ts, received_ts_ms=ts, event=EventKind.SMOKE_ALARM))
                probes[d.id] = time.monotonic()
                probe.publish(str(event_topic(d.gateway, d.id)), payload, qos=1)
                k += 1
                if k % 6 == 0:
                    console.print(f"  {(time.monotonic() - t_start) / 60:.1f} min: {k} probes, {len(client.first_alarm)} on the console")
                time.sleep(max(0.0, min(end, t_start + k * args.probe_every_s) - time.monotonic()))
            time.sleep(3)
            board: list[dict[str, Any]] = []
            with httpx.Client(base_url=url, timeout=30) as http:  # per building: the street's whole board exceeds one page
                auth = {"Authorization": f"Bearer {client.token}"}
                for b in sorted({sites.devices[d].building for d in probes if sites.devices[d].building}):
                    board += http.get("/api/alarms", params={"open": "true", "building": b, "limit": 1000}, headers=auth).json()["alarms"]
            loop = http_get_json(url, "/api/ingest/stats", client.token).get("loop", {})
            mempoll.close()
            client.close()
            tap.close()
            probe.loop_stop()
            probe.disconnect()
        finally:
            resources = sampler.close()
            stop_all(procs, work, console)
    by_device = {r["device_id"]: r for r in board if r.get("alarm_type") == "smoke"}
    lost_console = [d for d in probes if d not in client.first_alarm]
    lost_board = [d for d in probes if d not in by_device]
    latencies = [(client.first_alarm[d] - t) * 1000 for d, t in probes.items() if d in client.first_alarm]
    checked, late, lateness = 0, [], []
    now = now_ms()
    for dev in probes:
        r = by_device.get(dev)
        if r is None or now - r["raised_at_ms"] < ESCALATE_AFTER_MS + LATE_SLACK_MS:
            continue
        checked += 1
        esc = sorted(t for reason, t in tap.by_alarm.get(r["id"], []) if reason == "escalate")
        due = r["raised_at_ms"] + ESCALATE_AFTER_MS
        if not esc or esc[0] > due + LATE_SLACK_MS:
            late.append(dev)
        if esc:
            lateness.append(esc[0] - due)
    series = sampler.series.get("backend", [])
    t0 = series[0][0] if series else 0.0
    warm = [rss for t, rss in series if args.warmup_s <= t - t0 <= args.warmup_s + 60]
    last = [rss for t, rss in series if t >= series[-1][0] - 60] if series else []
    base, final = (statistics.median(warm) if warm else 0.0), (statistics.median(last) if last else 0.0)
    growth = 100 * (final - base) / base if base else None
    # The curve: median RSS around every 5-minute mark, to tell bounded caches filling (a curve that flattens) from a
    # leak (a straight line); and the growth over the second half of the run.
    curve: dict[str, float] = {}
    for minute in range(5, int(args.minutes) + 1, 5):
        around = [rss for t, rss in series if abs((t - t0) - minute * 60) <= 30]
        if around:
            curve[f"{minute}min"] = round(statistics.median(around) / 2**20, 1)
    half = [rss for t, rss in series if abs((t - t0) - args.minutes * 30) <= 30]
    growth_second_half = 100 * (final - statistics.median(half)) / statistics.median(half) if half and final else None
    out: dict[str, Any] = {
        "benchmark": "soak", "minutes": args.minutes, "devices": len(sites.devices), "probes": len(probes),
        "lost_on_console": len(lost_console), "lost_on_board": len(lost_board),
        "console_latency_ms": {"p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99), "max": round(max(latencies), 1) if latencies else None},
        "escalations_checked": checked, "late_escalations": len(late),
        "escalation_lateness_ms": {"p50": _pct(lateness, 0.5), "max": max(lateness) if lateness else None},
        "backend_rss_mib": {"after_warmup": round(base / 2**20, 1), "end": round(final / 2**20, 1)},
        "memory_growth_pct": round(growth, 2) if growth is not None else None,
        "memory_growth_second_half_pct": round(growth_second_half, 2) if growth_second_half is not None else None,
        "backend_rss_curve_mib": curve,
        "backend_memory_by_holder": mempoll.at_minutes([1, *range(5, int(args.minutes) + 1, 5)]),
        "backend_event_loop": loop,
        "processes": resources, "targets": TARGETS,
    }
    out["met"] = {"memory": growth is not None and growth < TARGETS["memory_growth_pct"], "no_loss": not lost_console and not lost_board,
                  "no_late_escalation": not late and checked > 0}
    t = Table(title=f"soak: {out['devices']:,} devices, {args.minutes} min")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_row("probes / lost on console / lost on board", f"{len(probes)} / {len(lost_console)} / {len(lost_board)}", "0 lost")
    lat = out["console_latency_ms"]
    t.add_row("console latency p50 / p99 / max (ms)", f"{lat['p50']} / {lat['p99']} / {lat['max']}", "")
    t.add_row("escalations checked / late (> 60 s + 5 s)", f"{checked} / {len(late)}", "0 late")
    t.add_row("escalation lateness p50 / max (ms)", f"{out['escalation_lateness_ms']['p50']} / {out['escalation_lateness_ms']['max']}", "")
    t.add_row("backend RSS after warm-up / end (MiB)", f"{out['backend_rss_mib']['after_warmup']} / {out['backend_rss_mib']['end']}", "")
    t.add_row("memory growth (%)", str(out["memory_growth_pct"]), "< 5")
    t.add_row("  over the second half of the run (%)", str(out["memory_growth_second_half_pct"]), "")
    t.add_row("  backend RSS every 5 min (MiB)", " ".join(f"{v:.0f}" for v in curve.values()), "")
    for mark, mem in out["backend_memory_by_holder"].items():
        t.add_row(f"  at {mark}: anon / malloc used, free / sqlite / other anon (MiB)",
                  f"{mem.get('anon_mib')} / {mem.get('malloc_in_use_mib')}, {mem.get('malloc_free_held_mib')} / {mem.get('sqlite_mib')} / "
                  f"{mem.get('anon_other_mib')}", "")
    t.add_row("backend event-loop lag p99 / max (ms); full gcs, worst (ms)",
              f"{loop.get('lag_p99_ms')} / {loop.get('lag_max_ms')}; {loop.get('full_gcs')}, {loop.get('full_gc_worst_ms')}", "")
    for name, r in resources.items():
        t.add_row(f"{name}: CPU % / peak RSS MiB", f"{r['cpu_pct']} / {r['peak_rss_mib']}", "")
    t.add_row("targets met", ", ".join(f"{k}={v}" for k, v in out["met"].items()), "")
    Console().print(t)
    return out


def http_get_json(url: str, path: str, token: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as http:
        body: dict[str, Any] = http.get(path, headers={"Authorization": f"Bearer {token}"}).json()
    return body


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description="Soak a street of ~100,000 devices (docs/reliability.md).")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--communities", type=int, default=17, help="17 communities: ~101,000 devices")
    ap.add_argument("--probe-every-s", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=None,
                    help="RSS baseline: the minute after this many seconds (default: a sixth of the run, >= 60 s; see the module doc)")
    ap.add_argument("--quick", action="store_true", help="3 minutes, 3 communities, baseline after 30 s")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.communities, args.warmup_s = 3.0, 3, 30.0
    if args.warmup_s is None:
        args.warmup_s = max(60.0, args.minutes * 60 / 6)
    print(json.dumps(run(args), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
