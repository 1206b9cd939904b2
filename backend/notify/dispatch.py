"""The dispatcher: one message, every channel its rung asks for, with retries, the drill gate and limits.

How this works: `deliver(message)` first gives the message to the console (always: the duty room sees every
page), then sends it on each requested channel concurrently. For each channel:
- not configured here              -> NO_CHANNEL receipt (the console copy still stands);
- outside, drill without permission -> WITHHELD_DRILL (a real alarm is never withheld: it is not a drill);
- over the contact's rate limit     -> RATE_LIMITED, folded into one storm summary when the window ends
  (drill and real notices have separate limits; a real life-safety notice is never held, see ratelimit.py);
- otherwise send, retrying transient failures with exponential back-off through the injected `sleep`
  (tests pass a virtual sleeper, so no test waits), then DELIVERED or FAILED. A channel that answers with its
  own hard limit (HTTP 429) is shut for every notice until its back-off has passed; when it opens, a real
  life-safety notice goes first (the others wait `retry.base_s` longer), and how long each notice was held is
  recorded on its receipt (`delayed_ms`).
Every outcome is a `Receipt` handed to `record_many` (the receipts table, backend.notify.receipts; one transaction for
the console copy and the outcomes known without sending, and for the receipts of notices delivered at the same time,
backend.notify.receipts.GroupCommit; `record` one by one when no `record_many` is given) and then published on
the centre's stream as a `ReceiptRecorded` with its stage (sent / delivered / failed ..., `receipts.stage_of`), the
person's name and the notice's channels, so the console's open alarm shows who got the page and the failure
watch (backend.notify.failures) can tell a person no channel reached. A provider's later report (a call answered,
an SMS on the phone) is a further stage, recorded and published by backend.notify.reports.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from alerting.ladder import CONSOLE
from backend.notify.channel import Channel, DeliveryFailed, DeliveryStatus, Message, Receipt
from backend.notify.console import ConsoleChannel
from backend.notify.ratelimit import RateLimiter, Storm
from backend.notify.receipts import GroupCommit, stage_of
from backend.notify.templates import storm_text
from backend.stream import CentreStream, ReceiptRecorded
from broker.clock import Clock

__all__ = ["Dispatcher", "RetryPolicy"]

Sleep = Callable[[float], Awaitable[None]]
_CHANNEL_LIMIT = 429  # the provider's own rate limit (Too Many Requests)
Record = Callable[[Receipt], Awaitable[None]]
RecordMany = Callable[[list[Receipt]], Awaitable[None]]  # many receipts, one transaction (ReceiptStore.record_many)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6  # first try + 5 retries
    base_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Wait before attempt number `attempt + 1` (attempt counts from 1)."""
        return float(min(self.max_s, self.base_s * self.factor ** (attempt - 1)))


async def _no_record(_: Receipt) -> None:
    return None


