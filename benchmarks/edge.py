"""Benchmark the edge agent: adapters, end-to-end throughput, outbox drain after an outage, and the delay of a
smoke event published behind 100,000 queued telemetry messages.

Run: .venv/bin/python benchmarks/edge.py [--quick]
Real Mosquitto brokers (LAN and central) on free ports; the agent runs as its own process (`python -m edge`),
as in production. Each figure is compared with a baseline measured in the same run:
  adapters     Router.route over the fixture mix vs plain JSON decoding of the same payloads
  end-to-end   devices -> LAN broker -> agent -> central vs devices -> one broker -> subscriber directly
  drain        outbox drain rate after an outage vs the end-to-end baseline
  smoke delay  LAN publish -> arrival at the centre, behind a 100,000-message backlog vs with none
The last line is one JSON object with the figures and the targets they are held against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from broker.embedded import free_port  # noqa: E402
from broker.kinds import Priority  # noqa: E402
from broker.process import MosquittoProcess, open_config  # noqa: E402
from broker.schemas import Telemetry, encode  # noqa: E402
from broker.topics import TopicKind, telemetry_topic, uplink_filters  # noqa: E402
from edge.adapters import Context, Router, build_adapters  # noqa: E402
from edge.config import parse_config  # noqa: E402
from edge.outbox import Outbox, PendingRow  # noqa: E402

GW = "gw-bench"
SAMPLES = REPO.parent / "shared" / "device-samples" / "samples.jsonl"
TARGET_SMOKE_DELAY_MS = 20.0  # issue 19: max <= 20 ms behind 100,000 queued readings, in every run


def bench_adapters(n: int) -> tuple[float, float]:
    from tests.edge.sample_config import sample_config

    lines = [json.loads(x) for x in SAMPLES.read_text().splitlines() if x.strip()]
    items = [(d["topic"], d["payload"].encode(), bool(d["retained"])) for d in lines]
    router = Router(build_adapters(parse_config(sample_config())))
    ids = count()
    ctx = Context(1_700_000_000_000, lambda: f"b{next(ids)}")
    t = time.perf_counter()
    for i in range(n):
        topic, payload, retained = items[i % len(items)]
        router.route(topic, payload, retained, ctx)
    adapters = n / (time.perf_counter() - t)
    decoder = msgspec.json.Decoder()
    t = time.perf_counter()
    for i in range(n):
        _, payload, _ = items[i % len(items)]
        with contextlib.suppress(msgspec.DecodeError):
            decoder.decode(payload)
    baseline = n / (time.perf_counter() - t)
    return adapters, baseline


def plug_payload(i: int) -> bytes:
    return json.dumps({"current": 0.07, "energy": 14.24 + i / 1000, "linkquality": 96, "power": i % 2000, "state": "ON", "voltage": 230}).encode()


class Centre:
    """Counts what reaches the central broker, with arrival times (events only, when probing alarm delay)."""

    def __init__(self, broker: MosquittoProcess, kinds: tuple[TopicKind, ...] = (TopicKind.TELEMETRY, TopicKind.EVENT)) -> None:
        self.broker = broker
        self.kinds = kinds
        self.telemetry = 0
        self.events: dict[str, float] = {}
        self.last_at = 0.0
        self.connects = 0
        self.last_error = ""
        self.ready = asyncio.Event()

    async def run(self) -> None:
        f = uplink_filters(GW)
        while True:
            try:
                async with aiomqtt.Client(self.broker.host, self.broker.port, identifier="bench-centre", clean_session=False) as c:
                    await c.subscribe([(str(f[k]), 1) for k in self.kinds])
                    self.connects += 1
                    self.ready.set()
                    async for m in c.messages:
                        topic = str(m.topic)
                        if topic.endswith("/telemetry"):
                            self.telemetry += 1
                            self.last_at = time.perf_counter()
                        elif topic.endswith("/event"):
                            assert isinstance(m.payload, bytes)
                            event = msgspec.json.decode(m.payload)
                            if event["event"] == "smoke_alarm":
                                self.events[event["msg_id"]] = time.perf_counter()
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                self.ready.clear()
                await asyncio.sleep(0.05)


async def wait_for(cond: Any, limit_s: float) -> None:
    deadline = time.perf_counter() + limit_s
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.005)


async def publish(broker: MosquittoProcess, items: list[tuple[str, bytes]], ident: str) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier=ident, max_inflight_messages=1000) as client:
        client.pending_calls_threshold = 1 << 30
        for start in range(0, len(items), 500):
            async with asyncio.TaskGroup() as tg:
                for topic, payload in items[start : start + 500]:
                    tg.create_task(client.publish(topic, payload, qos=1))


@contextlib.asynccontextmanager
async def centre_of(broker: MosquittoProcess, kinds: tuple[TopicKind, ...] = (TopicKind.TELEMETRY, TopicKind.EVENT)) -> AsyncIterator[Centre]:
    centre = Centre(broker, kinds)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(centre.run(), name="bench-centre")
        await asyncio.wait_for(centre.ready.wait(), 10)
        try:
            yield centre
        finally:
            task.cancel()


def start_agent(work: Path, lan: MosquittoProcess, central: MosquittoProcess, devices: int) -> subprocess.Popen[bytes]:
    cfg = {
        "gateway": GW,
        "lan": {"host": lan.host, "port": lan.port},
        "uplink": {"host": central.host, "port": central.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2},
        "outbox": {"path": str(work / "outbox.sqlite3"), "max_telemetry_rows": 1_000_000},
        "status": {"every_s": 0.2},
        "adapters": [
            {"dialect": "zigbee2mqtt", "devices": {f"plug{i}": {"id": f"plug-{i}", "kind": "electrical"} for i in range(devices)}},
            {"dialect": "zigbee2mqtt", "prefix": "alarms", "devices": {"smoke": {"id": "smoke-1", "kind": "smoke"}}},
        ],
    }
    (work / "edge.yaml").write_text(yaml.safe_dump(cfg))
    log = (work / "agent.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "edge", "--config", str(work / "edge.yaml")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


async def end_to_end(work: Path, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with MosquittoProcess(work / "direct") as direct:
        async with centre_of(direct) as centre:
            items: list[tuple[str, bytes]] = [(str(telemetry_topic(GW, "plug-0")), plug_payload(i)) for i in range(n)]
            t = time.perf_counter()
            await publish(direct, items, "bench-direct")
            await wait_for(lambda: centre.telemetry >= n, 120)
            out["baseline_direct_msgs_per_s"] = n / (centre.last_at - t)

    # The central broker keeps its sessions across the outage below (persistence, as in production: broker/mosquitto.py).
    # Without it the counting subscriber's session died with the broker, and what the agent drained before that
    # subscriber was back went to nobody: runs timed out waiting for it (e.g. 19,935 of 20,000 counted). Until
    # open_config created the persistence folder, Mosquitto could not save into it, and that still happened.
    port = free_port()
    central_cfg = open_config(port, persistence_dir=work / "central-data")
    with MosquittoProcess(work / "lan") as lan, MosquittoProcess(work / "central", port=port, config=central_cfg) as central:
        agent = start_agent(work, lan, central, 100)
        try:
            async with centre_of(central) as centre:
                await wait_for(lambda: agent_ready(work), 30)  # the agent process starts and subscribes
                items = [(f"zigbee2mqtt/plug{i % 100}", plug_payload(i)) for i in range(n)]
                t = time.perf_counter()
                await publish(lan, items, "bench-devices")
                await wait_for(lambda: centre.telemetry >= n, 180)
                out["agent_msgs_per_s"] = n / (centre.last_at - t)

                # outage: the central broker goes away while devices keep publishing, then comes back
                central.stop()
                await asyncio.sleep(0.5)
                await publish(lan, items, "bench-devices")
                await wait_for(lambda: accepted(work) >= 2 * n, 180)
                before = centre.telemetry
                t = time.perf_counter()
                central.start()
                try:
                    await wait_for(lambda: centre.telemetry >= before + n, 180)
                except TimeoutError as exc:  # say what stopped, not only that it did
                    raise TimeoutError(f"the drain after the outage stopped (the subscriber connected {centre.connects} times, "
                                       f"last error {centre.last_error!r}): {drain_state(work, centre.telemetry - before, n)}") from exc
                out["drain_msgs_per_s"] = n / (centre.last_at - t)
        finally:
            agent.kill()
            agent.wait()
    return out


def drain_state(work: Path, counted: int, n: int) -> str:
    """What the counting subscriber saw, what the agent's status file says, and the agent's last log lines."""
    try:
        status = json.loads((work / "status.json").read_text())
        agent = json.dumps({"uplink": status.get("uplink"), "outbox": status.get("outbox")}, ensure_ascii=False)
    except (OSError, ValueError) as exc:
        agent = f"no status ({exc})"
    try:
        tail = (work / "agent.log").read_text(errors="replace").splitlines()[-15:]
    except OSError:
        tail = []
    return f"the subscriber counted {counted} of {n}; agent: {agent}; agent log: " + " | ".join(tail)


def agent_ready(work: Path) -> bool:
    try:
        status = json.loads((work / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(status["lan"]["connected"] and status["uplink"]["connected"])


def acked(work: Path) -> int:
    try:
        return int(json.loads((work / "status.json").read_text())["outbox"]["acked_total"])
    except (OSError, ValueError, KeyError):
        return 0


def accepted(work: Path) -> int:
    try:
        return int(json.loads((work / "status.json").read_text())["outbox"]["accepted_total"])
    except (OSError, ValueError, KeyError):
        return 0


async def smoke_delay(work: Path, backlog: int, probes: int) -> tuple[list[float], list[float]]:
    """Smoke events published on the LAN while the agent drains a backlog; and with no backlog."""

    async def measure(work: Path, prefill: int) -> list[float]:
        work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a benchmark's setup, nothing else runs
        if prefill:
            with Outbox(work / "outbox.sqlite3", max_telemetry_rows=10_000_000) as ob:
                rows = []
                for i in range(prefill):
                    msg = Telemetry(msg_id=f"bk-{i}", source_ts_ms=1 + i, received_ts_ms=1 + i, readings={"power_w": float(i % 3000)})
                    rows.append(PendingRow(Priority.TELEMETRY, telemetry_topic(GW, f"plug-{i % 100}"), encode(msg), msg.msg_id))
                for s in range(0, len(rows), 10_000):
                    ob.accept(rows[s : s + 10_000], 0)
        delays: list[float] = []
        with MosquittoProcess(work / "lan") as lan, MosquittoProcess(work / "central") as central:
            # the probe subscribes to events alone, as an alarm consumer at the centre would: the figure is the
            # edge's share of the delay, not a telemetry consumer's backlog
            async with centre_of(central, (TopicKind.EVENT,)) as centre:
                agent = start_agent(work, lan, central, 100)
                try:
                    await wait_for(lambda: agent_ready(work), 30)
                    if prefill:
                        await wait_for(lambda: acked(work) >= min(2_000, prefill // 10), 60)  # draining is under way
                    async with aiomqtt.Client(lan.host, lan.port, identifier="bench-smoke") as dev:
                        for k in range(probes):
                            before = set(centre.events)
                            await dev.publish("alarms/smoke", b'{"smoke": false}', qos=1)
                            await asyncio.sleep(0.05)  # the clear goes through first
                            before = set(centre.events)
                            t = time.perf_counter()
                            await dev.publish("alarms/smoke", b'{"smoke": true}', qos=1)
                            await wait_for(lambda before=before: len(centre.events) > len(before), 30)
                            new = set(centre.events) - before
                            delays.append((centre.events[new.pop()] - t) * 1000)
                            if prefill:
                                assert acked(work) < prefill, "the backlog drained before the probe: raise the backlog"
                            await asyncio.sleep(0.05 + 0.01 * k)
                    drained_at_probe_end = acked(work)
                    if prefill:
                        print(f"  (backlog still queued during the probes: {prefill - drained_at_probe_end} of {prefill})")
                finally:
                    agent.kill()
                    agent.wait()
        return delays

    behind = await measure(work / "backlog", backlog)
    alone = await measure(work / "alone", 0)
    return behind, alone


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small numbers")
    args = parser.parse_args()
    n_adapt = 20_000 if args.quick else 200_000
    n_e2e = 2_000 if args.quick else 20_000
    backlog = 20_000 if args.quick else 100_000
    probes = 3 if args.quick else 10

    adapters, decode_only = bench_adapters(n_adapt)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        e2e = await end_to_end(work / "e2e", n_e2e)
        behind, alone = await smoke_delay(work / "smoke", backlog, probes)

    rows = [
        ("adapters (fixture mix), msgs/s", adapters, decode_only, "JSON decode only"),
        ("LAN -> agent -> centre, msgs/s", e2e["agent_msgs_per_s"], e2e["baseline_direct_msgs_per_s"], "one broker, direct"),
        ("outbox drain after outage, msgs/s", e2e["drain_msgs_per_s"], e2e["baseline_direct_msgs_per_s"], "one broker, direct"),
        (f"smoke delay behind {backlog:,} queued, p50 ms", statistics.median(behind), statistics.median(alone), "no backlog"),
        (f"smoke delay behind {backlog:,} queued, max ms", max(behind), max(alone), "no backlog"),
    ]
    print(f"{'measure':<44}{'value':>12}{'baseline':>12}{'ratio':>8}  baseline is")
    for name, value, base, what in rows:
        print(f"{name:<44}{value:>12.1f}{base:>12.1f}{value / base:>8.2f}  {what}")
    ok = max(behind) <= TARGET_SMOKE_DELAY_MS
    print(f"smoke delay target: max <= {TARGET_SMOKE_DELAY_MS:g} ms behind {backlog:,} queued telemetry: {'MET' if ok else 'MISSED'}")
    print(
        json.dumps(
            {
                "benchmark": "edge",
                "quick": args.quick,
                "adapter_msgs_per_s": round(adapters),
                "adapter_vs_json_decode_ratio": round(adapters / decode_only, 3),
                "agent_msgs_per_s": round(e2e["agent_msgs_per_s"]),
                "direct_broker_msgs_per_s": round(e2e["baseline_direct_msgs_per_s"]),
                "agent_vs_direct_ratio": round(e2e["agent_msgs_per_s"] / e2e["baseline_direct_msgs_per_s"], 3),
                "drain_msgs_per_s": round(e2e["drain_msgs_per_s"]),
                "backlog": backlog,
                "smoke_delay_ms_p50": round(statistics.median(behind), 2),
                "smoke_delay_ms_p99": round(p(behind, 0.99), 2),
                "smoke_delay_ms_max": round(max(behind), 2),
                "smoke_delay_no_backlog_ms_p50": round(statistics.median(alone), 2),
                "smoke_delay_ratio": round(statistics.median(behind) / max(statistics.median(alone), 1e-3), 2),
                "targets": {"smoke_delay_ms_max": TARGET_SMOKE_DELAY_MS},
                "met": {"smoke_delay_ms_max": ok},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
