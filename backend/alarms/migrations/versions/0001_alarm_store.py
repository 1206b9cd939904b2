"""The alarm store: alarms, audit log, device records, rule state.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

A database made by the first thin slice already has an `alarms` table of another shape (no lifecycle, no
audit): it is renamed to `alarms_legacy_v0` and kept, not dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    if insp.has_table("alarms") and "subject" not in {c["name"] for c in insp.get_columns("alarms")}:
        op.rename_table("alarms", "alarms_legacy_v0")
    op.create_table(
        "alarms",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("alarm_type", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("life_safety", sa.Boolean, nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("device_id", sa.String(64)),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("building_id", sa.String(64)),
        sa.Column("unit", sa.Integer),
        sa.Column("household_id", sa.String(64)),
        sa.Column("grid_id", sa.String(64)),
        sa.Column("community_id", sa.String(64)),
        sa.Column("drill", sa.Boolean, nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("raised_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.Column("needs_callback", sa.Boolean, nullable=False),
        sa.Column("flapping", sa.Boolean, nullable=False),
        sa.Column("recent_changes", sa.String(200), nullable=False),
        sa.Column("silenced_until_ms", sa.BigInteger),
        sa.Column("silenced_by", sa.String(64)),
        sa.Column("cause", sa.String(300)),
        sa.Column("cause_closed_ms", sa.BigInteger),
        sa.Column("detail", sa.String(500)),
        sa.Column("source_msg_id", sa.String(96)),
        sa.Column("is_open", sa.Boolean, nullable=False),
    )
    op.create_index("ux_alarm_open_key", "alarms", ["key"], unique=True, sqlite_where=sa.text("is_open"),
                    postgresql_where=sa.text("is_open"))
    op.create_index("ix_alarm_raised", "alarms", ["raised_at_ms"])
    op.create_index("ix_alarm_updated", "alarms", ["updated_ms"])
    op.create_table(
        "alarm_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("move", sa.String(30), nullable=False),
        sa.Column("from_state", sa.String(30)),
        sa.Column("to_state", sa.String(30), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
        sa.UniqueConstraint("alarm_id", "seq", name="ux_audit_alarm_seq"),
    )
    op.create_index("ix_audit_at", "alarm_audit", ["at_ms"])
    op.create_table(
        "device_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
        sa.Column("detail", sa.String(500)),
    )
    op.create_index("ix_device_records_at", "device_records", ["at_ms"])
    op.create_table(
        "rule_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("rule_state", "device_records", "alarm_audit", "alarms"):
        op.drop_table(table)
