"""One-tap moves already made, and the login audit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

`one_tap_moves`: each answer a responder made through a one-tap link (issue 22), one row per (alarm, person,
move), numbered per (alarm, person) so two requests racing for the same next move cannot both win. A restart
keeps them, so a replayed link stays refused.

`login_audit`: every password check (who, from which address, when, the outcome) and the refusals of a
throttled login, at most one row a minute per account or address, with how many refusals it stands for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "one_tap_moves",
        sa.Column("alarm_id", sa.String(100), primary_key=True),
        sa.Column("contact_id", sa.String(100), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("move", sa.String(20), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("alarm_id", "contact_id", "move", name="uq_one_tap_moves_once"),
    )
    op.create_table(
        "login_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("refused", sa.Integer, nullable=False),
        sa.Column("retry_after_s", sa.Integer),
    )
    op.create_index("ix_login_audit_at_ms", "login_audit", ["at_ms"])


def downgrade() -> None:
    op.drop_index("ix_login_audit_at_ms", "login_audit")
    op.drop_table("login_audit")
    op.drop_table("one_tap_moves")
