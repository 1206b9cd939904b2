"""Duty: roster overrides, shifts officers log in to, handovers, and the duty audit (issue 17).

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
        "duty_overrides",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("responder", sa.String(64)),
        sa.Column("substitute", sa.String(64)),
        sa.Column("seat", sa.String(32)),
        sa.Column("scope", sa.String(64)),
        sa.Column("community", sa.String(64)),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("cancelled_ms", sa.BigInteger),
        sa.Column("cancelled_by", sa.String(64)),
        sa.Column("cancel_reason", sa.String(500)),
    )
    op.create_table(
        "duty_shifts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("ended_ms", sa.BigInteger),
    )
    op.create_table(
        "duty_handovers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("written_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("snapshot", sa.Text, nullable=False),
        sa.Column("accepted_by", sa.String(64)),
        sa.Column("accepted_ms", sa.BigInteger),
        sa.Column("objections", sa.Text),
    )
    op.create_table(
        "duty_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("area", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("community", sa.String(64)),
        sa.Column("detail", sa.String(1000), nullable=False),
    )


def downgrade() -> None:
    for table in ("duty_audit", "duty_handovers", "duty_shifts", "duty_overrides"):
        op.drop_table(table)
