"""The native encoder: simulation output as messages of our wire contract, published as each device's gateway.

How this works: every message is a broker.schemas Struct (so the contract's own validation runs on every
one) on a topic from the broker.topics builders, cached per device. Message ids are
`{device or gateway}:{run tag}:{n}`, unique within a run and across runs that use different run tags.
QoS and retain follow the contract's intent: events and availability at QoS 1 (availability and gateway
status retained), telemetry at QoS 0, patrol heartbeats at QoS 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from backend.sites.model import Device
from broker.kinds import EventKind, GatewayState
from broker.schemas import DeviceAvailability, DeviceEvent, GatewayStatus, PatrolHeartbeat, Telemetry, encode
from broker.topics import availability_topic, event_topic, gateway_status_topic, patrol_topic, telemetry_topic
from simulators.records import AvailabilityChange, PatrolDue, ReadingBatch, SimEvent, Step

__all__ = ["NativeEncoder", "Outgoing", "gateway_status_message", "native_event"]

SOFTWARE = "shouwang-sim/1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT publication, and which gateway's connection sends it. `label` groups it for statistics."""

    gateway: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    label: str


def _ms(t: float) -> int:
    return round(t * 1000.0)


def native_event(
    msg_id: str,
    t: float,
    event: EventKind,
    *,
    drill: bool = False,
    value: float | None = None,
    detail: str | None = None,
    needs_callback: bool = False,
) -> DeviceEvent:
    ms = _ms(t)
    return DeviceEvent(msg_id=msg_id, source_ts_ms=ms, received_ts_ms=ms, drill=drill, event=event, value=value, detail=detail, needs_callback=needs_callback)


def gateway_status_message(msg_id: str, t: float, state: GatewayState, *, drill: bool = False) -> GatewayStatus:
    return GatewayStatus(msg_id=msg_id, source_ts_ms=_ms(t), received_ts_ms=_ms(t), drill=drill, state=state, software=SOFTWARE)


class NativeEncoder:
    """Turns fleet steps into Outgoing messages of the native contract."""

    def __init__(self, devices: Sequence[Device], run_tag: str, *, drill_links: bool = False) -> None:
        self.devices = devices
        self.run_tag = run_tag
        self.drill_links = drill_links  # a drill's gateways: their status (and Last Will, an uplink cut) carries the drill mark
        self._n = itertools.count(1)
        self._topics: dict[tuple[str, str], str] = {}

    def msg_id(self, owner: str) -> str:
        return f"{owner}:{self.run_tag}:{next(self._n)}"

    def _topic(self, kind: str, device: Device) -> str:
        key = (kind, device.id)
        topic = self._topics.get(key)
        if topic is None:
            build = {"telemetry": telemetry_topic, "event": event_topic, "availability": availability_topic}[kind]
            topic = self._topics[key] = str(build(device.gateway, device.id))
        return topic

    def step(self, step: Step, by_device: dict[str, Device]) -> Iterator[Outgoing]:
        """Events first (life-safety traffic is never queued behind readings), then availability, readings, patrols."""
        for ev in step.events:
            yield self.event(ev, by_device[ev.device])
        for ch in step.availability:
            yield self.availability(ch, by_device[ch.device])
        for batch in step.readings:
            yield from self.readings(batch)
        for p in step.patrols:
            yield self.patrol(p)

    def readings(self, batch: ReadingBatch, rows: Sequence[int] | None = None) -> Iterator[Outgoing]:
        names = list(batch.readings)
        columns = [batch.readings[n].tolist() for n in names]
        times = batch.t.tolist()
        drills = batch.drill.tolist()
        label = batch.kind.value
        for row in range(len(batch)) if rows is None else rows:
            device = self.devices[int(batch.devices[row])]
            readings = {n: c[row] for n, c in zip(names, columns, strict=True) if not math.isnan(c[row])}
            if not readings:
                continue
            ms = _ms(times[row])
            msg = Telemetry(msg_id=self.msg_id(device.id), source_ts_ms=ms, received_ts_ms=ms, drill=drills[row], readings=readings)
            yield Outgoing(device.gateway, self._topic("telemetry", device), encode(msg), 0, False, label)

    def event(self, ev: SimEvent, device: Device) -> Outgoing:
        msg = native_event(self.msg_id(device.id), ev.t, ev.event, drill=ev.drill, value=ev.value, detail=ev.detail, needs_callback=ev.needs_callback)
        return Outgoing(device.gateway, self._topic("event", device), encode(msg), 1, False, "event")

    def availability(self, ch: AvailabilityChange, device: Device) -> Outgoing:
        ms = _ms(ch.t)
        msg = DeviceAvailability(msg_id=self.msg_id(device.id), source_ts_ms=ms, received_ts_ms=ms, drill=ch.drill, state=ch.state, reason=ch.reason)
        return Outgoing(device.gateway, self._topic("availability", device), encode(msg), 1, True, "availability")

    def patrol(self, p: PatrolDue, outbox_depth: int = 0) -> Outgoing:
        ms = _ms(p.t)
        msg = PatrolHeartbeat(msg_id=self.msg_id(p.gateway), source_ts_ms=ms, received_ts_ms=ms, seq=p.seq, period_s=p.period_s, outbox_depth=outbox_depth)
        return Outgoing(p.gateway, str(patrol_topic(p.gateway)), encode(msg), 1, False, "patrol")

    def patrol_answer(self, gateway: str, t: float, seq: int, patrol_id: str, period_s: float = 3600.0) -> Outgoing:
        """The heartbeat a gateway sends back at once when the centre's patrol (巡检) command reaches it."""
        ms = _ms(t)
        msg = PatrolHeartbeat(msg_id=self.msg_id(gateway), source_ts_ms=ms, received_ts_ms=ms, seq=seq, period_s=period_s, patrol_id=patrol_id)
        return Outgoing(gateway, str(patrol_topic(gateway)), encode(msg), 1, False, "patrol")

    def gateway_status(self, gateway: str, t: float, state: GatewayState) -> Outgoing:
        msg = gateway_status_message(self.msg_id(gateway), t, state, drill=self.drill_links)
        return Outgoing(gateway, str(gateway_status_topic(gateway)), encode(msg), 1, True, "status")
