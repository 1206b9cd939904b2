"""The content digest of an uplink (backend/ingest/dedupe.py) hashes exactly what it hashed before it was made cheaper:
it is part of a reused msg_id's flagged form, which the journal, the alarm's source message and the cluster's queue
keep, so a redelivery after an upgrade must get the same flagged id."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from backend.ingest.dedupe import content_digest, flag_reused
from broker.kinds import AvailabilityState, EventKind, GatewayState
from broker.schemas import DeviceAvailability, DeviceEvent, GatewayStatus, Message, PatrolHeartbeat, Uplink, decode_uplink, encode
from broker.topics import availability_topic, event_topic, gateway_status_topic

MESSAGES: list[tuple[str, Message]] = [
    (str(event_topic("c01-gw-b01", "c01-b01-u1-101-smoke")),
     DeviceEvent(msg_id="gw-1", source_ts_ms=1_767_225_600_000, received_ts_ms=1_767_225_600_123, event=EventKind.SMOKE_ALARM)),
    (str(event_topic("c01-gw-b01", "c01-b01-u1-101-smoke")),
     DeviceEvent(msg_id="gw-2", source_ts_ms=5, received_ts_ms=9, event=EventKind.SOS_PRESS, needs_callback=True, detail="厨房 \"烟\"", value=3.5, drill=True)),
    (str(availability_topic("c01-gw-b01", "c01-b01-cam1")),
     DeviceAvailability(msg_id="gw-3", source_ts_ms=5, received_ts_ms=9, state=AvailabilityState.OFFLINE, reason="keepalive lost")),
    (str(gateway_status_topic("c01-gw-b01")), GatewayStatus(msg_id="gw-4", source_ts_ms=5, received_ts_ms=9, state=GatewayState.ONLINE)),
]


def _before(uplink: Uplink) -> bytes:
    """The digest as it was computed before (issue 19, session 16)."""
    msg = uplink.message
    body = encode(msgspec.structs.replace(msg, received_ts_ms=0) if hasattr(msg, "received_ts_ms") else msg)
    return hashlib.blake2b(body, digest_size=8).digest()


@pytest.mark.parametrize(("topic", "message"), MESSAGES, ids=[type(m).__name__ + str(i) for i, (_, m) in enumerate(MESSAGES)])
def test_the_digest_is_the_one_computed_before_and_ignores_only_the_receive_time(topic: str, message: Message) -> None:
    uplink = decode_uplink(topic, encode(message))
    assert content_digest(uplink) == _before(uplink)
    restamped = decode_uplink(topic, encode(msgspec.structs.replace(message, received_ts_ms=message.received_ts_ms + 1000)))  # type: ignore[union-attr]
    assert content_digest(restamped) == content_digest(uplink), "a redelivery may restamp the receive time"
    changed = decode_uplink(topic, encode(msgspec.structs.replace(message, source_ts_ms=message.source_ts_ms + 1)))  # type: ignore[union-attr]
    assert content_digest(changed) != content_digest(uplink)
    assert uplink.message.received_ts_ms == message.received_ts_ms, "the message itself is left as it came"  # type: ignore[union-attr]
    assert flag_reused(uplink).message.msg_id.endswith(":" + _before(uplink).hex()[:8])  # type: ignore[union-attr]


def test_a_patrol_heartbeat_has_a_digest_too() -> None:
    hb = PatrolHeartbeat(msg_id="gw-5", source_ts_ms=5, received_ts_ms=9, seq=3, period_s=60, patrol_id="p-1")
    uplink = decode_uplink("sw/v1/gw/c01-gw-b01/patrol", encode(hb))
    assert content_digest(uplink) == _before(uplink)
