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

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from backend.notify.channel import DeliveryStatus, Receipt
from backend.store.migrations import upgrade
from backend.stream import ReceiptRecorded

__all__ = ["REACHED", "ReceiptStage", "ReceiptStore", "StageChange", "metadata", "receipt_events", "receipts", "stage_of"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_notify"  # its own: other stores migrate the same database


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


def _receipt(r: Any) -> Receipt:
    return Receipt(r.key, r.alarm_id, r.contact, r.channel, DeliveryStatus(r.status), r.attempts, r.at_ms, r.provider_ref, r.error, r.drill,
                   r.delayed_ms, r.contact_name)


class ReceiptStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    def record(self, r: Receipt) -> StageChange | None:
        """Store the dispatcher's outcome; the stage change it makes (None: the row already stood there or further)."""
        stage = stage_of(r)
        values: dict[str, Any] = {
            "alarm_id": r.alarm_id, "contact": r.contact, "status": r.status.value, "attempts": r.attempts, "at_ms": r.at_ms,
            "provider_ref": r.provider_ref, "error": (r.error or "")[:500] or None, "drill": r.drill, "delayed_ms": r.delayed_ms,
            "contact_name": r.contact_name[:96],
        }
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(receipts.c.stage).where(receipts.c.key == r.key, receipts.c.channel == r.channel)).scalar_one_or_none()
            before = ReceiptStage(old) if old else None
            moved = _moves(before, stage)
            if old is None:
                conn.execute(sa.insert(receipts).values(key=r.key, channel=r.channel, stage=stage.value, **values))
            else:  # a redelivery: a late report's further stage is kept
                conn.execute(sa.update(receipts).where(receipts.c.key == r.key, receipts.c.channel == r.channel)
                             .values(**values, **({"stage": stage.value} if moved else {})))
            if not moved:
                return None
            change = StageChange(r.key, r.channel, r.alarm_id, r.contact, r.contact_name, stage, r.at_ms, (r.error or "")[:500], r.drill)
            self._append(conn, change)
        return change

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
        conn.execute(sa.insert(receipt_events).values(key=c.key, channel=c.channel, alarm_id=c.alarm_id, contact=c.contact,
                                                      contact_name=c.contact_name[:96], stage=c.stage.value, at_ms=c.at_ms, detail=c.detail,
                                                      drill=c.drill))

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
