"""Test helpers for ingest: a recording AlertingFeed (the in-memory fake at the seam) and a paced publisher."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.ingest.handoff import Reading
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, Telemetry, Uplink, encode
from broker.topics import event_topic, telemetry_topic

# Recent (the store's retention drops old partitions at start): the last whole hour, an hour ago.
T0 = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000


@dataclass
class RecordingFeed:
    uplinks: list[tuple[Uplink, int]] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    uplink_times: list[float] = field(default_factory=list)

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        self.uplinks.append((uplink, received_ms))
        self.uplink_times.append(time.monotonic())

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)

    def event_ids(self) -> list[str]:
        return [u.message.msg_id for u, _ in self.uplinks if isinstance(u.message, DeviceEvent)]


def telemetry(i: int, devices: int = 50) -> tuple[str, bytes, list[tuple[str, str, int, float]]]:
    """Message i of the stream: topic, payload and the readings it must leave in the store."""
    device = f"dev{i % devices:03d}"
    ts = T0 + i * 10
    payload = encode(Telemetry(msg_id=f"t{i}", source_ts_ms=ts, received_ts_ms=ts, readings={"temperature_c": 20.0 + i % 7, "power_w": float(i)}))
    return str(telemetry_topic("gw1", device)), payload, [(device, "power_w", ts, float(i)), (device, "temperature_c", ts, 20.0 + i % 7)]


def smoke(i: int) -> tuple[str, bytes]:
    ts = T0 + i * 10
    return str(event_topic("gw1", "smoke01")), encode(DeviceEvent(msg_id=f"e{i}", source_ts_ms=ts, received_ts_ms=ts, event=EventKind.SMOKE_ALARM))


class Publisher:
    """Publishes the stream at QoS 1 from its own thread at `rate` msg/s; one smoke event every `event_every`."""

    def __init__(self, host: str, port: int, count: int, rate: float, event_every: int = 0, client_id: str = "test-publisher") -> None:
        self.count, self.rate, self.event_every = count, rate, event_every
        self.sent = 0
        self.events: list[str] = []
        self.expected: set[tuple[str, str, int, float]] = set()
        self.done = threading.Event()
        self._stop = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.connect(host, port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        infos = []
        for i in range(self.count):
            if self._stop.is_set():
                break
            topic, payload, readings = telemetry(i)
            infos.append(self._client.publish(topic, payload, qos=1))
            self.expected.update(readings)
            if self.event_every and i % self.event_every == 0:
                etopic, epayload = smoke(i)
                infos.append(self._client.publish(etopic, epayload, qos=1))
                self.events.append(f"e{i}")
            self.sent = i + 1
            lag = start + (i + 1) / self.rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        for info in infos:
            info.wait_for_publish(30)  # acknowledged by the broker: from here on it is the broker's and ingest's job
        self.done.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self._client.loop_stop()
        self._client.disconnect()