class Dispatcher:
    def __init__(
        self, channels: Mapping[str, Channel], console: CentreStream, clock: Clock, *, sleep: Sleep = asyncio.sleep,
        retry: RetryPolicy | None = None, limiter: RateLimiter | None = None, record: Record = _no_record, record_many: RecordMany | None = None,
    ) -> None:
        self.channels = dict(channels)
        self.console = console
        self.console_channel = ConsoleChannel(console)
        self.clock = clock
        self.sleep = sleep
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self.record = record
        # Receipts recorded together (issue 19): `record_many` stores a list in one transaction; the receipts of
        # notices delivered at once go as one write. Without it, `record` stores them one by one.
        self._record_group: GroupCommit[Receipt] = GroupCommit(record_many if record_many is not None else self._record_each)
        self._shut_until: dict[str, int] = {}  # channel kind -> when its own hard limit (HTTP 429) opens again
        self._contacts: dict[tuple[str, bool], Message] = {}  # last message per (contact, drill), to address storm summaries

    async def deliver(self, message: Message) -> list[Receipt]:
        await self.flush_storms()
        kinds = [k for k in dict.fromkeys(message.channels) if k != "console"]
        allowed = not kinds or message.contact.id == CONSOLE.id or self.limiter is None or self.limiter.allow(
            message.contact.id, self.clock.now_ms(), alarm_id=message.alarm_id, drill=message.drill, life_safety=message.life_safety)
        if kinds:
            self._contacts[message.contact.id, message.drill] = message
        return await self._deliver(message, kinds, allowed)

    async def _deliver(self, message: Message, kinds: list[str], allowed: bool) -> list[Receipt]:
        """The console copy, then every channel. The console's receipt and those known without sending (no channel,
        drill withheld, rate limited) are recorded together, one transaction, and published after it in that
        order; each channel that sends is recorded and published as it lands (issue 19)."""
        await self.console_channel.send(message)
        on = tuple(kinds)
        now: list[Receipt] = [self._receipt(message, "console", DeliveryStatus.DELIVERED, 1)]
        by_kind: dict[str, Receipt] = {}
        for k in kinds:
            r = self._unsent(message, k, allowed)
            if r is not None:
                now.append(r)
                by_kind[k] = r
        await self._recorded(now, on)
        sending = [k for k in kinds if k not in by_kind]
        if sending:
            async with asyncio.TaskGroup() as tg:
                tasks = {k: tg.create_task(self._one(message, k, on), name=f"notify-{k}-{message.key}") for k in sending}
            by_kind |= {k: t.result() for k, t in tasks.items()}
        return [now[0], *(by_kind[k] for k in kinds)]

    def _receipt(self, message: Message, kind: str, status: DeliveryStatus, attempts: int = 0, *, ref: str | None = None, error: str | None = None,
                 delayed_ms: int = 0) -> Receipt:
        return Receipt(message.key, message.alarm_id, message.contact.id, kind, status, attempts, self.clock.now_ms(), ref, error, message.drill,
                       delayed_ms, message.contact.name)

    def _unsent(self, message: Message, kind: str, allowed: bool) -> Receipt | None:
        """The outcome known without any I/O: a channel not configured here, withheld from a drill, or rate limited."""
        channel = self.channels.get(kind)
        if channel is None:
            return self._receipt(message, kind, DeliveryStatus.NO_CHANNEL, error=f"no {kind} channel configured")
        if channel.outside and not message.outside_allowed:
            return self._receipt(message, kind, DeliveryStatus.WITHHELD_DRILL, error="drill: outside channels not requested")
        if not allowed:
            return self._receipt(message, kind, DeliveryStatus.RATE_LIMITED, error="rate limit: folded into a storm summary")
        return None

    async def _recorded(self, rs: list[Receipt], channels: tuple[str, ...]) -> None:
        """Record the receipts (one transaction), then tell the stream of them, in order (after the commit, as every
        writer on the stream does). The console's copy is published with no channels, as it always was."""
        await self._record_group(rs)
        await self.console.publish([ReceiptRecorded(r.key, r.alarm_id, r.contact, r.channel, stage_of(r).value, r.at_ms, (r.error or "")[:500],
                                                    r.drill, r.contact_name, () if r.channel == "console" else channels) for r in rs])

    async def _record_each(self, rs: Sequence[Receipt]) -> None:
        for r in rs:
            await self.record(r)

    async def _one(self, message: Message, kind: str, channels: tuple[str, ...]) -> Receipt:
        channel = self.channels[kind]
        r = await self._send(channel, message, functools.partial(self._receipt, message, kind))
        await self._recorded([r], channels)
        return r

    async def _send(self, channel: Channel, message: Message, receipt: Callable[..., Receipt]) -> Receipt:
        first_ms = self.clock.now_ms()
        attempt = 0
        while True:
            await self._window(channel.kind, message)
            attempt += 1
            try:
                ref = await channel.send(message)
            except DeliveryFailed as exc:
                if exc.status == _CHANNEL_LIMIT:  # the channel's own hard limit: it is shut for everyone until the window opens
                    until = self.clock.now_ms() + round(self.retry.delay(attempt) * 1000)
                    self._shut_until[channel.kind] = max(self._shut_until.get(channel.kind, 0), until)
                if not exc.transient or attempt >= self.retry.attempts:
                    return receipt(DeliveryStatus.FAILED, attempt, error=str(exc), delayed_ms=self.clock.now_ms() - first_ms)
                if exc.status != _CHANNEL_LIMIT:
                    await self.sleep(self.retry.delay(attempt))
                continue
            return receipt(DeliveryStatus.DELIVERED, attempt, ref=ref, delayed_ms=self.clock.now_ms() - first_ms)

    async def _window(self, kind: str, message: Message) -> None:
        """Wait while the channel's own limit keeps it shut. A real life-safety notice goes as soon as it opens;
        every other notice waits `retry.base_s` longer, so the fire page is the first through."""
        until = self._shut_until.get(kind)
        if until is None:
            return
        wait_ms = until - self.clock.now_ms()
        if not (message.life_safety and not message.drill):
            wait_ms += round(self.retry.base_s * 1000)
        if wait_ms > 0:
            await self.sleep(wait_ms / 1000)

    async def flush_storms(self) -> list[Receipt]:
        """Send the storm summaries whose window has ended (the service also calls this on a timer)."""
        if self.limiter is None:
            return []
        out: list[Receipt] = []
        for storm in self.limiter.due_summaries(self.clock.now_ms()):
            out += await self._summary(storm)
        return out

    async def _summary(self, storm: Storm) -> list[Receipt]:
        last = self._contacts.get((storm.contact, storm.drill_only))
        if last is None:
            return []
        text = storm_text(count=storm.held, window_s=self.limiter.window_ms / 1000 if self.limiter else 60, drill=storm.drill_only)
        key = f"storm/{storm.contact}/{storm.window_start_ms}" + ("/drill" if storm.drill_only else "")
        summary = Message(
            key=key, alarm_id=storm.alarms[0] if storm.alarms else last.alarm_id,
            contact=last.contact, channels=last.channels, text=text, title="报警风暴汇总", drill=storm.drill_only,
            outside_allowed=last.outside_allowed or not storm.drill_only, reason="storm", rung=last.rung, severity=last.severity,
            created_ms=self.clock.now_ms(),
        )
        return await self._deliver(summary, [k for k in dict.fromkeys(summary.channels) if k != "console"], allowed=True)
