"""One channel interface for every way a notice reaches a person or a place.

How this works: the escalation service turns each ladder `Notify` into a `Message` (Chinese text, one-tap
link, drill marks, idempotency key) and hands it to the `Dispatcher`, which sends it on each channel the
rung asks for. A `Channel` only knows how to send one message once: `send` returns the provider's reference
or raises `DeliveryFailed` saying whether trying again can help. Retries, back-off, the drill gate, rate
limits and receipts are the dispatcher's job, so every channel gets them the same way.

Exceptions (third-party errors are translated here and never leak inward):

    NotifyError
     ├── DeliveryFailed     one attempt failed; .transient says whether a retry may succeed
     ├── ChannelMissing     a rung names a channel kind this deployment has not configured
     └── ProviderMisconfigured  (backend.notify.providers) a provider chosen without a setting it needs; the start stops
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from alerting.ladder import Contact
from backend.errors import BackendError

__all__ = ["Channel", "ChannelMissing", "DeliveryFailed", "DeliveryStatus", "Message", "NotifyError", "Receipt"]


class NotifyError(BackendError):
    """Base of the notification errors."""


class DeliveryFailed(NotifyError):
    def __init__(self, channel: str, why: str, *, transient: bool, status: int | None = None) -> None:
        self.channel, self.why, self.transient, self.status = channel, why, transient, status
        super().__init__(f"{channel}: {why}" + (" (will retry)" if transient else ""))


class ChannelMissing(NotifyError):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"no channel of kind {kind!r} is configured")


@dataclass(frozen=True, slots=True)
class Message:
    key: str  # idempotency key: the same notice always carries the same key, through every retry
    alarm_id: str
    contact: Contact
    channels: tuple[str, ...]
    text: str
    title: str = ""
    link: str | None = None
    drill: bool = False
    outside_allowed: bool = True
    reason: str = "page"
    rung: str = ""
    building: str | None = None
    severity: str = "major"
    created_ms: int = 0
    life_safety: bool = False  # smoke, fire, SOS: a real one is never held by a rate limiter
    place: str = ""  # the place in words (building, unit, room): a parameter of the providers' SMS and voice templates


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: permanent error or retries spent
    WITHHELD_DRILL = "withheld_drill"  # a drill that did not ask for outside channels
    RATE_LIMITED = "rate_limited"  # folded into a storm summary
    NO_CHANNEL = "no_channel"  # not configured here


@dataclass(frozen=True, slots=True)
class Receipt:
    key: str
    alarm_id: str
    contact: str
    channel: str
    status: DeliveryStatus
    attempts: int
    at_ms: int
    provider_ref: str | None = None
    error: str | None = None
    drill: bool = False
    delayed_ms: int = 0  # how long the channel's own limit (HTTP 429) or its failures held the notice before it went out
    contact_name: str = ""  # the person's name as paged (the timeline lists receipts per person)


class Channel(Protocol):
    @property
    def kind(self) -> str:
        """sms, voice, wecom, dingtalk, app, sounder, display, console."""
        ...

    @property
    def outside(self) -> bool:
        """True for channels that reach the real world outside the system (drills need permission)."""
        ...

    async def send(self, message: Message) -> str | None:
        """Send once; return the provider's reference, or raise DeliveryFailed."""
        ...
