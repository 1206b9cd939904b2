"""Delivery receipts: one row per (notice, channel).

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Baseline. Before migrations the table was made by `create_all` at start: a database that already has it (an
existing deployment) keeps it as it is, and this revision only stamps the version table for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("notify_receipts"):
        return
    op.create_table(
        "notify_receipts",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("alarm_id", sa.String(64), nullable=False),
        sa.Column("contact", sa.String(96), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("provider_ref", sa.String(200)),
        sa.Column("error", sa.String(500)),
        sa.Column("drill", sa.Boolean, nullable=False),
    )
    op.create_index("ix_notify_receipts_alarm_id", "notify_receipts", ["alarm_id"])


def downgrade() -> None:
    op.drop_table("notify_receipts")
