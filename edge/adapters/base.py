"""What every device-dialect adapter shares: outcomes, the per-message context, latches, and an emitter.

How this works: an adapter turns one LAN message (topic, payload, retained) into an `Outcome`:

    Mapped     understood: zero or more contract messages (Telemetry / DeviceEvent / DeviceAvailability), each
               routed to one of our device ids, plus which devices were heard (liveness) and which were
               re-armed (a bridge came back). Zero messages always come with a `note` saying why.
    Rejected   not understood: a code and a sentence a person can act on (unknown device, malformed JSON...).

Adapters never raise for a payload and never do I/O; time and message ids come in through `Context`, so the
same message on the same state gives the same outcome. Dialects that resend their whole state (Zigbee2MQTT)
turn booleans into events through `Latches`: an event fires on a known false→true change (and a clear on
true→false); a first `false` only records the state, and `null` is unknown and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

import msgspec

from broker.ids import DeviceId
from broker.kinds import AvailabilityState, DeviceKind, EventKind, metric_unit
from broker.schemas import MAX_PAYLOAD_BYTES, MAX_READINGS, DeviceAvailability, DeviceEvent, Telemetry
from edge.config import AdapterConfig, DeviceConfig, EntityConfig

__all__ = [
    "Adapter",
    "Context",
    "Emitter",
    "KnownDevice",
    "Latches",
    "Mapped",
    "Outcome",
    "RejectCode",
    "Rejected",
    "Routed",
    "as_number",
    "decode_json",
]

DeviceMessage = Telemetry | DeviceEvent | DeviceAvailability


class RejectCode(StrEnum):
    MALFORMED = "malformed"  # not the JSON / text the dialect defines
    UNKNOWN_DEVICE = "unknown_device"  # not in the edge configuration
    UNKNOWN_TOPIC = "unknown_topic"  # under our prefix but no topic of the dialect
    UNMAPPED = "unmapped"  # a device's entity we do not know how to name (ESPHome sensor without a unit)
    BAD_VALUE = "bad_value"  # a value outside what the dialect allows
    TOO_LARGE = "too_large"
    SCHEMA = "schema"  # native: does not meet the contract
    WRONG_GATEWAY = "wrong_gateway"
    ADAPTER_ERROR = "adapter_error"  # the adapter itself failed on this message (a bug): logged with its traceback


@dataclass(frozen=True, slots=True)
class Routed:
    device: DeviceId
    message: DeviceMessage


@dataclass(frozen=True, slots=True)
class Mapped:
    adapter: str
    messages: tuple[Routed, ...] = ()
    heard: tuple[DeviceId, ...] = ()
    rearmed: tuple[DeviceId, ...] = ()
    note: str | None = None
    device: DeviceId | None = None

    def __post_init__(self) -> None:
        if not self.messages and not self.note:
            raise ValueError("a Mapped outcome without messages must say why in `note`")


@dataclass(frozen=True, slots=True)
class Rejected:
    adapter: str
    code: RejectCode
    detail: str
    device: DeviceId | None = None
    topic: str = ""


Outcome = Mapped | Rejected


@dataclass(frozen=True, slots=True)
class Context:
    """What an adapter may know about the outside: the time and a source of message ids."""

    now_ms: int
    new_id: Callable[[], str]


@dataclass(frozen=True, slots=True)
class KnownDevice:
    key: str  # the ecosystem's name for it (friendly name, Tasmota topic, Shelly prefix, camera, node)
    id: DeviceId
    kind: DeviceKind
    drill: bool = False
    callback_verify: bool = False
    channels: int = 1
    entities: Mapping[str, EntityConfig] = field(default_factory=dict, compare=False)

    @classmethod
    def from_config(cls, key: str, d: DeviceConfig) -> KnownDevice:
        verify = d.callback_verify if d.callback_verify is not None else d.kind is DeviceKind.SOS
        return cls(key, DeviceId(d.id), d.kind, d.drill, verify, d.channels, dict(d.entities))


Edge = Literal["rise", "fall"]


class Latches:
    """Last known value of each (device, flag); tells rising and falling edges apart from repeats.

    Changes since the last `drain()` are kept for the agent, which stores the raised ones beside the outbox in
    the same transaction as the messages they produced, and `restore()`s them after a restart: a detector that
    was alarming before the agent restarted and then reports a clear still sends its clear."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], bool] = {}
        self._changed: dict[tuple[str, str], bool] = {}

    def update(self, device: str, flag: str, value: bool | None) -> Edge | None:
        if value is None:
            return None
        key = (device, flag)
        before = self._state.get(key)
        self._state[key] = value
        if bool(before) != value:
            self._changed[key] = value
        if value and before is not True:
            return "rise"
        if not value and before is True:
            return "fall"
        return None

    def get(self, device: str, flag: str) -> bool | None:
        return self._state.get((device, flag))

    def snapshot(self) -> dict[tuple[str, str], bool]:
        return dict(self._state)

    def drain(self) -> dict[tuple[str, str], bool]:
        """What changed since the last drain (raised: True, dropped: False), and forget it."""
        changed, self._changed = self._changed, {}
        return changed

    def revert(self, changes: Mapping[tuple[str, str], bool]) -> None:
        """Undo drained changes whose messages were not committed: the redelivered message is an edge again."""
        for key, value in changes.items():
            self._state[key] = not value

    def restore(self, raised: Iterable[tuple[str, str]]) -> None:
        """Flags that were raised when the agent stopped (from the outbox's latch table)."""
        for key in raised:
            self._state[key] = True


_JSON: Final = msgspec.json.Decoder()


