"""Receipts record how long a channel's own limit held a notice before it went out (issue 15).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Rows written before this revision read 0 (not held, or not measured).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "delayed_ms" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("notify_receipts")}:
        op.add_column("notify_receipts", sa.Column("delayed_ms", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("notify_receipts", "delayed_ms")
