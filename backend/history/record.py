"""One alarm's full record (处置记录单): the alarm, where it is, every lifecycle move, the console's acts and notes,
and the escalation ladder's pages and answers, in time order.

How this works: the three logs live in the alarm database (alarm_audit; console_acts of backend.api.console_records;
escalation_log of backend.escalation.store, which may live in another database: its engine is passed in). Each is
read with one query by alarm id (each table has an index that starts with alarm_id) and merged into one list of
`RecordEntry` sorted by time; a log whose table does not exist (no ladder on this server) is simply empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from backend.alarms.schema import alarm_audit, alarms
from backend.escalation.store import escalation_log

__all__ = ["AlarmSheet", "RecordEntry", "read_sheet"]

# The console's acts (backend.api.console_records owns the table; backend.api imports this module, so the columns read
# here are named, not imported).
console_acts = sa.table("console_acts", *(sa.column(n) for n in ("id", "alarm_id", "at_ms", "actor", "act", "on_behalf_of", "target", "note")))


@dataclass(frozen=True, slots=True)
class RecordEntry:
    at_ms: int
    source: str  # lifecycle, console, ladder
    what: str  # a move, an act, a ladder note kind
    actor: str
    rung: str | None
    to_state: str | None
    note: str


@dataclass(frozen=True, slots=True)
class AlarmSheet:
    alarm: dict[str, Any]
    entries: list[RecordEntry]
    was_false: bool


def _has(engine: sa.Engine, table: str) -> bool:
    return sa.inspect(engine).has_table(table)


def read_sheet(engine: sa.Engine, alarm_id: str, ladder_engine: sa.Engine | None = None) -> AlarmSheet | None:
    """The alarm's record, or None if the store has no such alarm. Blocking."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(alarms).where(alarms.c.id == alarm_id)).first()
        if row is None:
            return None
        a = alarm_audit.c
        entries = [RecordEntry(int(r.at_ms), "lifecycle", r.move, r.actor, None, r.to_state, r.note)
                   for r in conn.execute(sa.select(alarm_audit).where(a.alarm_id == alarm_id).order_by(a.seq))]
    if _has(engine, "console_acts"):
        c = console_acts.c
        with engine.connect() as conn:
            for r in conn.execute(sa.select(console_acts).where(c.alarm_id == alarm_id).order_by(c.id)):
                who = r.on_behalf_of or r.target
                note = " · ".join(x for x in (who, r.note) if x)
                entries.append(RecordEntry(int(r.at_ms), "console", r.act, r.actor, None, None, note))
    lad = ladder_engine or engine
    if _has(lad, "escalation_log"):
        e = escalation_log.c
        with lad.connect() as conn:
            for r in conn.execute(sa.select(escalation_log).where(e.alarm_id == alarm_id).order_by(e.step, e.n)):
                if r.kind in ("notify", "advance"):
                    continue  # the notices are the pages' channels; an advance is the lifecycle move it asked for
                # a responder's answer the ladder observed reads as an answer (应答) on its rung
                what = "response" if r.kind == "observed" else r.kind
                entries.append(RecordEntry(int(r.at_ms), "ladder", what, "system", r.rung, r.field_state, r.detail or r.contact or ""))
    entries.sort(key=lambda x: (x.at_ms, {"lifecycle": 0, "ladder": 1, "console": 2}[x.source]))
    was_false = any(x.source == "lifecycle" and x.to_state == "false_alarm" for x in entries)
    return AlarmSheet(dict(row._mapping), entries, was_false)
