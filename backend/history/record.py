"""One alarm's full record (处置记录单): the alarm, where it is, every lifecycle move, the console's acts and notes,
the escalation ladder's pages and answers, who it was assigned to, every comment (with its photos' count), and
its hand-off to the fire brigade (转警119: sent, receipted or failed), in time order.

How this works: the logs live in the alarm database (alarm_audit; console_acts of backend.api.console_records;
alarm_assignments and alarm_comments of backend.alarms.collab; forwards_119 of backend.forward; escalation_log of
backend.escalation.store, which may live in another database: its engine is passed in). Each is read with one
query by alarm id (each table has an index that starts with alarm_id, or a unique one on it) and merged into one
list of `RecordEntry` sorted by time; a log whose table does not exist (no ladder on this server) is simply empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from backend.alarms.schema import alarm_assignments, alarm_audit, alarm_comment_photos, alarm_comments, alarms
from backend.escalation.store import escalation_log
from backend.forward.store import forwards

__all__ = ["AlarmSheet", "RecordEntry", "read_sheet"]

# The console's acts (backend.api.console_records owns the table; backend.api imports this module, so the columns read
# here are named, not imported).
console_acts = sa.table("console_acts", *(sa.column(n) for n in ("id", "alarm_id", "at_ms", "actor", "act", "on_behalf_of", "target", "note")))


@dataclass(frozen=True, slots=True)
class RecordEntry:
    at_ms: int
    source: str  # lifecycle, console, ladder, collab (assignments, comments), forward (转警119)
    what: str  # a move, an act, a ladder note kind; assigned / comment; forward_sent / forward_receipted / forward_failed / not_forwarded
    actor: str
    rung: str | None
    to_state: str | None
    note: str
    photos: int = 0  # a comment's photos
    channel: str = ""  # the channel that gave a 119 forward's receipt


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
    entries += _collab(engine, alarm_id) + _forward(engine, alarm_id)
    entries.sort(key=lambda x: (x.at_ms, SOURCE_ORDER[x.source]))
    was_false = any(x.source == "lifecycle" and x.to_state == "false_alarm" for x in entries)
    return AlarmSheet(dict(row._mapping), entries, was_false)



SOURCE_ORDER = {"lifecycle": 0, "ladder": 1, "console": 2, "collab": 3, "forward": 4}


def _collab(engine: sa.Engine, alarm_id: str) -> list[RecordEntry]:
    """Assignments (to whom, with the role; the note) and comments (the text; how many photos)."""
    out: list[RecordEntry] = []
    if _has(engine, "alarm_assignments"):
        t = alarm_assignments.c
        with engine.connect() as conn:
            rows = conn.execute(sa.select(alarm_assignments).where(t.alarm_id == alarm_id).order_by(t.id)).all()
        out.extend(RecordEntry(int(r.at_ms), "collab", "assigned", r.actor, r.assignee_role, None,
                               " · ".join(x for x in (r.assignee_name, r.note) if x)) for r in rows)
    if _has(engine, "alarm_comments"):
        c, p = alarm_comments.c, alarm_comment_photos.c
        photos = sa.select(sa.func.count()).where(p.comment_id == c.id).scalar_subquery()
        with engine.connect() as conn:
            rows = conn.execute(sa.select(c.at_ms, c.author, c.text, photos.label("photos")).where(c.alarm_id == alarm_id).order_by(c.at_ms)).all()
        out.extend(RecordEntry(int(r.at_ms), "collab", "comment", r.author, None, None, r.text, photos=int(r.photos or 0)) for r in rows)
    return out


def _forward(engine: sa.Engine, alarm_id: str) -> list[RecordEntry]:
    """The hand-off to 119: when it was asked for (and by whom, or because nobody verified in time), and its end."""
    if not _has(engine, "forwards_119"):
        return []
    f = forwards.c
    with engine.connect() as conn:
        r = conn.execute(sa.select(forwards).where(f.alarm_id == alarm_id)).first()
    if r is None:
        return []
    out = [RecordEntry(int(r.created_ms), "forward", "forward_sent", r.verifier or "system", r.how, None, "")]
    if r.status == "receipted" and r.receipted_ms is not None:
        out.append(RecordEntry(int(r.receipted_ms), "forward", "forward_receipted", "system", None, None, r.receipt or "", channel=r.channel or ""))
    elif r.status in ("failed", "not_forwarded"):
        out.append(RecordEntry(int(r.updated_ms), "forward", "forward_failed" if r.status == "failed" else "not_forwarded", "system", None, None,
                               r.reason or ""))
    return out

