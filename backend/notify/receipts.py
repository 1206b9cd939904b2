"""Delivery receipts: one row per (notice, channel), kept with the alarm records, and each stage change as a row.

How this works: the primary key of `notify_receipts` is (key, channel): a notice redelivered after a crash updates
its row instead of adding one, so the table answers "did this page reach this person, on which channel, after how
many attempts". Its `status` is the dispatcher's outcome (backend.notify.channel.DeliveryStatus); its `stage` is
how far the notice is known to have got on the person's side (issue 18):

    stage           from                                                           the timeline says
    sent            the provider took it (SMS, voice, webhook, app over MQTT)      已发送
    delivered       on the duty console; posted in the group (WeCom/DingTalk       已送达
                    errcode 0); an SMS status report saying it reached the phone
    read            the person opened the one-tap link it carried (`opened`)      已读
    answered        the voice platform's call report: picked up (按1确认 when the    已接听 / 已接听·按1确认
                    accept key was pressed)
    failed          retries spent or refused; a report that it never arrived       失败（原因）
    withheld_drill, rate_limited, no_channel: the dispatcher did not send it       未发送（原因）

A stage only moves forward along sent → delivered → read → answered (a late or repeated report changes nothing);
failed may follow any of them (an SMS the provider took and then could not deliver). Each change is a row of
`notify_receipt_events` (the timeline's source) written in the same transaction as the receipt, and returned so
its writer can publish it on the centre's stream (backend.stream.ReceiptRecorded) after the commit.
The constructor brings the tables to the newest revision of backend/notify/migrations (version table
`alembic_version_notify`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa

from backend.notify.channel import DeliveryStatus, Receipt
from backend.store.migrations import upgrade
from backend.stream import ReceiptRecorded

__all__ = ["REACHED", "GroupCommit", "ReceiptStage", "ReceiptStore", "StageChange", "metadata", "receipt_events", "receipts", "stage_of"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_notify"  # its own: other stores migrate the same database
T = TypeVar("T")
_IN_CHUNK: Final = 500  # keys per `IN (...)` when a batch reads its rows' stages (well under SQLite's 32,766 variables)


class ReceiptStage(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    ANSWERED = "answered"
    FAILED = "failed"
    WITHHELD_DRILL = "withheld_drill"
    RATE_LIMITED = "rate_limited"
    NO_CHANNEL = "no_channel"


REACHED: Final = frozenset({ReceiptStage.SENT, ReceiptStage.DELIVERED, ReceiptStage.READ, ReceiptStage.ANSWERED})  # got through
_RANK: Final = {ReceiptStage.SENT: 1, ReceiptStage.DELIVERED: 2, ReceiptStage.READ: 3, ReceiptStage.ANSWERED: 4}
# Channels whose own "ok" means the notice is there to be seen (the console's list, the group's chat), not just taken.
_THERE_ON_OK: Final = frozenset({"console", "wecom", "dingtalk"})

metadata = sa.MetaData()

receipts = sa.Table(
    "notify_receipts",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(20), primary_key=True),
    sa.Column("alarm_id", sa.String(64), nullable=False, index=True),
    sa.Column("contact", sa.String(96), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("provider_ref", sa.String(200)),
    sa.Column("error", sa.String(500)),
    sa.Column("drill", sa.Boolean, nullable=False, default=False),
    sa.Column("delayed_ms", sa.BigInteger, nullable=False, server_default="0"),  # held by the channel before it went out
    sa.Column("stage", sa.String(20), nullable=False, server_default=""),
    sa.Column("contact_name", sa.String(96), nullable=False, server_default=""),
    sa.Index("ix_notify_receipts_provider_ref", "channel", "provider_ref"),
)

receipt_events = sa.Table(
    "notify_receipt_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("alarm_id", sa.String(64), nullable=False, index=True),
    sa.Column("contact", sa.String(96), nullable=False),
    sa.Column("contact_name", sa.String(96), nullable=False, server_default=""),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.String(500), nullable=False, server_default=""),
    sa.Column("drill", sa.Boolean, nullable=False),
    sa.Index("ix_notify_receipt_events_key", "key", "channel"),
)


def stage_of(r: Receipt) -> ReceiptStage:
    """The stage a dispatcher's outcome stands for on the person's side."""
    if r.status is DeliveryStatus.DELIVERED:
        return ReceiptStage.DELIVERED if r.channel in _THERE_ON_OK else ReceiptStage.SENT
    return ReceiptStage(r.status.value)


def _moves(old: ReceiptStage | None, new: ReceiptStage) -> bool:
    """Whether `new` is news after `old`: forward along the reached stages; failed after anything but failed."""
    if old is None:
        return True
    if new in _RANK:
        return old not in _RANK or _RANK[new] > _RANK[old]
    return new is not old


@dataclass(frozen=True, slots=True)
class StageChange:
    """A notice's stage on one channel changed (a row of notify_receipt_events)."""

    key: str
    channel: str
    alarm_id: str
    contact: str
    contact_name: str
    stage: ReceiptStage
    at_ms: int
    detail: str
    drill: bool

    def event(self, channels: tuple[str, ...] = ()) -> ReceiptRecorded:
        return ReceiptRecorded(self.key, self.alarm_id, self.contact, self.channel, self.stage.value, self.at_ms, self.detail, self.drill,
                               self.contact_name, channels)


