"""Message schemas of the wire contract (version 1) and the one decoder every consumer uses.

How this works: each topic kind has one msgspec Struct. `decode_uplink(topic, payload)` checks the size,
parses the topic, decodes strictly (unknown fields, wrong types and non-finite numbers are refused) and
returns an `Uplink` that pairs the parsed topic with the message; anything wrong raises `MessageRejected`
with a reason code and a sentence a person can act on. Encoding is `encode(message)`.

Text is cleaned here, at the trust boundary, so that no cosmetic field can cost a life-safety event (issue 22):
free text (`detail`, `reason`, `software`) loses NUL and other control characters (a database refuses NUL),
lone surrogates become U+FFFD, and text over 500 characters is cut with a visible mark (`TRUNCATED_MARK`).
A non-telemetry payload that strict decoding refuses only for what JSON's looser dialect allows (a lone
surrogate escape, invalid UTF-8 inside a string, `Infinity`/`NaN`, a number out of range) is decoded
leniently: the text is cleaned and a non-finite event `value` is left out (an event's value is evidence, not
the alarm). Telemetry stays strict: a non-finite reading is refused ("leave unknown values out").

Every uplink message carries:
  msg_id          unique per message, kept through retries and replays so the centre can de-duplicate
  source_ts_ms    when the device produced it (the gateway's clock if the device has none), Unix ms
  received_ts_ms  when the gateway received it from the device, Unix ms
  drill           true for drill traffic, end to end
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from broker.errors import InvalidTopic, MessageRejected, RejectReason
from broker.frozen import quick_init
from broker.ids import MessageId
from broker.kinds import LIFE_SAFETY_EVENTS, AvailabilityState, EventKind, GatewayState, Priority, metric_unit
from broker.topics import TopicKind, UplinkTopic, parse_uplink

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS",
    "TRUNCATED_MARK",
    "DeviceAvailability",
    "DeviceEvent",
    "GatewayCommand",
    "GatewayStatus",
    "Message",
    "PatrolHeartbeat",
    "Telemetry",
    "Uplink",
    "decode_message",
    "decode_uplink",
    "encode",
    "priority_of",
    "without_cosmetics",
]

# Real device messages are well under 4 KiB (a Shelly NotifyFullStatus is the largest at ~3 KiB); our own
# messages are smaller still. 64 KiB leaves room and keeps a hostile 1 MB payload from costing anything.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_READINGS: Final = 64  # per Telemetry message; the edge splits a larger set of one instant over several
_MAX_TEXT = 500
TRUNCATED_MARK: Final = "…[截断]"  # ends a text cut to _MAX_TEXT characters: a person sees it was longer
_UNCLEAN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")  # control characters (not \t \n \r), lone surrogates


def clean_text(text: str | None) -> str | None:
    """Free text as the centre keeps it: no NUL or other control characters, no lone surrogates (U+FFFD
    instead), at most 500 characters (cut with TRUNCATED_MARK)."""
    if text is None:
        return None
    if _UNCLEAN.search(text):
        text = _UNCLEAN.sub(lambda m: "\ufffd" if m.group() >= "\ud800" else "", text)
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - len(TRUNCATED_MARK)] + TRUNCATED_MARK
    return text


def _clean_field(obj: msgspec.Struct, name: str) -> None:
    value = getattr(obj, name)
    cleaned = clean_text(value)
    if cleaned is not value:
        msgspec.structs.force_setattr(obj, name, cleaned)


_MAX_TS_MS = 2**63 - 1  # stores and the rule engine keep times as signed 64-bit integers


def _check_envelope(msg_id: str, source_ts_ms: int, received_ts_ms: int) -> None:
    MessageId(msg_id)
    if source_ts_ms < 0 or received_ts_ms < 0:
        raise ValueError("timestamps are Unix milliseconds and must not be negative")
    if source_ts_ms > _MAX_TS_MS or received_ts_ms > _MAX_TS_MS:
        raise ValueError("timestamps are Unix milliseconds and must fit a signed 64-bit integer")


class _Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    msg_id: str
    source_ts_ms: int
    received_ts_ms: int
    drill: bool = False

    def __post_init__(self) -> None:
        _check_envelope(self.msg_id, self.source_ts_ms, self.received_ts_ms)


class Telemetry(_Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Readings of one device at one instant. Unknown values are left out, never sent as 0 or null."""

    readings: dict[str, float]

    def __post_init__(self) -> None:
        _check_envelope(self.msg_id, self.source_ts_ms, self.received_ts_ms)
        if not self.readings:
            raise ValueError("readings must hold at least one metric")
        if len(self.readings) > MAX_READINGS:
            raise ValueError(f"at most {MAX_READINGS} readings per message")
        for name, value in self.readings.items():
            if metric_unit(name) is None:
                raise ValueError(
                    f"metric {name!r} must be snake_case ending in a unit, e.g. residual_current_ma, temperature_c"
                )
            if not math.isfinite(value):
                raise ValueError(f"metric {name!r} is not a finite number; leave unknown values out")


