"""Receipt stages (issue 18): each receipt's furthest stage, the person's name, and every stage change as a row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

`notify_receipts` gains `stage` (sent, delivered, read, answered, failed, ...: what the person's side is known to
have got) and `contact_name`; rows written before read their stage from their status (delivered: sent on the
outside channels, delivered on the console and the group robots). `notify_receipt_events` keeps each stage change
with its time and reason, for the alarm's timeline. The index on (channel, provider_ref) finds the receipt a
provider's later report names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns("notify_receipts")}
    if "stage" not in columns:
        op.add_column("notify_receipts", sa.Column("stage", sa.String(20), nullable=False, server_default=""))
        receipts = sa.table("notify_receipts", sa.column("status", sa.String), sa.column("channel", sa.String), sa.column("stage", sa.String))
        op.execute(sa.update(receipts).values(stage=sa.case(
            (sa.and_(receipts.c.status == "delivered", receipts.c.channel.in_(["console", "wecom", "dingtalk"])), "delivered"),
            (receipts.c.status == "delivered", "sent"), else_=receipts.c.status)))
    if "contact_name" not in columns:
        op.add_column("notify_receipts", sa.Column("contact_name", sa.String(96), nullable=False, server_default=""))
    if "ix_notify_receipts_provider_ref" not in {i["name"] for i in inspector.get_indexes("notify_receipts")}:
        op.create_index("ix_notify_receipts_provider_ref", "notify_receipts", ["channel", "provider_ref"])
    if not inspector.has_table("notify_receipt_events"):
        op.create_table(
            "notify_receipt_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("key", sa.String(200), nullable=False),
            sa.Column("channel", sa.String(20), nullable=False),
            sa.Column("alarm_id", sa.String(64), nullable=False),
            sa.Column("contact", sa.String(96), nullable=False),
            sa.Column("contact_name", sa.String(96), nullable=False, server_default=""),
            sa.Column("stage", sa.String(20), nullable=False),
            sa.Column("at_ms", sa.BigInteger, nullable=False),
            sa.Column("detail", sa.String(500), nullable=False, server_default=""),
            sa.Column("drill", sa.Boolean, nullable=False),
        )
        op.create_index("ix_notify_receipt_events_alarm_id", "notify_receipt_events", ["alarm_id"])
        op.create_index("ix_notify_receipt_events_key", "notify_receipt_events", ["key", "channel"])


def downgrade() -> None:
    op.drop_table("notify_receipt_events")
    op.drop_index("ix_notify_receipts_provider_ref", "notify_receipts")
    op.drop_column("notify_receipts", "contact_name")
    op.drop_column("notify_receipts", "stage")
