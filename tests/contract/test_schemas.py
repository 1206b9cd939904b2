"""Message schemas: good messages round-trip, bad ones are rejected with a reason a person can act on."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import MessageRejected, RejectReason
from broker.kinds import LIFE_SAFETY_EVENTS, EventKind, Priority, metric_unit
from broker.schemas import (
    MAX_PAYLOAD_BYTES,
    DeviceEvent,
    PatrolHeartbeat,
    Telemetry,
    decode_uplink,
    encode,
    priority_of,
)
from broker.topics import event_topic, patrol_topic, telemetry_topic

T = telemetry_topic("gw1", "dev1")
E = event_topic("gw1", "dev1")


def test_round_trip() -> None:
    m = Telemetry(msg_id="gw1:42", source_ts_ms=1_700_000_000_000, received_ts_ms=1_700_000_000_005,
                  readings={"residual_current_ma": 12.5, "power_w@2": 180.0}, drill=True)
    up = decode_uplink(T, encode(m))
    assert up.message == m
    assert up.topic.device == "dev1"


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "hint"),
    [
        (T, b"{", RejectReason.MALFORMED_JSON, "not valid JSON"),
        (T, b"[]", RejectReason.SCHEMA, "Expected `object`"),
        (T, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{}}', RejectReason.SCHEMA, "at least one metric"),
        (T, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{"voltage":1}}', RejectReason.SCHEMA, "ending in a unit"),
        (T, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{"voltage_v":"220"}}', RejectReason.SCHEMA, "Expected `float`"),
        (T, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{"voltage_v":1e999}}', RejectReason.SCHEMA, "out of range"),
        (T, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{"voltage_v":NaN}}', RejectReason.MALFORMED_JSON, "JSON"),
        (T, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{"voltage_v":1},"extra":1}', RejectReason.SCHEMA, "extra"),
        (T, b'{"msg_id":"a b","source_ts_ms":1,"received_ts_ms":1,"readings":{"voltage_v":1}}', RejectReason.SCHEMA, "message id"),
        (T, b'{"msg_id":"a","source_ts_ms":-5,"received_ts_ms":1,"readings":{"voltage_v":1}}', RejectReason.SCHEMA, "negative"),
        (E, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"event":"fire?"}', RejectReason.SCHEMA, "event"),
        (E, b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1}', RejectReason.SCHEMA, "missing required field `event`"),
        (patrol_topic("gw1"), b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"seq":1,"period_s":9000}', RejectReason.SCHEMA, "2 h"),
        ("sw/v1/gw/gw1/cmd/patrol", b"{}", RejectReason.NOT_UPLINK, "centre down"),
        ("other/topic", b"{}", RejectReason.BAD_TOPIC, "not under"),
        (T, b" " * (MAX_PAYLOAD_BYTES + 1), RejectReason.TOO_LARGE, "limit"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(topic: str, payload: bytes, reason: RejectReason, hint: str) -> None:
    with pytest.raises(MessageRejected) as info:
        decode_uplink(topic, payload)
    assert info.value.reason is reason
    assert hint in str(info.value)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(payload: bytes) -> None:
    reason = None
    try:
        decode_uplink(T, payload)
    except MessageRejected as exc:
        reason = exc.reason
    assert reason in (None, RejectReason.MALFORMED_JSON, RejectReason.SCHEMA)


@given(st.dictionaries(st.sampled_from(["temperature_c", "voltage_v", "residual_current_ma", "power_w@1"]),
                       st.floats(allow_nan=True, allow_infinity=True), min_size=1))
def test_readings_must_be_finite(readings: dict[str, float]) -> None:
    payload = encode(Telemetry(msg_id="m", source_ts_ms=1, received_ts_ms=1, readings={"voltage_v": 1.0}))
    raw = msgspec.json.decode(payload)
    raw["readings"] = readings
    body = msgspec.json.encode(raw) if all(math.isfinite(v) for v in readings.values()) else None
    if body is None:
        with pytest.raises((ValueError, msgspec.ValidationError)):
            Telemetry(msg_id="m", source_ts_ms=1, received_ts_ms=1, readings=readings)
    else:
        assert decode_uplink(T, body).message == Telemetry(msg_id="m", source_ts_ms=1, received_ts_ms=1, readings=readings)


def test_life_safety_events_go_first() -> None:
    smoke = DeviceEvent(msg_id="a", source_ts_ms=1, received_ts_ms=1, event=EventKind.SMOKE_ALARM)
    battery = DeviceEvent(msg_id="b", source_ts_ms=1, received_ts_ms=1, event=EventKind.LOW_BATTERY)
    reading = Telemetry(msg_id="c", source_ts_ms=1, received_ts_ms=1, readings={"temperature_c": 20})
    patrol = PatrolHeartbeat(msg_id="d", source_ts_ms=1, received_ts_ms=1, seq=1, period_s=60)
    priorities = [priority_of(m) for m in (smoke, battery, patrol, reading)]
    assert priorities == [Priority.LIFE_SAFETY, Priority.STATUS, Priority.STATUS, Priority.TELEMETRY]
    assert {EventKind.SMOKE_ALARM, EventKind.SOS_PRESS, EventKind.TAMPER} <= LIFE_SAFETY_EVENTS
    assert EventKind.SELF_TEST not in LIFE_SAFETY_EVENTS


UNIT_CASES = [("residual_current_ma", "ma"), ("temperature_c", "c"), ("power_w@12", "w"), ("energy_wh", "wh"), ("battery_pct", "pct")]


@pytest.mark.parametrize(("name", "unit"), UNIT_CASES)
def test_metric_names_carry_their_unit(name: str, unit: str) -> None:
    assert metric_unit(name) == unit


@pytest.mark.parametrize("name", ["temperature", "Temperature_c", "power_w@123", "_c", "current_amps", "power_w@"])
def test_metric_names_without_a_unit_are_refused(name: str) -> None:
    assert metric_unit(name) is None
