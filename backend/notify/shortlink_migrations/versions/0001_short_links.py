"""Short links of the one-tap answer links sent by SMS (issue 18).

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_short_links",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_notify_short_links_expires_ms", "notify_short_links", ["expires_ms"])


def downgrade() -> None:
    op.drop_table("notify_short_links")
