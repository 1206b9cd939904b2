"""Tables of the durable alarm store (SQLAlchemy Core). Migrations in backend/alarms/migrations create them.

How this works: `alarms` holds every alarm as it now is (one row per alarm id, updated in place), with a
partial unique index that lets at most one row per key be open: the database itself refuses a second open
alarm for a key. `alarm_audit` is append-only: one row per transition or annotation, (alarm_id, seq)
unique. `device_records` keeps what is recorded but never alarmed (self-tests, restarts). `rule_state`
holds the engine's snapshot (debounce starts, last-seen times, baselines) so a restart re-derives timers.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["alarm_assignments", "alarm_audit", "alarm_comment_photos", "alarm_comments", "alarms", "device_records", "metadata", "rule_state"]

metadata = sa.MetaData()

alarms = sa.Table(
    "alarms",
    metadata,
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
sa.Index("ux_alarm_open_key", alarms.c.key, unique=True, sqlite_where=alarms.c.is_open, postgresql_where=alarms.c.is_open)
sa.Index("ix_alarm_raised", alarms.c.raised_at_ms)
sa.Index("ix_alarm_updated", alarms.c.updated_ms)
# the history list's keyset, a community's month, a device's alarms (migration 0003_history, backend/history)
sa.Index("ix_alarm_raised_id", alarms.c.raised_at_ms, alarms.c.id)
sa.Index("ix_alarm_community_raised", alarms.c.community_id, alarms.c.raised_at_ms)
sa.Index("ix_alarm_device_raised", alarms.c.device_id, alarms.c.raised_at_ms)
sa.Index("ix_alarm_state_updated", alarms.c.state, alarms.c.updated_ms)  # closed alarms due for archiving (0004_collab, backend/alarms/archive.py)

alarm_audit = sa.Table(
    "alarm_audit",
    metadata,
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
sa.Index("ix_audit_at", alarm_audit.c.at_ms)
sa.Index("ix_audit_to_state", alarm_audit.c.to_state, alarm_audit.c.alarm_id)  # "ever a false alarm" (0003_history)

device_records = sa.Table(
    "device_records",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("drill", sa.Boolean, nullable=False),
    sa.Column("detail", sa.String(500)),
)
sa.Index("ix_device_records_at", device_records.c.at_ms)

rule_state = sa.Table(
    "rule_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

# Working an alarm together (issue 17, backend/alarms/collab.py; migration 0004_collab). Append-only: the current
# assignee is the newest assignment row; a comment never changes the alarm's state.
alarm_assignments = sa.Table(
    "alarm_assignments",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.String(40), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),  # who assigned
    sa.Column("assignee_id", sa.String(96), nullable=False),  # a responder id, or user:<username> for an officer
    sa.Column("assignee_name", sa.String(64), nullable=False),
    sa.Column("assignee_role", sa.String(32), nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
    sa.Column("drill", sa.Boolean, nullable=False),
)
sa.Index("ix_alarm_assignments_alarm", alarm_assignments.c.alarm_id, alarm_assignments.c.id)

alarm_comments = sa.Table(
    "alarm_comments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("alarm_id", sa.String(40), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("text", sa.String(2000), nullable=False),
    sa.Column("drill", sa.Boolean, nullable=False),
)
sa.Index("ix_alarm_comments_alarm", alarm_comments.c.alarm_id, alarm_comments.c.at_ms)

alarm_comment_photos = sa.Table(
    "alarm_comment_photos",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("comment_id", sa.String(40), nullable=False),
    sa.Column("alarm_id", sa.String(40), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content_type", sa.String(20), nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("file_name", sa.String(200), nullable=False),  # relative to the photos folder
)
sa.Index("ix_alarm_comment_photos_alarm", alarm_comment_photos.c.alarm_id)
