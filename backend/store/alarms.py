"""The alarm store (thin first version): one open alarm per (device, alarm type), with occurrences.

This is the durable record the API serves. The full lifecycle, audit log and migrations arrive with the
alerting work; the table shape already keeps one open alarm per key and counts repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

__all__ = ["AlarmRecord", "AlarmStore", "metadata"]

metadata = sa.MetaData()

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("alarm_type", sa.String(40), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("state", sa.String(30), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("device_id", sa.String(64)),
    sa.Column("gateway_id", sa.String(64)),
    sa.Column("building_id", sa.String(64)),
    sa.Column("grid_id", sa.String(64)),
    sa.Column("community_id", sa.String(64)),
    sa.Column("drill", sa.Boolean, nullable=False, default=False),
    sa.Column("occurrences", sa.Integer, nullable=False, default=1),
    sa.Column("first_seen_ms", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
    sa.Column("raised_at_ms", sa.BigInteger, nullable=False),
    sa.Column("source_msg_id", sa.String(96)),
    sa.Column("is_open", sa.Boolean, nullable=False, default=True),
)
# At most one open alarm per key: a partial unique index (SQLite and PostgreSQL both have them).
sa.Index("ux_alarms_open_key", alarms.c.key, unique=True, sqlite_where=alarms.c.is_open, postgresql_where=alarms.c.is_open)
sa.Index("ix_alarms_raised", alarms.c.raised_at_ms)


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    id: int
    key: str
    alarm_type: str
    severity: str
    state: str
    title: str
    device_id: str | None
    gateway_id: str | None
    building_id: str | None
    grid_id: str | None
    community_id: str | None
    drill: bool
    occurrences: int
    first_seen_ms: int
    last_seen_ms: int
    raised_at_ms: int
    is_open: bool

    def as_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


class AlarmStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def raise_or_repeat(
        self, *, key: str, alarm_type: str, severity: str, title: str, seen_ms: int, now_ms: int, drill: bool,
        device_id: str | None = None, gateway_id: str | None = None, building_id: str | None = None,
        grid_id: str | None = None, community_id: str | None = None, source_msg_id: str | None = None,
    ) -> tuple[int, bool]:
        """Open a new alarm for `key`, or count a repeat on the open one. Returns (id, created)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(alarms.c.id).where(alarms.c.key == key, alarms.c.is_open)).first()
            if row is not None:
                conn.execute(
                    sa.update(alarms).where(alarms.c.id == row.id).values(
                        occurrences=alarms.c.occurrences + 1, last_seen_ms=sa.func.max(alarms.c.last_seen_ms, seen_ms)
                        if self.engine.dialect.name == "sqlite" else sa.func.greatest(alarms.c.last_seen_ms, seen_ms)
                    )
                )
                return int(row.id), False
            result = conn.execute(
                sa.insert(alarms).values(
                    key=key, alarm_type=alarm_type, severity=severity, state="raised", title=title, device_id=device_id,
                    gateway_id=gateway_id, building_id=building_id, grid_id=grid_id, community_id=community_id,
                    drill=drill, occurrences=1, first_seen_ms=seen_ms, last_seen_ms=seen_ms, raised_at_ms=now_ms,
                    source_msg_id=source_msg_id, is_open=True,
                )
            )
            assert result.inserted_primary_key is not None
            return int(result.inserted_primary_key[0]), True

    def list(self, *, open_only: bool = False, limit: int = 200) -> list[AlarmRecord]:
        q = sa.select(*[alarms.c[f] for f in AlarmRecord.__slots__]).order_by(alarms.c.raised_at_ms.desc()).limit(limit)
        if open_only:
            q = q.where(alarms.c.is_open)
        with self.engine.connect() as conn:
            return [AlarmRecord(**row._mapping) for row in conn.execute(q)]
