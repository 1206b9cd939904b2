"""Delivery receipts: one row per (notice, channel), kept with the alarm records.

The primary key is (key, channel): a notice redelivered after a crash updates its row instead of adding one,
so the table answers "did this page reach this person, on which channel, after how many attempts".
The constructor brings the table to the newest revision of backend/notify/migrations (version table
`alembic_version_notify`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.notify.channel import DeliveryStatus, Receipt
from backend.store.migrations import upgrade

__all__ = ["ReceiptStore", "metadata", "receipts"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_notify"  # its own: other stores migrate the same database

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
)


class ReceiptStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    def record(self, r: Receipt) -> None:
        values: dict[str, Any] = {
            "alarm_id": r.alarm_id, "contact": r.contact, "status": r.status.value, "attempts": r.attempts, "at_ms": r.at_ms,
            "provider_ref": r.provider_ref, "error": (r.error or "")[:500] or None, "drill": r.drill, "delayed_ms": r.delayed_ms,
        }
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(receipts).where(receipts.c.key == r.key, receipts.c.channel == r.channel).values(**values))
            if done.rowcount == 0:
                conn.execute(sa.insert(receipts).values(key=r.key, channel=r.channel, **values))

    def for_alarm(self, alarm_id: str) -> list[Receipt]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(receipts).where(receipts.c.alarm_id == alarm_id).order_by(receipts.c.at_ms, receipts.c.key))
            return [Receipt(r.key, r.alarm_id, r.contact, r.channel, DeliveryStatus(r.status), r.attempts, r.at_ms, r.provider_ref, r.error, r.drill,
                            r.delayed_ms) for r in rows]

    def by_provider_ref(self, channel: str, ref: str) -> Receipt | None:
        """The receipt of the notice a provider knows by `ref` (a voice call's CallId, an SMS's BizId)."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(receipts).where(receipts.c.channel == channel, receipts.c.provider_ref == ref).limit(1)).first()
        if r is None:
            return None
        return Receipt(r.key, r.alarm_id, r.contact, r.channel, DeliveryStatus(r.status), r.attempts, r.at_ms, r.provider_ref, r.error, r.drill,
                       r.delayed_ms)
