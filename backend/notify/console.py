"""The duty console as a notification channel: a notice goes out on the centre's stream (backend.stream), and the
live feed shows it on every console of the alarm's territory.

`ConsoleChannel` makes the console a channel like any other (inside: drills allowed, never rate limited). It
publishes the notice's text without any one-tap link (a link is for its one person, never for a screen).
"""

from __future__ import annotations

from backend.notify.channel import Message
from backend.notify.templates import without_link
from backend.stream import CentreStream, NoticeSent

__all__ = ["ConsoleChannel"]


class ConsoleChannel:
    kind = "console"
    outside = False

    def __init__(self, stream: CentreStream) -> None:
        self.stream = stream

    async def send(self, message: Message) -> str | None:
        await self.stream.publish([NoticeSent(
            key=message.key, alarm_id=message.alarm_id, contact=message.contact.id, contact_name=message.contact.name, rung=message.rung,
            reason=message.reason, text=without_link(message.text), drill=message.drill, severity=message.severity, at_ms=message.created_ms,
        )])
        return None
