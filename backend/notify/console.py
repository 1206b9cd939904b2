"""The live console feed: an in-process publish/subscribe the API's live feed reads.

How this works: each subscriber gets its own bounded queue; a slow subscriber loses its oldest events (and
is told how many through `dropped`) rather than slowing the ladder down. Publishing never blocks and never
fails. `ConsoleChannel` makes the feed a notification channel like any other (inside: drills allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from backend.notify.channel import Message
from backend.notify.templates import without_link

__all__ = ["ConsoleChannel", "LiveConsole", "Subscription"]


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: dict[str, Any]) -> None:
        while self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()


class LiveConsole:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subs: set[Subscription] = set()
        self._queue_size = queue_size
        self.published = 0

    def publish(self, event: dict[str, Any]) -> None:
        self.published += 1
        for sub in list(self._subs):
            sub.offer(event)

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        """with console.subscribe() as sub: event = await sub.get()"""
        sub = Subscription(self._queue_size)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)


class ConsoleChannel:
    kind = "console"
    outside = False

    def __init__(self, console: LiveConsole) -> None:
        self.console = console

    async def send(self, message: Message) -> str | None:
        self.console.publish({
            "type": "notice", "key": message.key, "alarm_id": message.alarm_id, "contact": message.contact.id,
            "contact_name": message.contact.name, "rung": message.rung, "reason": message.reason, "text": without_link(message.text),
            "drill": message.drill, "severity": message.severity, "at_ms": message.created_ms,
        })
        return None
