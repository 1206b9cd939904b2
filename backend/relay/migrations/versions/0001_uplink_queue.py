"""The uplink queue (PostgreSQL only).

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Baseline. Before migrations the table was made by raw `CREATE TABLE IF NOT EXISTS` at start: a database that
already has it (an existing deployment) keeps it as it is, and this revision only stamps the version table
for it. The pending index is what the rules leader reads by; the consumed index is what pruning deletes by.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("uplink_queue"):
        return
    op.create_table(
        "uplink_queue",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("topic", sa.Text),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("enqueued_ms", sa.BigInteger, nullable=False, server_default=sa.text("(extract(epoch from clock_timestamp()) * 1000)::bigint")),
        sa.Column("consumed_ms", sa.BigInteger),
        sa.Column("result", sa.Text),
        sa.UniqueConstraint("key", name="ux_uplink_queue_key"),
    )
    op.create_index("ix_uplink_queue_pending", "uplink_queue", ["priority", "id"], postgresql_where=sa.text("consumed_ms IS NULL"))
    op.create_index("ix_uplink_queue_consumed", "uplink_queue", ["consumed_ms"], postgresql_where=sa.text("consumed_ms IS NOT NULL"))


def downgrade() -> None:
    op.drop_table("uplink_queue")
