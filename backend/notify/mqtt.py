"""MQTT channels: responder apps (inside) and a building's sounders and displays (outside: drills need consent).

How this works: the channel publishes a `broker.notices.Notice` at QoS 1 on the topic broker/topics.py builds
(`responder_notice_topic`, `building_notice_topic`), through any `publish(topic, payload, qos)` coroutine —
in production an aiomqtt client's `publish`. aiomqtt's errors are translated into a transient
`DeliveryFailed` (the dispatcher retries). The app de-duplicates by `key`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiomqtt

from backend.notify.channel import DeliveryFailed, Message
from backend.notify.templates import without_link
from broker.errors import ContractError
from broker.notices import Notice, encode_notice
from broker.topics import BUILDING_OUTPUTS, Topic, building_notice_topic, responder_notice_topic

__all__ = ["MqttNoticeChannel", "Publish", "notice_of"]

Publish = Callable[[str, bytes, int], Awaitable[None]]


def notice_of(message: Message) -> Notice:
    """The notice as published. No one-tap link: any client of the broker may be listening (issue 22); the link goes
    only through the person's own channels (SMS, webhook text)."""
    return Notice(key=message.key, alarm_id=message.alarm_id, title=message.title, text=without_link(message.text), severity=message.severity,
                  reason=message.reason, issued_ts_ms=message.created_ms, drill=message.drill, link=None, building=message.building)


class MqttNoticeChannel:
    """kind "app": the contact's responder app. kind "sounder" / "display": the alarm's building."""

    def __init__(self, kind: str, publish: Publish) -> None:
        if kind != "app" and kind not in BUILDING_OUTPUTS:
            raise ValueError(f"an MQTT notice channel is 'app' or one of {BUILDING_OUTPUTS}")
        self._kind = kind
        self._publish = publish

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def outside(self) -> bool:
        return self._kind != "app"  # a sounder going off reaches every resident of the building

    def topic(self, message: Message) -> Topic:
        try:
            if self._kind == "app":
                return responder_notice_topic(message.contact.id)
            if message.building is None:
                raise DeliveryFailed(self._kind, "the alarm has no building", transient=False)
            return building_notice_topic(message.building, self._kind)
        except ContractError as exc:
            raise DeliveryFailed(self._kind, str(exc), transient=False) from exc

    async def send(self, message: Message) -> str | None:
        topic = self.topic(message)
        try:
            await self._publish(str(topic), encode_notice(notice_of(message)), 1)
        except aiomqtt.MqttError as exc:
            raise DeliveryFailed(self._kind, f"MQTT: {exc}", transient=True) from exc
        return str(topic)
