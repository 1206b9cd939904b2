"""The centre's one stream of committed changes: what the core decided, after it is durable, typed.

How this works: a change is committed first (the alarm store's transaction, the ladder's step rows, a notice's
receipt), then its writer publishes it here as one typed event, and every subscriber hears of it in
subscription order before `publish` returns:

    event              published by                              heard by
    Persist            the alarm service (backend.alarms)        the live feed, the ladder (backend.escalation.bridge), metrics
    LadderStep         the escalation service                    the live feed
    NoticeSent         the console channel of the dispatcher     the live feed
    ReceiptRecorded    the notification dispatcher, the          the live feed, the notice_failed watch
                       providers' reports (backend.notify.reports)  (backend.notify.failures)
    Bulletin           maintenance windows and other notices     the live feed
    AlarmAssigned      the alarm's collaboration (backend.alarms.collab)  the live feed
    CommentAdded       the alarm's collaboration (backend.alarms.collab)  the live feed

`Persist` is the core's own value (alerting.model: the alarm as it now is and the audit entries this commit
wrote); the stream adds no second type for "the alarm". A subscriber is an async callable taking the events of
one commit together (a storm's 200 smoke alarms are one call, not 200); it must not block the loop. A failing
subscriber is logged and counted, never fatal to the writer or to the others. The stream is in memory and
in-process: a process's feed reads it instead of re-reading the alarm table. A cluster's backends that do not
hold the rules seat have no alarm writer in process; their feed keeps a durable source (the alarm table) and
turns its rows into the same `Persist` events (backend.feed.live).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerting.model import Persist

__all__ = ["AlarmAssigned", "Bulletin", "CentreStream", "CommentAdded", "Event", "LadderStep", "NoticeSent", "ReceiptRecorded", "Subscriber"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LadderStep:
    """The ladder did something worth a line on the alarm's timeline (paged a rung, climbed, was answered, stopped)."""

    alarm_id: str
    step: int
    kind: str  # alerting.ladder's Note kind
    rung: str | None
    detail: str
    at_ms: int
    drill: bool

    def as_json(self) -> dict[str, Any]:
        return {"type": "escalation", "alarm_id": self.alarm_id, "step": self.step, "kind": self.kind, "rung": self.rung,
                "detail": self.detail, "at_ms": self.at_ms, "drill": self.drill}


@dataclass(frozen=True, slots=True)
class NoticeSent:
    """A notice reached the duty console's channel (the text without any one-tap link)."""

    key: str
    alarm_id: str
    contact: str
    contact_name: str
    rung: str
    reason: str
    text: str
    drill: bool
    severity: str
    at_ms: int

    def as_json(self) -> dict[str, Any]:
        return {"type": "notice", "key": self.key, "alarm_id": self.alarm_id, "contact": self.contact, "contact_name": self.contact_name,
                "rung": self.rung, "reason": self.reason, "text": self.text, "drill": self.drill, "severity": self.severity, "at_ms": self.at_ms}


@dataclass(frozen=True, slots=True)
class ReceiptRecorded:
    """A channel's answer about one notice: sent, delivered, read, answered, failed (with its reason)."""

    key: str  # the notice's key
    alarm_id: str
    contact: str
    channel: str
    status: str
    at_ms: int
    detail: str = ""
    drill: bool = False
    contact_name: str = ""
    channels: tuple[str, ...] = ()  # the dispatcher's: every channel the notice went on besides the console (a later report: empty)

    def as_json(self) -> dict[str, Any]:
        return {"type": "receipt", "key": self.key, "alarm_id": self.alarm_id, "contact": self.contact, "channel": self.channel,
                "status": self.status, "at_ms": self.at_ms, "detail": self.detail, "drill": self.drill, "contact_name": self.contact_name}


@dataclass(frozen=True, slots=True)
class Bulletin:
    """A notice for the duty room that is not about one alarm's row (a maintenance window ending, ...): `kind` names it
    on the feed; `data` is what the console shows; the place says whose territory sees it."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    building_id: str | None = None
    grid_id: str | None = None
    community_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True, slots=True)
class AlarmAssigned:
    """An alarm was assigned (or re-assigned) to a person: who assigned it, when, to whom (issue 17)."""

    alarm_id: str
    assignee_id: str
    assignee_name: str
    assignee_role: str
    actor: str
    note: str
    at_ms: int
    drill: bool

    def as_json(self) -> dict[str, Any]:
        return {"type": "assignment", "alarm_id": self.alarm_id, "assignee_id": self.assignee_id, "assignee_name": self.assignee_name,
                "assignee_role": self.assignee_role, "actor": self.actor, "note": self.note, "at_ms": self.at_ms, "drill": self.drill}


@dataclass(frozen=True, slots=True)
class CommentAdded:
    """A person commented on an alarm (with photos, by their ids); the alarm's state did not change (issue 17)."""

    alarm_id: str
    comment_id: str
    author: str
    text: str
    photo_ids: tuple[str, ...]
    at_ms: int
    drill: bool

    def as_json(self) -> dict[str, Any]:
        return {"type": "comment", "alarm_id": self.alarm_id, "comment_id": self.comment_id, "author": self.author, "text": self.text,
                "photos": [f"/api/alarms/{self.alarm_id}/photos/{p}" for p in self.photo_ids], "at_ms": self.at_ms, "drill": self.drill}


Event = Persist | LadderStep | NoticeSent | ReceiptRecorded | Bulletin | AlarmAssigned | CommentAdded
Subscriber = Callable[[Sequence[Event]], Awaitable[None]]


class CentreStream:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber]] = []
        self.published = 0
        self.failures: dict[str, int] = {}

    def subscribe(self, subscriber: Subscriber, *, name: str) -> None:
        """Hear every later commit's events, after the subscribers already here."""
        self._subscribers.append((name, subscriber))

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [(n, s) for n, s in self._subscribers if s != subscriber]

    @property
    def subscribers(self) -> list[str]:
        return [n for n, _ in self._subscribers]

    @contextlib.contextmanager
    def tap(self, name: str = "tap") -> Iterator[asyncio.Queue[Event]]:
        """A queue that receives every event published while the block runs (tools and tests that watch the centre)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()

        async def put(events: Sequence[Event]) -> None:
            for e in events:
                queue.put_nowait(e)

        self.subscribe(put, name=name)
        try:
            yield queue
        finally:
            self.unsubscribe(put)

    async def publish(self, events: Sequence[Event]) -> None:
        """Tell every subscriber of one commit's events (call after the commit; on the event loop)."""
        if not events:
            return
        self.published += len(events)
        for name, subscriber in list(self._subscribers):
            try:
                await subscriber(events)
            except Exception:
                self.failures[name] = self.failures.get(name, 0) + 1
                log.exception("stream subscriber %s failed on %d event(s)", name, len(events))
