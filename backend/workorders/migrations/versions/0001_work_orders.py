"""Work orders (隐患整改): orders, their audit log and their photos (backend/workorders).

Revision ID: 0001_work_orders
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_work_orders"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "work_orders",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("building_id", sa.String(64)),
        sa.Column("grid_id", sa.String(64)),
        sa.Column("community_id", sa.String(64)),
        sa.Column("device_id", sa.String(64)),
        sa.Column("alarm_id", sa.String(64)),
        sa.Column("alarm_type", sa.String(64)),
        sa.Column("drill", sa.Boolean, nullable=False),
        sa.Column("assignee_id", sa.String(64)),
        sa.Column("assignee_name", sa.String(64)),
        sa.Column("assignee_role", sa.String(32)),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("due_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("escalated_for_due_ms", sa.BigInteger),
        sa.Column("escalated_ms", sa.BigInteger),
        sa.Column("escalated_to", sa.String(500)),
    )
    op.create_index("ix_work_orders_state", "work_orders", ["state", "due_ms"])
    op.create_index("ix_work_orders_alarm", "work_orders", ["alarm_id"])
    op.create_table(
        "work_order_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_state", sa.String(20)),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("assignee_id", sa.String(64)),
        sa.Column("due_ms", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
    )
    op.create_index("ix_work_order_audit_order", "work_order_audit", ["order_id"])
    op.create_table(
        "work_order_photos",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(20), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("file_name", sa.String(200), nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        sa.Column("uploaded_ms", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("caption", sa.String(200), nullable=False),
    )
    op.create_index("ix_work_order_photos_order", "work_order_photos", ["order_id"])


def downgrade() -> None:
    op.drop_table("work_order_photos")
    op.drop_table("work_order_audit")
    op.drop_table("work_orders")
