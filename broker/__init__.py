"""The wire contract: topic grammar, message schemas, ACLs, broker configuration, the embedded broker.

Anything that speaks MQTT takes its topics and schemas from here. This package imports nothing else of ours.
"""

from broker.errors import ContractError, InvalidId, InvalidTopic, MessageRejected, RejectReason
from broker.ids import DeviceId, GatewayId, MessageId
from broker.kinds import (
    LIFE_SAFETY_EVENTS,
    AvailabilityState,
    DeviceKind,
    EventKind,
    GatewayState,
    Priority,
)
from broker.schemas import (
    DeviceAvailability,
    DeviceEvent,
    GatewayCommand,
    GatewayStatus,
    Message,
    PatrolHeartbeat,
    Telemetry,
    Uplink,
    decode_uplink,
    encode,
)
from broker.topics import Topic, TopicFilter, TopicKind, UplinkTopic

__all__ = [
    "LIFE_SAFETY_EVENTS",
    "AvailabilityState",
    "ContractError",
    "DeviceAvailability",
    "DeviceEvent",
    "DeviceId",
    "DeviceKind",
    "EventKind",
    "GatewayCommand",
    "GatewayId",
    "GatewayState",
    "GatewayStatus",
    "InvalidId",
    "InvalidTopic",
    "Message",
    "MessageId",
    "MessageRejected",
    "PatrolHeartbeat",
    "Priority",
    "RejectReason",
    "Telemetry",
    "Topic",
    "TopicFilter",
    "TopicKind",
    "Uplink",
    "UplinkTopic",
    "decode_uplink",
    "encode",
]
