"""Errors of the broker package: the wire contract and the brokers it starts.

    BrokerError
    ├── ContractError            the wire contract is broken (also a ValueError)
    │   ├── InvalidId            an id that breaks the id grammar
    │   ├── InvalidTopic         a topic name or filter that breaks MQTT's rules or ours
    │   └── MessageRejected      a payload that does not meet its schema (carries a machine code and a reason)
    ├── BrokerStartError         broker.embedded: the embedded broker's child did not start (also a RuntimeError)
    ├── BrokerUnreachable        broker.connection: no connection within the owner's wait (also a ConnectionError)
    ├── NotConnected             broker.connection: no connection to publish on now (also an aiomqtt.MqttError)
    └── MosquittoNotInstalled    broker.process: no mosquitto binary here (also a RuntimeError)

tests/test_exception_trees.py fails when an exception defined anywhere in broker/ is not under `BrokerError`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BrokerError", "ContractError", "InvalidId", "InvalidTopic", "MessageRejected", "RejectReason"]


class BrokerError(Exception):
    """Base of every error the broker package raises."""


class ContractError(BrokerError, ValueError):
    """Base of every error raised by the wire contract."""


class InvalidId(ContractError):
    def __init__(self, kind: str, value: str, why: str) -> None:
        self.kind = kind
        self.value = value
        self.why = why
        super().__init__(f"invalid {kind} {value!r}: {why}")


class InvalidTopic(ContractError):
    def __init__(self, topic: str, why: str) -> None:
        self.topic = topic
        self.why = why
        super().__init__(f"invalid topic {topic!r}: {why}")


class RejectReason(StrEnum):
    """Machine-readable reason codes; each rejection also carries a sentence for a person."""

    TOO_LARGE = "too_large"
    BAD_TOPIC = "bad_topic"
    NOT_UPLINK = "not_uplink"
    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"
    BAD_VALUE = "bad_value"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_GATEWAY = "wrong_gateway"
    DUPLICATE = "duplicate"
    CLOCK = "clock"
    INTERNAL = "internal_error"  # the receiver failed on the message (its bug): parked for replay, not dropped


class MessageRejected(ContractError):
    """A message that cannot be accepted. `reason` is the code, `detail` says what to fix."""

    def __init__(self, reason: RejectReason, detail: str, topic: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.topic = topic
        super().__init__(f"{reason.value}: {detail}" + (f" (topic {topic!r})" if topic else ""))
