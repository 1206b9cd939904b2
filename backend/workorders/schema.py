"""The work-order tables (hazard rectification, 隐患整改) in the alarm database; migrations in ./migrations.

    work_orders         one row per order: its place, severity, state, assignee, due time, escalation
    work_order_audit    every move, photo and escalation: who, when, what, from which state to which, note
    work_order_photos   every photo: its checksum, type, size and file (under the data folder)
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata", "work_order_audit", "work_order_photos", "work_orders"]

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

work_orders = sa.Table(
    "work_orders",
    metadata,
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
work_order_audit = sa.Table(
    "work_order_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(40), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),  # create, a move of alerting.workorders, photo, escalate
    sa.Column("from_state", sa.String(20)),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("assignee_id", sa.String(64)),
    sa.Column("due_ms", sa.BigInteger, nullable=False),
    sa.Column("note", sa.String(1000), nullable=False),
)
work_order_photos = sa.Table(
    "work_order_photos",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(40), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content_type", sa.String(20), nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("file_name", sa.String(200), nullable=False),  # relative to the photos folder
    sa.Column("uploaded_by", sa.String(64), nullable=False),
    sa.Column("uploaded_ms", sa.BigInteger, nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),  # the order's state when the photo came: before or after the work
    sa.Column("caption", sa.String(200), nullable=False),
)
sa.Index("ix_work_orders_state", work_orders.c.state, work_orders.c.due_ms)
sa.Index("ix_work_orders_alarm", work_orders.c.alarm_id)
sa.Index("ix_work_order_audit_order", work_order_audit.c.order_id)
sa.Index("ix_work_order_photos_order", work_order_photos.c.order_id)
