"""Indexes for the history list, its exports and the monthly reports (backend/history, backend/reports).

Revision ID: 0003_history
Revises: 0002_maintenance
Create Date: 2026-12-06

A year of alarms (GB 50440 keeps them at least that long) is paged newest first by (raised_at_ms, id), the keyset
of backend.history.query; a community's month is read by (community_id, raised_at_ms); a device's false alarms by
(device_id, raised_at_ms); and "was this alarm ever a false alarm" by alarm_audit (to_state, alarm_id).
"""

from __future__ import annotations

from alembic import op

revision = "0003_history"
down_revision = "0002_maintenance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alarm_raised_id", "alarms", ["raised_at_ms", "id"])
    op.create_index("ix_alarm_community_raised", "alarms", ["community_id", "raised_at_ms"])
    op.create_index("ix_alarm_device_raised", "alarms", ["device_id", "raised_at_ms"])
    op.create_index("ix_audit_to_state", "alarm_audit", ["to_state", "alarm_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_to_state", "alarm_audit")
    op.drop_index("ix_alarm_device_raised", "alarms")
    op.drop_index("ix_alarm_community_raised", "alarms")
    op.drop_index("ix_alarm_raised_id", "alarms")
