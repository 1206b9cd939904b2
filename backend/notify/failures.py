"""A person no channel reached: a `notice_failed` alarm of its own on the console, closed by the next notice that gets through.

How this works: `NoticeFailures` listens to the centre's stream for the receipts' stage changes
(backend.stream.ReceiptRecorded, published by the dispatcher and by the providers' later reports). When a notice's
channel fails, it reads that notice's stage on each of its channels (the receipts table): once every channel the
notice went on (besides the duty console's copy) has failed or is not configured here, and at least one really
failed (after the dispatcher's retries), the person was not reached, and it signals RAISE through the alarm
service, the only writer of alarm state:

    alarm type   notice_failed           subject   contact:<person id>      severity   major, not life safety
    place        the paged alarm's       title     通知未送达：<name>（<the paged alarm's title>）
    drill        as the notice (a drill notice that fails raises a drill alarm, never a real one)

One alarm per person (and drill mark): a second failed notice to the same person counts as an occurrence of the
open one. Any later stage that got through to that person (sent, delivered, read, answered on a channel besides
the console) signals CLEAR, which resolves it. The ladder policy `notice_failed` (alerting/policies/ladder.yaml)
shows it on the duty console only, so the alarm about an unreachable person never pages that person.

A notice whose channels are still on their way is not judged until the last one lands; a later report (an SMS
the provider took and then could not deliver, a call nobody answered) is judged against the stages then stored.
The people with an open `notice_failed` alarm are read from the alarm store on entry, so a restart still closes them.
In a cluster this runs with the rules seat and hears the receipts of its own process only (docs/notify.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Protocol, Self

from alerting.model import Action, Alarm, Place, Severity, Signal, SignalKind
from backend.i18n import render
from backend.notify.receipts import REACHED, ReceiptStage, ReceiptStore
from backend.stream import CentreStream, Event, ReceiptRecorded

__all__ = ["NOTICE_FAILED", "NoticeFailures"]

log = logging.getLogger(__name__)

NOTICE_FAILED: Final = "notice_failed"
_NOT_REACHED: Final = frozenset({ReceiptStage.FAILED, ReceiptStage.NO_CHANNEL})
_SUBJECT: Final = "contact:"
_JUDGED_KEEP: Final = 10_000  # notices already judged, remembered so their last two channels failing together raise once


class AlarmBook(Protocol):
    def get(self, alarm_id: str) -> Alarm | None: ...
    def open_alarms(self) -> list[Alarm]: ...


class AlarmSignals(Protocol):
    @property
    def store(self) -> AlarmBook: ...

    async def signal(self, sig: Signal, now_ms: int | None = None) -> Sequence[Action]: ...


class NoticeFailures:
    def __init__(self, alarms: AlarmSignals, receipts: ReceiptStore, stream: CentreStream) -> None:
        self.alarms = alarms
        self.receipts = receipts
        self.stream = stream
        self._failing: set[tuple[str, bool]] = set()  # (person id, drill) with an open notice_failed alarm
        self._judged: dict[str, None] = {}  # notice keys already raised for (insertion-ordered, bounded)
        self._judging = asyncio.Lock()

    async def __aenter__(self) -> Self:
        for a in await asyncio.to_thread(self.alarms.store.open_alarms):
            if a.key.alarm_type == NOTICE_FAILED and a.key.subject.startswith(_SUBJECT):
                self._failing.add((a.key.subject.removeprefix(_SUBJECT), a.key.drill))
        self.stream.subscribe(self.heard, name="notice-failures")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stream.unsubscribe(self.heard)

    async def heard(self, events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, ReceiptRecorded) and e.channel != "console":
                await self._receipt(e)

    async def _receipt(self, e: ReceiptRecorded) -> None:
        stage = ReceiptStage(e.status)
        who = (e.contact, e.drill)
        if stage in REACHED:
            if who in self._failing:
                self._failing.discard(who)
                await self.alarms.signal(Signal(SignalKind.CLEAR, NOTICE_FAILED, _SUBJECT + e.contact, e.at_ms, drill=e.drill,
                                                detail=f"a later notice reached {e.contact}: {e.channel} {stage.value}"))
            return
        if stage is not ReceiptStage.FAILED:
            return
        # One judgment at a time: two channels of one notice failing together (their deliveries run as tasks of their
        # own) must raise once; the later one reads the stages after the earlier one's judgment.
        async with self._judging:
            if e.key in self._judged:
                return
            stages = await asyncio.to_thread(self.receipts.stages_of, e.key)
            stages.pop("console", None)
            wanted = e.channels or tuple(stages)
            if any(k not in stages for k in wanted) or not all(stages[k] in _NOT_REACHED for k in wanted):
                return  # a channel is still on its way, or one got through
            self._judged[e.key] = None
            while len(self._judged) > _JUDGED_KEEP:
                del self._judged[next(iter(self._judged))]
        await self._raise(e, [k for k in wanted if stages[k] is ReceiptStage.FAILED])  # outside the lock: it commits an alarm

    async def _raise(self, e: ReceiptRecorded, failed: list[str]) -> None:
        paged = await asyncio.to_thread(self.alarms.store.get, e.alarm_id)
        name = e.contact_name or e.contact
        what = paged.title if paged is not None else e.alarm_id
        where = paged.place if paged is not None else Place()
        channels = "、".join(render(f"channel.{k}") for k in failed)
        sig = Signal(SignalKind.RAISE, NOTICE_FAILED, _SUBJECT + e.contact, e.at_ms, Severity.MAJOR, life_safety=False, drill=e.drill,
                     title=f"通知未送达：{name}（{what}）",
                     place=Place(building=where.building, unit=where.unit, household=where.household),
                     detail=f"{name}（{e.contact}）的通知在所有渠道均未送达（{channels}）。{render(f'channel.{e.channel}')}："
                            f"{e.detail.removeprefix(f'{e.channel}: ') or '原因未知'}；请电话联系本人。")
        self._failing.add((e.contact, e.drill))
        log.warning("notice %s reached %s on no channel (%s): raising %s", e.key, e.contact, ", ".join(failed), NOTICE_FAILED)
        await self.alarms.signal(sig)
