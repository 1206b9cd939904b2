"""The escalation store: escalations, their step log, the notice outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Baseline. Before migrations these tables were made by `create_all` at start: a database that already has a
table (an existing deployment) keeps it as it is, and this revision only stamps the version table for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "escalations" not in existing:
        op.create_table(
            "escalations",
            sa.Column("alarm_id", sa.String(64), primary_key=True),
            sa.Column("policy", sa.String(64), nullable=False),
            sa.Column("drill", sa.Boolean, nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("due_ms", sa.BigInteger),
            sa.Column("stopped", sa.Boolean, nullable=False),
            sa.Column("state", sa.Text, nullable=False),
            sa.Column("started_ms", sa.BigInteger, nullable=False),
            sa.Column("updated_ms", sa.BigInteger, nullable=False),
        )
        op.create_index("ix_escalations_due", "escalations", ["due_ms"])
    if "escalation_log" not in existing:
        op.create_table(
            "escalation_log",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
            sa.Column("alarm_id", sa.String(64), nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("n", sa.Integer, nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("rung", sa.String(64)),
            sa.Column("field_state", sa.String(32)),
            sa.Column("contact", sa.String(96)),
            sa.Column("detail", sa.String(500), nullable=False),
            sa.Column("at_ms", sa.BigInteger, nullable=False),
            sa.Column("due_ms", sa.BigInteger),
            sa.Column("drill", sa.Boolean, nullable=False),
            sa.Column("worker", sa.String(64), nullable=False),
            sa.UniqueConstraint("alarm_id", "step", "n", name="ux_escalation_log_step"),
        )
        op.create_index("ix_escalation_log_kind", "escalation_log", ["kind", "rung"])
    if "notify_outbox" not in existing:
        op.create_table(
            "notify_outbox",
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("alarm_id", sa.String(64), nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("message", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created_ms", sa.BigInteger, nullable=False),
            sa.Column("lease_until_ms", sa.BigInteger),
            sa.Column("claimed_by", sa.String(64)),
            sa.Column("deliveries", sa.Integer, nullable=False),
        )
        op.create_index("ix_notify_outbox_status", "notify_outbox", ["status", "created_ms"])


def downgrade() -> None:
    for table in ("notify_outbox", "escalation_log", "escalations"):
        op.drop_table(table)