def decode_json(payload: bytes) -> tuple[Any, str | None]:
    """(value, None) or (None, why it is not JSON)."""
    try:
        return _JSON.decode(payload), None
    except msgspec.DecodeError as exc:
        return None, f"payload is not valid JSON: {exc}"
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, for bad UTF-8 inside a JSON string
        return None, f"payload is not valid JSON: a string is not UTF-8 ({exc})"


def as_number(value: object) -> float | None:
    """A finite number, or None for null, booleans, strings and NaN (unknown is left out, never 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def as_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def on_off(text: str) -> bool | None:
    t = text.strip().upper()
    if t in ("ON", "TRUE", "1", "ONLINE"):
        return True
    if t in ("OFF", "FALSE", "0", "OFFLINE"):
        return False
    return None


class Emitter:
    """Collects the messages one LAN message produces, stamped with ids and times from the context."""

    def __init__(self, adapter: str, ctx: Context) -> None:
        self.adapter = adapter
        self.ctx = ctx
        self.messages: list[Routed] = []
        self.heard: list[DeviceId] = []
        self.rearmed: list[DeviceId] = []
        self._readings: dict[tuple[KnownDevice, int], dict[str, float]] = {}

    def readings(self, dev: KnownDevice, readings: Mapping[str, float | None], source_ts_ms: int | None = None) -> None:
        """Add readings; all readings of one device at one instant leave together (in messages of at most
        MAX_READINGS). A channel no metric name can carry (`@N` beyond two ASCII digits, numbered from the
        device's own data) is left out."""
        clean = {k: v for k, v in readings.items() if v is not None and math.isfinite(v)}
        for name in clean:
            assert metric_unit(name.partition("@")[0]) is not None, f"adapter {self.adapter} built a metric without a unit: {name!r}"
        clean = {k: v for k, v in clean.items() if metric_unit(k) is not None}
        if clean:
            key = (dev, source_ts_ms or self.ctx.now_ms)
            self._readings.setdefault(key, {}).update(clean)

    def _flush(self) -> None:
        for (dev, ts), readings in self._readings.items():
            items = list(readings.items())
            for start in range(0, len(items), MAX_READINGS):
                part = dict(items[start : start + MAX_READINGS])
                msg = Telemetry(msg_id=self.ctx.new_id(), source_ts_ms=ts, received_ts_ms=self.ctx.now_ms, drill=dev.drill, readings=part)
                self.messages.append(Routed(dev.id, msg))
        self._readings.clear()

    def event(
        self,
        dev: KnownDevice,
        kind: EventKind,
        *,
        detail: str | None = None,
        value: float | None = None,
        needs_callback: bool = False,
        source_ts_ms: int | None = None,
    ) -> None:
        msg = DeviceEvent(
            msg_id=self.ctx.new_id(),
            source_ts_ms=source_ts_ms or self.ctx.now_ms,
            received_ts_ms=self.ctx.now_ms,
            drill=dev.drill,
            event=kind,
            needs_callback=needs_callback,
            detail=detail[:500] if detail else None,
            value=value,
        )
        self.messages.append(Routed(dev.id, msg))

    def availability(self, dev: KnownDevice, state: AvailabilityState, reason: str | None = None) -> None:
        msg = DeviceAvailability(
            msg_id=self.ctx.new_id(),
            source_ts_ms=self.ctx.now_ms,
            received_ts_ms=self.ctx.now_ms,
            drill=dev.drill,
            state=state,
            reason=reason,
        )
        self.messages.append(Routed(dev.id, msg))

    def hear(self, dev: KnownDevice) -> None:
        if dev.id not in self.heard:
            self.heard.append(dev.id)

    def rearm(self, devs: Iterable[KnownDevice]) -> None:
        self.rearmed.extend(d.id for d in devs)

    def done(self, note: str | None = None, device: KnownDevice | None = None) -> Mapped:
        self._flush()
        if self.messages:
            note = None  # the messages speak for themselves; a note explains only an empty outcome
        elif not note:
            note = "nothing to forward: no reading, state change or availability in this message"
        return Mapped(self.adapter, tuple(self.messages), tuple(self.heard), tuple(self.rearmed), note, device.id if device else None)


class Adapter:
    """Base of the dialect adapters: device lookup by ecosystem key, the prefixes it owns, rejections."""

    dialect: str = "?"

    def __init__(self, config: AdapterConfig, prefixes: list[str]) -> None:
        self.config = config
        self.name = config.display_name
        self.prefixes = tuple(prefixes)
        self.devices: dict[str, KnownDevice] = {k: KnownDevice.from_config(k, d) for k, d in config.devices.items()}
        self.by_id: dict[DeviceId, KnownDevice] = {d.id: d for d in self.devices.values()}
        self.latches = Latches()

    def filters(self) -> list[str]:
        """MQTT filters to subscribe to on the LAN broker."""
        return [f"{p}/#" for p in self.prefixes]

    def handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self.reject(RejectCode.TOO_LARGE, f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}", topic=topic)
        return self._handle(topic, payload, retained, ctx)

    def _handle(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        raise NotImplementedError

    def reject(self, code: RejectCode, detail: str, device: KnownDevice | None = None, topic: str = "") -> Rejected:
        return Rejected(self.name, code, detail, device.id if device else None, topic)

    def unknown_device(self, key: str, topic: str) -> Rejected:
        return self.reject(RejectCode.UNKNOWN_DEVICE, f"no device {key!r} is configured for adapter {self.name}: add it under `devices`", topic=topic)

    def text(self, payload: bytes) -> str | None:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
