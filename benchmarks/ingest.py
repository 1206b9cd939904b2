"""How fast the full ingest path takes a stream, against a bare paho-mqtt subscriber on the same Mosquitto.

Method: one real Mosquitto. For each consumer, a persistent session is created (subscribe, disconnect),
then a publisher in a separate process publishes the stream at QoS 1 (N telemetry messages from N distinct
devices behind 100 gateways, two readings each, plus one smoke alarm every 1,000 messages) while the
consumer is away, so Mosquitto holds it; then the consumer connects and drains it. The publisher never
competes with the consumer for a core, and both consumers face exactly the same stream.
  bare      a paho-mqtt subscriber (its own network loop) counting messages: the ceiling
  ingest    IngestService into the embedded SQLite store: decode, dedupe, journal, manual PUBACK, store
            (raw + 1 min + 1 h rollups + latest), hand-off to a counting feed; timed until every reading is stored
Also: a day of one device (a reading every 10 s) queried as the console does (1-minute rollups) and as raw
points bucketed by 10 s, on the store the run filled; and two life-safety figures while the backlog drains:
  intake -> alerting    every smoke alarm (the ones in the stream and the live ones): from the MQTT reader
                        handing it to the pipeline to the alerting feed's on_uplink (LaneStats), p50 / p99 / max.
                        Ingest's events connection has its own session, so the stream's alarms all arrive at
                        the start of the drain: most samples measure ingest's first turns
  publish -> alerting   smoke alarms published by another process *while* the readings drain (issue 19: a smoke
                        alarm during a gateway's reconnect flood), from its publish (the packet written on the
                        socket) to on_uplink: this one also holds the broker's queue and the MQTT intake
intake -> console is not observable here (no console); benchmarks/e2e.py measures it.
The process runs with the garbage-collector policy every long-running entry point sets (`shouwang ingest`, `backend`,
`run`: shouwang/commands/common.py): the `runtime.gc_thresholds` from the start, for both consumers alike, and the
heap frozen (`runtime.gc_freeze_after_start`) just before ingest's timed start (the entry points freeze right after
the start: that one-off collection, 20 ms measured here, can land on the stream's first smoke alarms). With Python's
own thresholds, collections took ~1 s of a 30,000-message drain here, up to 200 ms each.
Targets (issue 19): ingest >= 0.8 x bare, >= 10,000 readings/s; a day query < 50 ms; smoke max <= 20 ms.

Run: .venv/bin/python benchmarks/ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.ingest.handoff import Reading
from backend.ingest.service import IngestService
from backend.loopwatch import set_switch_interval, settle_heap
from backend.settings import load_settings
from backend.sites.model import SiteDirectory
from backend.store.timeseries import SqliteTimeSeries, TagDirectory
from broker.kinds import EventKind
from broker.process import MosquittoProcess
from broker.schemas import DeviceEvent, Telemetry, Uplink, encode
from broker.topics import event_topic, gateway_publish_filters, telemetry_topic

REPO = Path(__file__).resolve().parent.parent
RATIO_TARGET = 0.8
READINGS_TARGET = 10_000
DAY_QUERY_TARGET_MS = 50.0
SMOKE_MAX_TARGET_MS = 20.0
GATEWAYS = 100
EVENT_EVERY = 1000
LIVE_SMOKE = 20  # smoke alarms published while the backlog drains


def publish(host: str, port: int, count: int, devices: int) -> None:
    """Child process: publish the stream at QoS 1 and wait until the broker has acknowledged all of it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    now = int(time.time() * 1000) - 60_000
    last = None
    for i in range(count):
        dev = i % devices
        gw, device = f"gw{dev % GATEWAYS:03d}", f"d{dev:06d}"
        ts = now + i // devices
        payload = encode(Telemetry(msg_id=f"m{i}", source_ts_ms=ts, received_ts_ms=ts, readings={"temperature_c": 20.0 + i % 13, "power_w": float(i % 3000)}))
        last = client.publish(str(telemetry_topic(gw, device)), payload, qos=1)
        if i % EVENT_EVERY == 0:
            ev = encode(DeviceEvent(msg_id=f"e{i}", source_ts_ms=ts, received_ts_ms=ts, event=EventKind.SMOKE_ALARM))
            last = client.publish(str(event_topic(gw, device)), ev, qos=1)
        while len(client._out_messages) > 5000:  # keep paho's own queue short
            time.sleep(0.001)
    assert last is not None
    last.wait_for_publish(120)
    while client._out_messages:
        time.sleep(0.01)
    client.loop_stop()
    client.disconnect()


