"""The duty tables: roster overrides, shifts officers log in to, handovers, and the duty audit (issue 17).

How this works: four tables in the alarm database (the users' database too), brought to the newest revision of
backend/duty/migrations by the constructor (version table `alembic_version_duty`). Every change is written in
one transaction together with its audit row, so nothing is half-written: an override and "who made it, when,
why" land together or not at all. Accepting a handover is an UPDATE guarded by `accepted_by IS NULL`, so two
officers accepting at once cannot both succeed, also across processes. Blocking; callers run it off the loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from alerting.directory import Seat
from backend.sites.roster import OverrideKind, RosterOverride
from backend.store.migrations import upgrade

__all__ = ["AuditRow", "DutyStore", "HandoverRecord", "OverrideRecord", "ShiftRecord", "metadata"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_duty"

metadata = sa.MetaData()
duty_overrides = sa.Table(
    "duty_overrides", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("responder", sa.String(64)),
    sa.Column("substitute", sa.String(64)),
    sa.Column("seat", sa.String(32)),
    sa.Column("scope", sa.String(64)),
    sa.Column("community", sa.String(64)),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("cancelled_ms", sa.BigInteger),
    sa.Column("cancelled_by", sa.String(64)),
    sa.Column("cancel_reason", sa.String(500)),
)
duty_shifts = sa.Table(
    "duty_shifts", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("ended_ms", sa.BigInteger),
)
duty_handovers = sa.Table(
    "duty_handovers", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("community", sa.String(64), nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("written_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),  # JSON: what was open, overdue, silenced, offline when it was written
    sa.Column("accepted_by", sa.String(64)),
    sa.Column("accepted_ms", sa.BigInteger),
    sa.Column("objections", sa.Text),
)
duty_audit = sa.Table(
    "duty_audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("area", sa.String(16), nullable=False),  # roster, shift, handover, admin
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("community", sa.String(64)),
    sa.Column("detail", sa.String(1000), nullable=False),
)


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    override: RosterOverride
    community: str | None
    author: str
    created_ms: int
    cancelled_ms: int | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        o = self.override
        return {"id": o.id, "kind": o.kind.value, "responder": o.responder, "substitute": o.substitute, "seat": o.seat.value if o.seat else None,
                "scope": o.scope, "start_ms": o.start_ms, "end_ms": o.end_ms, "reason": o.reason, "community": self.community,
                "author": self.author, "created_ms": self.created_ms, "cancelled_ms": self.cancelled_ms, "cancelled_by": self.cancelled_by,
                "cancel_reason": self.cancel_reason}


@dataclass(frozen=True, slots=True)
class ShiftRecord:
    id: str
    username: str
    display_name: str
    community: str
    started_ms: int
    ended_ms: int | None


@dataclass(frozen=True, slots=True)
class HandoverRecord:
    id: str
    community: str
    author: str
    written_ms: int
    notes: str
    snapshot: dict[str, Any]
    accepted_by: str | None
    accepted_ms: int | None
    objections: str | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    at_ms: int
    actor: str
    area: str
    action: str
    subject: str
    community: str | None
    detail: str


def _override(r: Any) -> OverrideRecord:
    o = RosterOverride(r.id, OverrideKind(r.kind), r.start_ms, r.end_ms, r.responder, r.substitute, Seat(r.seat) if r.seat else None, r.scope,
                       r.reason)
    return OverrideRecord(o, r.community, r.author, r.created_ms, r.cancelled_ms, r.cancelled_by, r.cancel_reason)


def _handover(r: Any) -> HandoverRecord:
    return HandoverRecord(r.id, r.community, r.author, r.written_ms, r.notes, json.loads(r.snapshot), r.accepted_by, r.accepted_ms, r.objections)


def _shift(r: Any) -> ShiftRecord:
    return ShiftRecord(r.id, r.username, r.display_name, r.community, r.started_ms, r.ended_ms)


class DutyStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    @staticmethod
    def _audit(conn: sa.Connection, row: AuditRow) -> None:
        conn.execute(sa.insert(duty_audit).values(at_ms=row.at_ms, actor=row.actor[:64], area=row.area, action=row.action, subject=row.subject[:128],
                                                  community=row.community, detail=row.detail[:1000]))

    def audit(self, row: AuditRow) -> None:
        with self._tx() as conn:
            self._audit(conn, row)

    # -- overrides ------------------------------------------------------------------------------------------
    def add_override(self, rec: OverrideRecord, audit: AuditRow) -> None:
        o = rec.override
        with self._tx() as conn:
            conn.execute(sa.insert(duty_overrides).values(
                id=o.id, kind=o.kind.value, responder=o.responder, substitute=o.substitute, seat=o.seat.value if o.seat else None, scope=o.scope,
                community=rec.community, start_ms=o.start_ms, end_ms=o.end_ms, reason=o.reason, author=rec.author, created_ms=rec.created_ms))
            self._audit(conn, audit)

    def cancel_override(self, override_id: str, actor: str, reason: str, now_ms: int, audit: AuditRow) -> bool:
        """Cancel (end early) an override not cancelled yet; False if it was (nothing written then)."""
        c = duty_overrides.c
        with self._tx() as conn:
            n = conn.execute(sa.update(duty_overrides).where(c.id == override_id, c.cancelled_ms.is_(None))
                             .values(cancelled_ms=now_ms, cancelled_by=actor, cancel_reason=reason)).rowcount
            if n != 1:
                return False
            self._audit(conn, audit)
        return True

    def get_override(self, override_id: str) -> OverrideRecord | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(duty_overrides).where(duty_overrides.c.id == override_id)).first()
        return None if r is None else _override(r)

    def overrides(self, *, live_at_ms: int | None = None, limit: int = 500) -> list[OverrideRecord]:
        """Overrides newest first; with `live_at_ms`, only those not cancelled whose end is after it (in force or to come)."""
        c = duty_overrides.c
        q = sa.select(duty_overrides).order_by(c.start_ms.desc(), c.id).limit(limit)
        if live_at_ms is not None:
            q = q.where(c.cancelled_ms.is_(None), c.end_ms > live_at_ms)
        with self.engine.connect() as conn:
            return [_override(r) for r in conn.execute(q)]

    # -- shifts officers log in to ---------------------------------------------------------------------------
    def start_shift(self, rec: ShiftRecord, audit: AuditRow) -> bool:
        """Open a shift for rec.username; False (nothing written) if they already have one open."""
        c = duty_shifts.c
        with self._tx() as conn:
            if conn.execute(sa.select(c.id).where(c.username == rec.username, c.ended_ms.is_(None))).first() is not None:
                return False
            conn.execute(sa.insert(duty_shifts).values(id=rec.id, username=rec.username, display_name=rec.display_name, community=rec.community,
                                                       started_ms=rec.started_ms, ended_ms=None))
            self._audit(conn, audit)
        return True

    def end_shift(self, username: str, now_ms: int, audit: AuditRow) -> ShiftRecord | None:
        c = duty_shifts.c
        with self._tx() as conn:
            r = conn.execute(sa.select(duty_shifts).where(c.username == username, c.ended_ms.is_(None))).first()
            if r is None:
                return None
            conn.execute(sa.update(duty_shifts).where(c.id == r.id).values(ended_ms=now_ms))
            self._audit(conn, audit)
        return ShiftRecord(r.id, r.username, r.display_name, r.community, r.started_ms, now_ms)

    def open_shifts(self) -> list[ShiftRecord]:
        c = duty_shifts.c
        with self.engine.connect() as conn:
            return [_shift(r) for r in conn.execute(sa.select(duty_shifts).where(c.ended_ms.is_(None)).order_by(c.started_ms))]

    def open_shift(self, username: str) -> ShiftRecord | None:
        c = duty_shifts.c
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(duty_shifts).where(c.username == username, c.ended_ms.is_(None))).first()
        return None if r is None else _shift(r)

    # -- handovers -------------------------------------------------------------------------------------------
    def add_handover(self, rec: HandoverRecord, audit: AuditRow) -> None:
        with self._tx() as conn:
            conn.execute(sa.insert(duty_handovers).values(id=rec.id, community=rec.community, author=rec.author, written_ms=rec.written_ms,
                                                          notes=rec.notes, snapshot=json.dumps(rec.snapshot, ensure_ascii=False)))
            self._audit(conn, audit)

    def accept_handover(self, handover_id: str, by: str, objections: str, now_ms: int, audit: AuditRow) -> bool:
        """Accept once: False (nothing written) if someone already accepted it."""
        c = duty_handovers.c
        with self._tx() as conn:
            n = conn.execute(sa.update(duty_handovers).where(c.id == handover_id, c.accepted_by.is_(None))
                             .values(accepted_by=by, accepted_ms=now_ms, objections=objections)).rowcount
            if n != 1:
                return False
            self._audit(conn, audit)
        return True

    def get_handover(self, handover_id: str) -> HandoverRecord | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(duty_handovers).where(duty_handovers.c.id == handover_id)).first()
        return None if r is None else _handover(r)

    def handovers(self, limit: int = 50) -> list[HandoverRecord]:
        c = duty_handovers.c
        with self.engine.connect() as conn:
            return [_handover(r) for r in conn.execute(sa.select(duty_handovers).order_by(c.written_ms.desc(), c.id).limit(limit))]

    # -- the duty audit ----------------------------------------------------------------------------------------
    def audit_rows(self, limit: int = 200, since_ms: int = 0) -> list[AuditRow]:
        c = duty_audit.c
        q = sa.select(duty_audit).where(c.at_ms >= since_ms).order_by(c.at_ms.desc(), c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [AuditRow(r.at_ms, r.actor, r.area, r.action, r.subject, r.community, r.detail) for r in conn.execute(q)]
