"""Maintenance windows as records: the windows and their audit log (backend/alarms/maintenance.py).

Revision ID: 0002_maintenance
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_maintenance"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("building_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64)),
        sa.Column("device_kind", sa.String(20)),
        sa.Column("grid_id", sa.String(64)),
        sa.Column("community_id", sa.String(64)),
        sa.Column("starts_ms", sa.BigInteger, nullable=False),
        sa.Column("ends_ms", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("life_safety_override", sa.Boolean, nullable=False),
        sa.Column("override_reason", sa.String(500)),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("end_notice_ms", sa.BigInteger),
        sa.Column("ended_ms", sa.BigInteger),
        sa.Column("ended_by", sa.String(64)),
        sa.Column("end_reason", sa.String(500)),
    )
    op.create_index("ix_maintenance_open", "maintenance_windows", ["ended_ms"])
    op.create_table(
        "maintenance_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("window_id", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("starts_ms", sa.BigInteger, nullable=False),
        sa.Column("ends_ms", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    op.create_index("ix_maintenance_audit_window", "maintenance_audit", ["window_id"])


def downgrade() -> None:
    op.drop_table("maintenance_audit")
    op.drop_table("maintenance_windows")
