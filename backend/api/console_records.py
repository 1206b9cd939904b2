"""What the duty console does that the alarm lifecycle has no state for: verifications, dispatches, answers
given on a responder's behalf. Append-only, one row per act, shown in the alarm's timeline.

How this works: the lifecycle's audit log (backend.alarms) records every state change; this table records
the console's acts next to it (who, when, for whom, what note), so "verified by the duty officer over the
phone" or "the micro fire station dispatched by duty1" stays on the record even when no state changed. It
lives in the same database as the alarms; the constructor brings it to the newest revision of
backend/api/console_migrations (version table `alembic_version_console`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.store.migrations import upgrade

__all__ = ["ConsoleAct", "ConsoleRecords", "metadata"]

MIGRATIONS = Path(__file__).resolve().parent / "console_migrations"
VERSION_TABLE = "alembic_version_console"  # its own: the alarm store and others migrate the same database

metadata = sa.MetaData()

console_acts = sa.Table(
    "console_acts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.String(64), nullable=False, index=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),  # the logged-in user who acted
    sa.Column("act", sa.String(32), nullable=False),  # verify, dispatch, acknowledge_on_behalf, close_real, close_false, silence
    sa.Column("on_behalf_of", sa.String(96)),  # responder id the act was made for
    sa.Column("target", sa.String(96)),  # who was dispatched, which device was silenced
    sa.Column("note", sa.String(500), nullable=False, default=""),
    sa.Column("drill", sa.Boolean, nullable=False, default=False),
)


@dataclass(frozen=True, slots=True)
class ConsoleAct:
    alarm_id: str
    at_ms: int
    actor: str
    act: str
    on_behalf_of: str | None = None
    target: str | None = None
    note: str = ""
    drill: bool = False

    def as_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


class ConsoleRecords:
    """Blocking; the API calls it off the event loop."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    def add(self, act: ConsoleAct) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(console_acts).values(**{**act.as_json(), "note": act.note[:500]}))

    def for_alarm(self, alarm_id: str) -> list[ConsoleAct]:
        c = console_acts.c
        q = sa.select(c.alarm_id, c.at_ms, c.actor, c.act, c.on_behalf_of, c.target, c.note, c.drill).where(c.alarm_id == alarm_id).order_by(c.id)
        with self.engine.connect() as conn:
            return [ConsoleAct(**r._mapping) for r in conn.execute(q)]