def publish_live(host: str, port: int, spacing_ms: int) -> None:
    """Child process: wait for "go" on stdin, then publish LIVE_SMOKE smoke alarms `spacing_ms` apart, each with its
    publish time in its msg_id (wall clock, ns), QoS 1, on its own gateway. Each is written on the socket as one MQTT
    PUBLISH right after its time is taken, as a device's client sends it (e2e's `RawPublisher`): a paho client hands
    each publish to its network thread, and that thread's wake-up on two busy cores was the publisher's own delay,
    counted as the centre's."""
    sys.path.insert(0, str(REPO))  # run as a script: the repository's packages
    from benchmarks.e2e import RawPublisher

    publisher = RawPublisher(host, port, client_id="bench-live-smoke")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    for k in range(LIVE_SMOKE):
        now_ns = time.time_ns()
        ev = encode(DeviceEvent(msg_id=f"live{k}-{now_ns}", source_ts_ms=now_ns // 1_000_000, received_ts_ms=now_ns // 1_000_000,
                                event=EventKind.SMOKE_ALARM))
        publisher.send(publisher.packets([(str(event_topic("gw-live", f"smoke{k:02d}")), ev)]))
        time.sleep(spacing_ms / 1000)
    deadline = time.monotonic() + 30
    while publisher.acked < LIVE_SMOKE and time.monotonic() < deadline:
        time.sleep(0.01)
    if publisher.acked < LIVE_SMOKE:
        raise SystemExit(f"the broker acknowledged {publisher.acked} of {LIVE_SMOKE} live smoke alarms")


def fill(mosq: MosquittoProcess, count: int, devices: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--publish", f"{mosq.host}:{mosq.port}", str(count), str(devices)], check=True, cwd=REPO)
    return time.perf_counter() - start


def bare_subscriber(mosq: MosquittoProcess, count: int, devices: int) -> float:
    """The ceiling: paho with its own loop, counting. Returns messages per second while draining."""
    total = count + (count + EVENT_EVERY - 1) // EVENT_EVERY
    received = 0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= total:
            done.set()

    def session() -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=False)
        c.on_message = on_message
        c.connect(mosq.host, mosq.port)
        for f in gateway_publish_filters():
            c.subscribe(str(f), qos=1)
        return c

    c = session()
    c.loop(1.0)
    c.disconnect()
    fill(mosq, count, devices)
    start = time.perf_counter()
    c = session()
    c.loop_start()
    done.wait(600)
    elapsed = time.perf_counter() - start
    c.loop_stop()
    c.disconnect()
    return total / elapsed


class CountingFeed:
    def __init__(self) -> None:
        self.events = 0
        self.readings = 0
        self.live_ms: list[float] = []  # publish -> on_uplink of the live smoke alarms
        self.all_live = asyncio.Event()

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        self.events += 1
        msg_id = str(getattr(uplink.message, "msg_id", ""))
        if msg_id.startswith("live"):
            self.live_ms.append((time.time_ns() - int(msg_id.split("-")[1])) / 1e6)
            if len(self.live_ms) >= LIVE_SMOKE:
                self.all_live.set()

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        self.readings += len(readings)


