"""The console's acts: verifications, dispatches, answers given on a responder's behalf.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Baseline. Before migrations the table was made by `create_all` on first use: a database that already has
it (an existing deployment) keeps it as it is, and this revision only stamps the version table for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("console_acts"):
        return
    op.create_table(
        "console_acts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("act", sa.String(32), nullable=False),
        sa.Column("on_behalf_of", sa.String(96)),
        sa.Column("target", sa.String(96)),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
    )
    op.create_index("ix_console_acts_alarm_id", "console_acts", ["alarm_id"])


def downgrade() -> None:
    op.drop_table("console_acts")