class DeviceEvent(_Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Something that happened at a device: a smoke alarm, an SOS press, a tamper, a clear."""

    event: EventKind
    needs_callback: bool = False  # e.g. a Tuya SOS button known to fire by itself: call the resident back
    detail: str | None = None
    value: float | None = None  # the measurement behind the event, if any (e.g. leakage mA at trip)

    def __post_init__(self) -> None:
        _check_envelope(self.msg_id, self.source_ts_ms, self.received_ts_ms)
        _clean_field(self, "detail")
        if self.value is not None and not math.isfinite(self.value):  # evidence, not the alarm: left out, never refused
            msgspec.structs.force_setattr(self, "value", None)


class DeviceAvailability(_Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state: AvailabilityState
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_envelope(self.msg_id, self.source_ts_ms, self.received_ts_ms)
        _clean_field(self, "reason")


class GatewayStatus(_Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retained on the status topic; the same payload with state=offline is the gateway's Last Will."""

    state: GatewayState
    software: str | None = None

    def __post_init__(self) -> None:
        _check_envelope(self.msg_id, self.source_ts_ms, self.received_ts_ms)
        _clean_field(self, "software")


class PatrolHeartbeat(_Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Patrol (巡检) heartbeat: the gateway is alive and its uplink works. `seq` rises by one each period."""

    seq: int
    period_s: float
    outbox_depth: int = 0
    rejected_total: int = 0
    patrol_id: str | None = None  # set when answering a synthetic patrol test from the centre

    def __post_init__(self) -> None:
        _check_envelope(self.msg_id, self.source_ts_ms, self.received_ts_ms)
        if self.seq < 0 or self.outbox_depth < 0 or self.rejected_total < 0:
            raise ValueError("seq, outbox_depth and rejected_total must not be negative")
        if not (0 < self.period_s <= 7200):
            raise ValueError("period_s must be in (0, 7200]: the standard's patrol ceiling is 2 h")


class GatewayCommand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A command from the centre to one gateway (patrol test, sounder on/off, configuration reload)."""

    cmd_id: str
    issued_ts_ms: int
    args: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    drill: bool = False

    def __post_init__(self) -> None:
        MessageId(self.cmd_id)


Message = Telemetry | DeviceEvent | DeviceAvailability | GatewayStatus | PatrolHeartbeat | GatewayCommand

_SCHEMA_OF: dict[TopicKind, type[Any]] = {
    TopicKind.TELEMETRY: Telemetry,
    TopicKind.EVENT: DeviceEvent,
    TopicKind.AVAILABILITY: DeviceAvailability,
    TopicKind.GATEWAY_STATUS: GatewayStatus,
    TopicKind.PATROL: PatrolHeartbeat,
    TopicKind.COMMAND: GatewayCommand,
}
_DECODERS: dict[TopicKind, msgspec.json.Decoder[Any]] = {k: msgspec.json.Decoder(t) for k, t in _SCHEMA_OF.items()}
_ENCODER = msgspec.json.Encoder()


@quick_init
@dataclass(frozen=True, slots=True)
class Uplink:
    """A decoded message with the topic that says whose it is."""

    topic: UplinkTopic
    message: Message

    @property
    def priority(self) -> Priority:
        return priority_of(self.message)


def priority_of(message: Message) -> Priority:
    if isinstance(message, DeviceEvent):
        return Priority.LIFE_SAFETY if message.event in LIFE_SAFETY_EVENTS else Priority.STATUS
    if isinstance(message, Telemetry):
        return Priority.TELEMETRY
    return Priority.STATUS


def encode(message: Message) -> bytes:
    return _ENCODER.encode(message)


def decode_message(kind: TopicKind, payload: bytes, topic: str = "") -> Message:
    """Decode a payload of a known topic kind, or raise MessageRejected."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageRejected(
            RejectReason.TOO_LARGE, f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}", topic
        )
    try:
        message: Message = _DECODERS[kind].decode(payload)
    except msgspec.ValidationError as exc:
        if (lenient := _lenient(kind, payload)) is not None:
            return lenient
        raise MessageRejected(RejectReason.SCHEMA, f"{kind.value} payload does not fit the schema: {exc}", topic) from exc
    except msgspec.DecodeError as exc:
        if (lenient := _lenient(kind, payload)) is not None:
            return lenient
        raise MessageRejected(RejectReason.MALFORMED_JSON, f"payload is not valid JSON: {exc}", topic) from exc
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, for bad UTF-8 inside a JSON string
        if (lenient := _lenient(kind, payload)) is not None:
            return lenient
        raise MessageRejected(RejectReason.MALFORMED_JSON, f"payload is not valid JSON: a string is not UTF-8 ({exc})", topic) from exc
    return message


_STRICT_KINDS = frozenset({TopicKind.TELEMETRY, TopicKind.COMMAND})
_FREE_TEXT = frozenset({"detail", "reason", "software"})  # cosmetic text; ids, states and kinds are never "cleaned" into validity


def _lenient(kind: TopicKind, payload: bytes) -> Message | None:
    """The message, decoded by JSON's looser dialect and cleaned; None if it still does not fit (the strict
    error then stands). Only for the rare payload strict decoding refused: never on the hot path."""
    if kind in _STRICT_KINDS:
        return None
    try:
        obj = json.loads(payload.decode("utf-8", errors="replace"))  # Infinity, NaN, lone surrogate escapes
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    for name, value in list(obj.items()):
        if name in _FREE_TEXT and isinstance(value, str):
            obj[name] = clean_text(value)
        elif name == "value" and isinstance(value, float) and not math.isfinite(value):
            obj[name] = None
    try:
        message: Message = msgspec.convert(obj, _SCHEMA_OF[kind])
    except (msgspec.ValidationError, ValueError):
        return None
    return message


def without_cosmetics(uplink: Uplink) -> Uplink:
    """A device event without its free text and measured value: what is left when a store refused those. The
    same `uplink` if there is nothing to leave out."""
    msg = uplink.message
    if not isinstance(msg, DeviceEvent) or (msg.detail is None and msg.value is None):
        return uplink
    return Uplink(uplink.topic, msgspec.structs.replace(msg, detail=None, value=None))


def decode_uplink(topic: str, payload: bytes) -> Uplink:
    """Parse the topic and decode the payload; raise MessageRejected saying what is wrong."""
    try:
        parsed = parse_uplink(topic)
    except InvalidTopic as exc:
        raise MessageRejected(RejectReason.BAD_TOPIC, exc.why, topic) from exc
    if parsed.kind is TopicKind.COMMAND:
        raise MessageRejected(RejectReason.NOT_UPLINK, "commands flow from the centre down, not up", topic)
    return Uplink(parsed, decode_message(parsed.kind, payload, topic))
