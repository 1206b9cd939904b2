"""Working an alarm together: assignments, comments and their photos (backend/alarms/collab.py, issue 17).

Revision ID: 0004_collab
Revises: 0003_history
Create Date: 2026-12-06

Three append-only tables. The current assignee of an alarm is its newest `alarm_assignments` row (each row is the
audited act: who assigned, when, to whom); comments and their photos (files under the data folder, named by their
SHA-256) never change the alarm's state. And an index for the archiver: closed alarms by state and last change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_collab"
down_revision = "0003_history"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "alarm_assignments",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("assignee_id", sa.String(96), nullable=False),
        sa.Column("assignee_name", sa.String(64), nullable=False),
        sa.Column("assignee_role", sa.String(32), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
    )
    op.create_index("ix_alarm_assignments_alarm", "alarm_assignments", ["alarm_id", "id"])
    op.create_table(
        "alarm_comments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("alarm_id", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("drill", sa.Boolean, nullable=False),
    )
    op.create_index("ix_alarm_comments_alarm", "alarm_comments", ["alarm_id", "at_ms"])
    op.create_table(
        "alarm_comment_photos",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("comment_id", sa.String(40), nullable=False),
        sa.Column("alarm_id", sa.String(40), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(20), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("file_name", sa.String(200), nullable=False),
    )
    op.create_index("ix_alarm_comment_photos_alarm", "alarm_comment_photos", ["alarm_id"])
    op.create_index("ix_alarm_state_updated", "alarms", ["state", "updated_ms"])  # closed alarms due for archiving (backend/alarms/archive.py)


def downgrade() -> None:
    op.drop_index("ix_alarm_state_updated", "alarms")
    op.drop_index("ix_alarm_comment_photos_alarm", "alarm_comment_photos")
    op.drop_table("alarm_comment_photos")
    op.drop_index("ix_alarm_comments_alarm", "alarm_comments")
    op.drop_table("alarm_comments")
    op.drop_index("ix_alarm_assignments_alarm", "alarm_assignments")
    op.drop_table("alarm_assignments")