def _event_row(c: StageChange) -> dict[str, Any]:
    return {"key": c.key, "channel": c.channel, "alarm_id": c.alarm_id, "contact": c.contact, "contact_name": c.contact_name[:96],
            "stage": c.stage.value, "at_ms": c.at_ms, "detail": c.detail, "drill": c.drill}


def _receipt(r: Any) -> Receipt:
    return Receipt(r.key, r.alarm_id, r.contact, r.channel, DeliveryStatus(r.status), r.attempts, r.at_ms, r.provider_ref, r.error, r.drill,
                   r.delayed_ms, r.contact_name)


class GroupCommit(Generic[T]):
    """Writes asked for together go as one: `await group(items)` returns once `write` (one transaction, e.g. in a
    thread) has stored them, with whatever other callers asked for while the previous write was running.

    How this works: the caller that finds no write running leads: it takes everything queued, in order, writes
    it, wakes the callers whose items went with it, and hands the lead to the first caller still waiting, so no
    caller waits for more than the write running when it came plus its own. In a storm the notices delivered at
    once (the outbox's rounds) make one receipts transaction where they made one each, and the thread pool the
    alarm service commits through is not queued full of them (issue 19). If a write of several callers' items
    fails, each caller's items are written again alone, so one bad notice fails only its own caller, as before
    they were grouped. A leader cancelled while writing cancels the callers of its write (their items may or may
    not be stored) and hands on the lead."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._queue: list[tuple[Sequence[T], asyncio.Future[bool]]] = []
        self._leading = False
        self.writes = 0  # transactions made (for tests and logs)

    async def __call__(self, items: Sequence[T]) -> None:
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((items, mine))
        if self._leading:
            try:
                lead = await mine  # False: written with someone else's batch; True: the lead is handed to us
            except asyncio.CancelledError:
                if mine.done() and not mine.cancelled() and mine.result():
                    self._hand_on()  # cancelled just as the lead came: pass it on (our items go with the next write)
                raise
            if not lead:
                return
        self._leading = True
        batch, self._queue = self._queue, []
        try:
            errors = await self._write_batch(batch)
        except BaseException:  # cancelled while writing
            for _, f in batch:
                if f is not mine and not f.done():
                    f.cancel()
            raise
        finally:
            self._hand_on()
        mine_error: Exception | None = None
        for (_, f), error in zip(batch, errors, strict=True):
            if f is mine:
                mine_error = error
            elif not f.done():
                if error is None:
                    f.set_result(False)
                else:
                    f.set_exception(error)
        if mine_error is not None:
            raise mine_error

    async def _write_batch(self, batch: list[tuple[Sequence[T], asyncio.Future[bool]]]) -> list[Exception | None]:
        """Per caller of the batch, the error its items met (None: stored)."""
        try:
            self.writes += 1
            await self._write([x for its, _ in batch for x in its])
            return [None] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        errors: list[Exception | None] = []
        for its, _ in batch:  # one caller's bad items must not fail the others: each caller's alone
            try:
                self.writes += 1
                await self._write(list(its))
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors

    def _hand_on(self) -> None:
        waiting = next((f for _, f in self._queue if not f.done()), None)  # a caller cancelled meanwhile cannot lead
        if waiting is not None:
            waiting.set_result(True)
        else:
            self._queue.clear()  # only cancelled callers left: nobody waits for their items
            self._leading = False


class ReceiptStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    def record(self, r: Receipt) -> StageChange | None:
        """Store the dispatcher's outcome; the stage change it makes (None: the row already stood there or further)."""
        return self.record_many([r])[0]

    def record_many(self, rs: Sequence[Receipt]) -> list[StageChange | None]:
        """Store the dispatcher's outcomes, in order, in ONE transaction with their stage changes' rows (issue 19: a
        notice's console copy and the channels known without sending; the outcomes of notices delivered together);
        per outcome, the stage change it makes (None: the row already stood there or further)."""
        if not rs:
            return []
        c = receipts.c
        with self.engine.begin() as conn:
            stages: dict[tuple[str, str], str] = {}  # (key, channel) -> the stage its row has now ("" on rows from before stages)
            keys = sorted({r.key for r in rs})
            for i in range(0, len(keys), _IN_CHUNK):
                for row in conn.execute(sa.select(c.key, c.channel, c.stage).where(c.key.in_(keys[i:i + _IN_CHUNK]))):
                    stages[row.key, row.channel] = row.stage or ""
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []  # after the inserts: a second outcome of a row new in this batch updates it
            out: list[StageChange | None] = []
            for r in rs:
                stage, at = stage_of(r), (r.key, r.channel)
                old = stages.get(at)
                moved = _moves(ReceiptStage(old) if old else None, stage)
                values: dict[str, Any] = {
                    "alarm_id": r.alarm_id, "contact": r.contact, "status": r.status.value, "attempts": r.attempts, "at_ms": r.at_ms,
                    "provider_ref": r.provider_ref, "error": (r.error or "")[:500] or None, "drill": r.drill, "delayed_ms": r.delayed_ms,
                    "contact_name": r.contact_name[:96], "stage": stage.value if moved or old is None else old,
                }
                if old is None:
                    inserts.append({"key": r.key, "channel": r.channel, **values})
                else:  # a redelivery: a late report's further stage is kept
                    updates.append({"_key": r.key, "_channel": r.channel, **values})
                stages[at] = values["stage"]
                out.append(StageChange(r.key, r.channel, r.alarm_id, r.contact, r.contact_name, stage, r.at_ms, (r.error or "")[:500], r.drill)
                           if moved else None)
            if inserts:
                conn.execute(sa.insert(receipts), inserts)
            if updates:
                conn.execute(sa.update(receipts).where(c.key == sa.bindparam("_key"), c.channel == sa.bindparam("_channel")), updates)
            events = [_event_row(change) for change in out if change is not None]
            if events:
                conn.execute(sa.insert(receipt_events), events)
        return out

    def report(self, channel: str, ref: str, stage: ReceiptStage, at_ms: int, detail: str = "") -> StageChange | None:
        """A provider's later report on the notice it knows by `ref`; the change it makes (None: unknown, or no news)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(receipts).where(receipts.c.channel == channel, receipts.c.provider_ref == ref).limit(1)).first()
            return None if row is None else self._change(conn, row, stage, at_ms, detail)

    def opened(self, alarm_id: str, contact: str, at_ms: int, channels: tuple[str, ...] = ("sms", "app")) -> StageChange | None:
        """The person opened their one-tap link to the alarm: the newest notice that carried it (on `channels`, got through) is read."""
        c = receipts.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(receipts).where(c.alarm_id == alarm_id, c.contact == contact, c.channel.in_(channels),
                                                         c.stage.in_([s.value for s in REACHED])).order_by(c.at_ms.desc()).limit(1)).first()
            return None if row is None else self._change(conn, row, ReceiptStage.READ, at_ms, "opened the one-tap link")

    def _change(self, conn: sa.Connection, row: Any, stage: ReceiptStage, at_ms: int, detail: str) -> StageChange | None:
        if not _moves(ReceiptStage(row.stage) if row.stage else None, stage):
            return None
        conn.execute(sa.update(receipts).where(receipts.c.key == row.key, receipts.c.channel == row.channel).values(stage=stage.value))
        change = StageChange(row.key, row.channel, row.alarm_id, row.contact, row.contact_name, stage, at_ms, detail[:500], row.drill)
        self._append(conn, change)
        return change

    @staticmethod
    def _append(conn: sa.Connection, c: StageChange) -> None:
        conn.execute(sa.insert(receipt_events).values(**_event_row(c)))

    def changes_for(self, alarm_id: str) -> list[StageChange]:
        """Every stage change of the alarm's notices, oldest first (the timeline's receipt entries)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(receipt_events).where(receipt_events.c.alarm_id == alarm_id)
                                .order_by(receipt_events.c.at_ms, receipt_events.c.id))
            return [StageChange(r.key, r.channel, r.alarm_id, r.contact, r.contact_name, ReceiptStage(r.stage), r.at_ms, r.detail, r.drill)
                    for r in rows]

    def stages_of(self, key: str) -> dict[str, ReceiptStage]:
        """The notice's stage on each of its channels now."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(receipts.c.channel, receipts.c.stage).where(receipts.c.key == key))
            return {r.channel: ReceiptStage(r.stage) for r in rows if r.stage}

    def for_alarm(self, alarm_id: str) -> list[Receipt]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(receipts).where(receipts.c.alarm_id == alarm_id).order_by(receipts.c.at_ms, receipts.c.key))
            return [_receipt(r) for r in rows]

    def by_provider_ref(self, channel: str, ref: str) -> Receipt | None:
        """The receipt of the notice a provider knows by `ref` (a voice call's CallId, an SMS's BizId)."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(receipts).where(receipts.c.channel == channel, receipts.c.provider_ref == ref).limit(1)).first()
        return None if r is None else _receipt(r)
