"""The 119 hand-off's record in the alarm database: one forward per alarm, and every attempt on every channel.

How this works: a forward is opened once per alarm (`forwards_119`, unique on the alarm; its `forward_id` is made
from the alarm id, so a restart, a second process or a retry always sends the same id, which the receiver uses to
see a repeat). A round of sending is claimed with a conditional UPDATE (status pending or failed and due, or a
lease that ran out), so two processes never send the same round; the round's attempts and its end (a receipt, or
failed with the time of the next round) are written in one transaction. Statuses:

    (opened claimed: the first round)
    pending ──claim──▶ sending ──receipt──▶ receipted
       ▲                  │
       └──── failed ◀─────┘  (every channel failed within the budget: the next round at next_try_ms)
    not_forwarded           (a drill that did not ask for it: recorded, never sent)

The constructor brings the tables to the newest revision of backend/forward/migrations (version table
`alembic_version_forward`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from backend.store.migrations import upgrade

__all__ = ["Attempt", "ForwardRecord", "ForwardStore", "Status", "forward_id_of", "metadata"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_forward"


class Status:
    PENDING: Final = "pending"
    SENDING: Final = "sending"
    RECEIPTED: Final = "receipted"
    FAILED: Final = "failed"
    NOT_FORWARDED: Final = "not_forwarded"


metadata = sa.MetaData()

forwards = sa.Table(
    "forwards_119",
    metadata,
    sa.Column("forward_id", sa.String(80), primary_key=True),
    sa.Column("alarm_id", sa.String(64), nullable=False),
    sa.Column("alarm_type", sa.String(64), nullable=False),
    sa.Column("how", sa.String(16), nullable=False),  # verified | treated_real
    sa.Column("verifier", sa.String(96)),
    sa.Column("verified_ms", sa.BigInteger, nullable=False),
    sa.Column("drill", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16)),  # the channel that gave the receipt
    sa.Column("receipt", sa.String(128)),
    sa.Column("reason", sa.String(300), nullable=False),  # the last failure, or why not forwarded
    sa.Column("rounds", sa.Integer, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the JSON body, built once: every round sends the same
    sa.Column("building_id", sa.String(64)),
    sa.Column("grid_id", sa.String(64)),
    sa.Column("community_id", sa.String(64)),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("next_try_ms", sa.BigInteger),
    sa.Column("receipted_ms", sa.BigInteger),
    sa.Column("lease_until_ms", sa.BigInteger),
    sa.Column("claimed_by", sa.String(64)),
    sa.UniqueConstraint("alarm_id", name="ux_forwards_119_alarm"),
)
sa.Index("ix_forwards_119_due", forwards.c.status, forwards.c.next_try_ms)

attempts = sa.Table(
    "forward_119_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("forward_id", sa.String(80), nullable=False),
    sa.Column("alarm_id", sa.String(64), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("took_ms", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # receipt | failed | timeout
    sa.Column("status_code", sa.Integer),
    sa.Column("receipt", sa.String(128)),
    sa.Column("detail", sa.String(300), nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
)
sa.Index("ix_forward_119_attempts_alarm", attempts.c.alarm_id)


def forward_id_of(alarm_id: str) -> str:
    """The forward's id, the same in every process and after every restart (the receiver's idempotency key)."""
    return f"119-{alarm_id}"


@dataclass(frozen=True, slots=True)
class ForwardRecord:
    forward_id: str
    alarm_id: str
    alarm_type: str
    how: str
    verifier: str | None
    verified_ms: int
    drill: bool
    status: str
    channel: str | None
    receipt: str | None
    reason: str
    rounds: int
    payload: str
    building_id: str | None
    grid_id: str | None
    community_id: str | None
    created_ms: int
    updated_ms: int
    next_try_ms: int | None
    receipted_ms: int | None


@dataclass(frozen=True, slots=True)
class Attempt:
    forward_id: str
    alarm_id: str
    round: int
    n: int
    channel: str
    started_ms: int
    took_ms: int
    outcome: str
    status_code: int | None
    receipt: str | None
    detail: str


_RECORD_COLUMNS: Final = [forwards.c[f] for f in ForwardRecord.__slots__]


def _record(row: sa.Row[Any]) -> ForwardRecord:
    return ForwardRecord(**row._mapping)


class ForwardStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    def open(self, record: ForwardRecord, *, worker: str | None = None, lease_until_ms: int | None = None) -> bool:
        """Open the alarm's forward (claimed by `worker` when its status is sending); False when it has one already
        (opened by this or another process)."""
        values = {**{f: getattr(record, f) for f in ForwardRecord.__slots__}, "claimed_by": worker, "lease_until_ms": lease_until_ms}
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(forwards).values(**values))
        except sa.exc.IntegrityError:
            return False
        return True

    def get(self, alarm_id: str) -> ForwardRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_RECORD_COLUMNS).where(forwards.c.alarm_id == alarm_id)).first()
        return _record(row) if row is not None else None

    def known(self, alarm_ids: Sequence[str]) -> set[str]:
        if not alarm_ids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(forwards.c.alarm_id).where(forwards.c.alarm_id.in_(list(alarm_ids)))))

    def claim(self, alarm_id: str, worker: str, now_ms: int, lease_ms: int) -> ForwardRecord | None:
        """Take the alarm's next round if it is due and nobody holds it; None otherwise."""
        due = sa.or_(
            sa.and_(forwards.c.status.in_([Status.PENDING, Status.FAILED]), sa.or_(forwards.c.next_try_ms.is_(None), forwards.c.next_try_ms <= now_ms)),
            sa.and_(forwards.c.status == Status.SENDING, forwards.c.lease_until_ms < now_ms),
        )
        with self.engine.begin() as conn:
            n = conn.execute(sa.update(forwards).where(forwards.c.alarm_id == alarm_id, due).values(
                status=Status.SENDING, claimed_by=worker, lease_until_ms=now_ms + lease_ms, rounds=forwards.c.rounds + 1, updated_ms=now_ms)).rowcount
            if n != 1:
                return None
            row = conn.execute(sa.select(*_RECORD_COLUMNS).where(forwards.c.alarm_id == alarm_id)).one()
        return _record(row)

    def finish(self, alarm_id: str, worker: str, tried: Sequence[Attempt], now_ms: int, *, receipt: tuple[str, str] | None,
               reason: str = "", next_try_ms: int | None = None) -> bool:
        """End the claimed round: its attempts, then receipted (channel, receipt) or failed (next round at `next_try_ms`).
        False when the round was not this worker's any more (its lease ran out and another took it)."""
        with self.engine.begin() as conn:
            if tried:
                conn.execute(sa.insert(attempts), [{**{f: getattr(a, f) for f in Attempt.__slots__}, "worker": worker} for a in tried])
            mine = sa.and_(forwards.c.alarm_id == alarm_id, forwards.c.status == Status.SENDING, forwards.c.claimed_by == worker)
            if receipt is not None:
                values: dict[str, object] = {"status": Status.RECEIPTED, "channel": receipt[0], "receipt": receipt[1][:128], "receipted_ms": now_ms,
                                             "next_try_ms": None}
            else:
                values = {"status": Status.FAILED, "reason": reason[:300], "next_try_ms": next_try_ms}
            n = conn.execute(sa.update(forwards).where(mine).values(**values, lease_until_ms=None, claimed_by=None, updated_ms=now_ms)).rowcount
        return n == 1

    def due(self, now_ms: int, limit: int = 100) -> list[str]:
        """Alarms whose next round is due (pending, failed and due, or a lease that ran out), oldest first."""
        q = sa.select(forwards.c.alarm_id).where(sa.or_(
            sa.and_(forwards.c.status.in_([Status.PENDING, Status.FAILED]), sa.or_(forwards.c.next_try_ms.is_(None), forwards.c.next_try_ms <= now_ms)),
            sa.and_(forwards.c.status == Status.SENDING, forwards.c.lease_until_ms < now_ms),
        )).order_by(forwards.c.verified_ms).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.scalars(q))

    def attempts(self, alarm_id: str) -> list[Attempt]:
        cols = [attempts.c[f] for f in Attempt.__slots__]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(attempts.c.alarm_id == alarm_id).order_by(attempts.c.id)).all()
        return [Attempt(*r) for r in rows]

    def unreceipted(self, *, drill: bool | None = None) -> list[ForwardRecord]:
        """Forwards without a receipt that will be sent (pending, sending, failed)."""
        q = sa.select(*_RECORD_COLUMNS).where(forwards.c.status.in_([Status.PENDING, Status.SENDING, Status.FAILED]))
        if drill is not None:
            q = q.where(forwards.c.drill == drill)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(q)]
