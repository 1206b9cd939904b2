"""The 119 hand-off store: one forward per alarm, and every attempt on every channel.

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
        "forwards_119",
        sa.Column("forward_id", sa.String(80), primary_key=True),
        sa.Column("alarm_id", sa.String(64), nullable=False),
        sa.Column("alarm_type", sa.String(64), nullable=False),
        sa.Column("how", sa.String(16), nullable=False),
        sa.Column("verifier", sa.String(96)),
        sa.Column("verified_ms", sa.BigInteger, nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16)),
        sa.Column("receipt", sa.String(128)),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("building_id", sa.String(64)),
        sa.Column("grid_id", sa.String(64)),
        sa.Column("community_id", sa.String(64)),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("next_try_ms", sa.BigInteger),
        sa.Column("receipted_ms", sa.BigInteger),
        sa.Column("lease_until_ms", sa.BigInteger),
        sa.Column("claimed_by", sa.String(64)),
        sa.UniqueConstraint("alarm_id", name="ux_forwards_119_alarm"),
    )
    op.create_index("ix_forwards_119_due", "forwards_119", ["status", "next_try_ms"])
    op.create_table(
        "forward_119_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("forward_id", sa.String(80), nullable=False),
        sa.Column("alarm_id", sa.String(64), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("took_ms", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("receipt", sa.String(128)),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
    )
    op.create_index("ix_forward_119_attempts_alarm", "forward_119_attempts", ["alarm_id"])


def downgrade() -> None:
    op.drop_table("forward_119_attempts")
    op.drop_table("forwards_119")