async def ingest_path(mosq: MosquittoProcess, data_dir: Path, count: int, devices: int) -> tuple[float, dict[str, object], list[float], int]:
    # Synthetic devices outside any site directory: the known-device check is off, as in a raw throughput test.
    settings = load_settings(storage={"data_dir": data_dir}, ingest={"known_devices_only": False})
    sites = SiteDirectory({}, {}, {}, {}, {}, {}, {}, {}, {})
    total = count + (count + EVENT_EVERY - 1) // EVENT_EVERY
    async with IngestService(settings, sites, mosq.host, mosq.port, client_id="bench-ingest"):
        pass  # the session exists now
    await asyncio.to_thread(fill, mosq, count, devices)
    feed = CountingFeed()
    # The live publisher: started now (its interpreter takes a while), told to go when the drain is under way.
    spacing_ms = max(5, count // 2000)  # 20 alarms over about the first third of the drain
    live = await asyncio.create_subprocess_exec(sys.executable, __file__, "--publish-live", f"{mosq.host}:{mosq.port}", str(spacing_ms),
                                                cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert live.stdout is not None
    await live.stdout.readline()
    # What the entry points do once a process has started (shouwang/commands/common.py `settle`), done before the timed
    # start: right after it, its collection (20 ms measured here) can fall between smoke alarms' intake and their hand-over.
    settle_heap(freeze=settings.runtime.gc_freeze_after_start, thresholds=settings.runtime.gc_thresholds)
    start = time.perf_counter()
    async with IngestService(settings, sites, mosq.host, mosq.port, feed=feed, client_id="bench-ingest") as svc:
        while feed.readings < 2 * count or feed.events < total - count:
            if live.stdin is not None and feed.readings > 0:
                live.stdin.write(b"go\n")
                await live.stdin.drain()
                live.stdin.close()
                live.stdin = None
            await asyncio.sleep(0.005)
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"ingest did not finish: {svc.stats()}")
        elapsed = time.perf_counter() - start
        during = len(feed.live_ms)
        stats = svc.stats()
        await live.wait()
        await asyncio.wait_for(feed.all_live.wait(), 120)
        stats = svc.stats()
    return total / elapsed, stats, feed.live_ms, during


def day_query(data_dir: Path) -> tuple[float, float, int]:
    store = SqliteTimeSeries(data_dir / "timeseries.sqlite", TagDirectory(None))
    end = (int(time.time() * 1000) // 60_000) * 60_000
    start = end - 86_400_000
    batch = [Reading("day-device", "gw000", "temperature_c", 20.0 + (i % 50) / 10, start + i * 10_000, start) for i in range(8640)]
    for k in range(0, len(batch), 2000):
        store.write(batch[k:k + 2000])
    rollup_ms, raw_ms = [], []
    points = 0
    for _ in range(7):
        t = time.perf_counter()
        points = len(store.series("day-device", "temperature_c", start, end).points)
        rollup_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        store.series("day-device", "temperature_c", start, end, every_ms=10_000)
        raw_ms.append((time.perf_counter() - t) * 1000)
    store.close()
    return statistics.median(rollup_ms), statistics.median(raw_ms), points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 messages from 10,000 devices: a smoke run")
    parser.add_argument("--publish", nargs=3, metavar=("HOST:PORT", "COUNT", "DEVICES"), help=argparse.SUPPRESS)
    parser.add_argument("--publish-live", nargs=2, metavar=("HOST:PORT", "SPACING_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        host, port = args.publish[0].rsplit(":", 1)
        publish(host, int(port), int(args.publish[1]), int(args.publish[2]))
        return
    if args.publish_live:
        host, port = args.publish_live[0].rsplit(":", 1)
        publish_live(host, int(port), int(args.publish_live[1]))
        return
    count = devices = 10_000 if args.quick else 100_000
    # the collector's thresholds and the GIL switch interval of every long-running entry point, from the start
    # (shouwang/commands/common.py), for both consumers alike
    runtime = load_settings().runtime
    settle_heap(freeze=False, thresholds=runtime.gc_thresholds)
    set_switch_interval(runtime.switch_interval_ms)
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mosquitto") as mosq:
        bare = bare_subscriber(mosq, count, devices)
        ingest, stats, live_ms, during = asyncio.run(ingest_path(mosq, Path(tmp) / "var", count, devices))
        rollup_ms, raw_ms, points = day_query(Path(tmp) / "var")
    lanes = stats["lanes"]
    assert isinstance(lanes, dict)
    live = sorted(live_ms)
    ratio = ingest / bare
    readings_per_s = ingest * 2 * count / (count + count // EVENT_EVERY)
    print(f"ingest benchmark: {count:,} telemetry messages (2 readings each) from {devices:,} devices, QoS 1, one real Mosquitto\n")
    print(f"{'consumer':<44}{'msg/s':>12}{'readings/s':>14}")
    print(f"{'bare paho subscriber (ceiling)':<44}{bare:>12,.0f}{'-':>14}")
    print(f"{'full ingest path into SQLite':<44}{ingest:>12,.0f}{readings_per_s:>14,.0f}")
    print(f"{'ratio ingest / bare':<44}{ratio:>12.2f}   target >= {RATIO_TARGET}")
    print(f"\nday of one device (8,640 readings): {points} 1-minute points in {rollup_ms:.2f} ms; raw, 10 s buckets, in {raw_ms:.2f} ms"
          f" (target for the console's query: < {DAY_QUERY_TARGET_MS:.0f} ms)")
    print(f"smoke alarms while draining, intake -> alerting: p50 {lanes['life_safety_p50_ms']} / p99 {lanes.get('life_safety_p99_ms')}"
          f" / max {lanes['life_safety_max_ms']} ms (target max <= {SMOKE_MAX_TARGET_MS:g} ms)")
    live_p = {"p50": pct(live, 0.5), "p99": pct(live, 0.99), "max": live[-1] if live else None}
    print(f"live smoke alarms published while draining ({len(live)}, {during} arrived before the drain ended),"
          f" publish -> alerting: p50 {live_p['p50']} / p99 {live_p['p99']} / max {live_p['max']} ms")
    print(f"store batches {lanes['store_batches']}, replayed from journal {lanes['replayed_from_journal']}, duplicates {stats['duplicates']}")
    smoke_max = lanes["life_safety_max_ms"]
    met = {
        "ratio": ratio >= RATIO_TARGET, "readings_per_s": readings_per_s >= READINGS_TARGET, "day_query_ms": rollup_ms < DAY_QUERY_TARGET_MS,
        "life_safety_max_ms": smoke_max is not None and smoke_max <= SMOKE_MAX_TARGET_MS,
        "live_smoke_max_ms": bool(live) and live[-1] <= SMOKE_MAX_TARGET_MS,
    }  # raw buckets: shown, not a target
    print(json.dumps({
        "benchmark": "ingest", "quick": args.quick,
        "figures": {"bare_msg_per_s": round(bare), "ingest_msg_per_s": round(ingest), "ingest_readings_per_s": round(readings_per_s), "ratio": round(ratio, 3),
                    "day_query_rollup_ms": round(rollup_ms, 2), "day_query_raw_ms": round(raw_ms, 2),
                    "life_safety_intake_to_alerting_ms": {"p50": lanes["life_safety_p50_ms"], "p99": lanes.get("life_safety_p99_ms"), "max": smoke_max},
                    "live_smoke_publish_to_alerting_ms": {k: round(v, 2) if v is not None else None for k, v in live_p.items()},
                    "live_smoke_count": len(live), "live_smoke_during_drain": during,
                    "life_safety_to_console_ms": None},  # not observable here: benchmarks/e2e.py
        "targets": {"ratio": RATIO_TARGET, "readings_per_s": READINGS_TARGET, "day_query_ms": DAY_QUERY_TARGET_MS,
                    "life_safety_max_ms": SMOKE_MAX_TARGET_MS, "live_smoke_max_ms": SMOKE_MAX_TARGET_MS},
        "met": met, "all_met": all(met.values()),
    }))


def pct(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else None


if __name__ == "__main__":
    main()
