"""The payload of escalation notices the centre sends down to responder apps and building outputs.

Topics: `responder_notice_topic(responder)` and `building_notice_topic(building, output)` in broker.topics.
"""

from __future__ import annotations

import msgspec

__all__ = ["Notice", "decode_notice", "encode_notice"]


class Notice(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An escalation notice: what happened, where, what to do, and how to answer."""

    key: str  # idempotency key: the app shows a notice once however often it arrives
    alarm_id: str
    title: str
    text: str  # Chinese, ready to show or speak
    severity: str
    reason: str  # page, repeat, escalate, vacancy, declined, unverified, exhausted, storm
    issued_ts_ms: int
    drill: bool = False
    link: str | None = None  # one-tap answer link (signed, expiring)
    building: str | None = None


def encode_notice(notice: Notice) -> bytes:
    return msgspec.json.encode(notice)


def decode_notice(payload: bytes) -> Notice:
    return msgspec.json.decode(payload, type=Notice)
