"""The notice outbox is claimed in priority order: real life safety first, drills last.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

A smoke alarm's page queued behind hundreds of device-lost notices went out seconds late (issue 15). Rows
written before this revision get the middle priority (a real notice that is not life safety).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "priority" not in {c["name"] for c in inspector.get_columns("notify_outbox")}:
        op.add_column("notify_outbox", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="1"))
    if "ix_notify_outbox_claim" not in {i["name"] for i in inspector.get_indexes("notify_outbox")}:
        op.create_index("ix_notify_outbox_claim", "notify_outbox", ["status", "priority", "created_ms"])


def downgrade() -> None:
    op.drop_index("ix_notify_outbox_claim", "notify_outbox")
    op.drop_column("notify_outbox", "priority")
