"""Escalation state in the alarm store: one row per alarm, a step log, and a notice outbox.

How this works: the `escalations` row holds the ladder's whole state (JSON), its step number and `due_ms`,
the earliest pending timer *derived* from the state (never a separate timer record). Firing a step (or a round
of steps due together, `step_due_many`) is one transaction: lock the row if it is still due (PostgreSQL `FOR UPDATE SKIP LOCKED`, so a second process
passes over a row the first is working on), compute the step with the pure ladder, write the new state only
`WHERE step = <the step read>` (a conditional UPDATE: the guard on SQLite, a second belt on PostgreSQL),
append the step's log entries, and queue its notices in `notify_outbox`, all committed together or not at
all. So a step is fired exactly once across processes, and a process killed at any point either committed
the step (its notices are queued) or left the row due for whoever runs next.

The outbox is claimed the same way (pending, or `sending` with an expired lease), real life-safety notices
first, drills last (`notice_priority`), and marked done after the dispatcher returns; a crash between sending
and marking redelivers with the same idempotency key.

The constructor brings the tables to the newest revision of backend/escalation/migrations (version table
`alembic_version_escalation`); the Table objects below are what the queries use and what the revisions
must produce.

Exceptions:

    EscalationStoreError
     ├── UnknownEscalation   no escalation for this alarm
     └── StepConflict        another process changed the row first (retry with a fresh read)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alerting.ladder import EscalationState, LadderAction, Note, Notify, PolicySet, next_due
from backend.errors import BackendError
from backend.notify.channel import Message
from backend.store.migrations import upgrade

__all__ = [
    "EscalationStore",
    "EscalationStoreError",
    "LogEntry",
    "StepConflict",
    "StepOutcome",
    "UnknownEscalation",
    "metadata",
    "notice_priority",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_escalation"  # its own: the alarm, receipt and user stores migrate the same database

metadata = sa.MetaData()

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("alarm_id", sa.String(64), primary_key=True),
    sa.Column("policy", sa.String(64), nullable=False),
    sa.Column("drill", sa.Boolean, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("due_ms", sa.BigInteger),  # NULL: nothing pending (stopped, or every deadline met)
    sa.Column("stopped", sa.Boolean, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
sa.Index("ix_escalations_due", escalations.c.due_ms)

escalation_log = sa.Table(
    "escalation_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.String(64), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),  # position within the step
    sa.Column("kind", sa.String(32), nullable=False),  # a NoteKind or "notify" ("advance": rows from before the ladder stopped asking for moves)
    sa.Column("rung", sa.String(64)),
    sa.Column("field_state", sa.String(32)),
    sa.Column("contact", sa.String(96)),
    sa.Column("detail", sa.String(500), nullable=False, default=""),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("due_ms", sa.BigInteger),
    sa.Column("drill", sa.Boolean, nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.UniqueConstraint("alarm_id", "step", "n", name="ux_escalation_log_step"),
)
sa.Index("ix_escalation_log_kind", escalation_log.c.kind, escalation_log.c.rung)

outbox = sa.Table(
    "notify_outbox",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("alarm_id", sa.String(64), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, sending, done
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("lease_until_ms", sa.BigInteger),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("deliveries", sa.Integer, nullable=False, default=0),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="1"),  # claim order: see notice_priority
)
sa.Index("ix_notify_outbox_status", outbox.c.status, outbox.c.created_ms)
sa.Index("ix_notify_outbox_claim", outbox.c.status, outbox.c.priority, outbox.c.created_ms)


def notice_priority(m: Message) -> int:
    """0: a real life-safety notice; 1: any other real notice; 2: a drill's. Lower is claimed first."""
    if m.drill:
        return 2
    return 0 if m.life_safety else 1


class EscalationStoreError(BackendError):
    """Base of the escalation store's errors."""


class UnknownEscalation(EscalationStoreError):
    def __init__(self, alarm_id: str) -> None:
        self.alarm_id = alarm_id
        super().__init__(f"no escalation for alarm {alarm_id!r}")


class StepConflict(EscalationStoreError):
    def __init__(self, alarm_id: str, step: int) -> None:
        self.alarm_id, self.step = alarm_id, step
        super().__init__(f"alarm {alarm_id!r} moved past step {step} in another process")


@dataclass(frozen=True, slots=True)
class StepOutcome:
    state: EscalationState
    actions: list[LadderAction]
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class LogEntry:
    alarm_id: str
    step: int
    kind: str
    rung: str | None
    field_state: str | None
    contact: str | None
    detail: str
    at_ms: int
    due_ms: int | None
    worker: str


# A step: the state read -> the new state, its actions and the notices to queue.
StepFn = Callable[[EscalationState], StepOutcome]

_state_decoder = msgspec.json.Decoder(EscalationState)
_encoder = msgspec.json.Encoder()


def encode_state(state: EscalationState) -> str:
    return _encoder.encode(state).decode()


def decode_state(text: str) -> EscalationState:
    return _state_decoder.decode(text)


def _log_rows(actions: Sequence[LadderAction], drill: bool, worker: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n_by_step: dict[int, int] = {}
    for a in actions:
        n = n_by_step.get(a.step, 0)
        n_by_step[a.step] = n + 1
        base = {"alarm_id": a.alarm_id, "step": a.step, "n": n, "drill": drill, "worker": worker, "due_ms": None,
                "rung": None, "field_state": None, "contact": None, "detail": ""}
        if isinstance(a, Note):
            rows.append({**base, "kind": a.kind.value, "rung": a.rung, "field_state": a.field_state.value if a.field_state else None,
                         "detail": a.detail[:500], "at_ms": a.at_ms, "due_ms": a.due_ms})
        elif isinstance(a, Notify):
            rows.append({**base, "kind": "notify", "rung": a.rung, "contact": a.contact.id, "detail": a.reason.value, "at_ms": 0})
    at = max((r["at_ms"] for r in rows), default=0)
    for r in rows:
        r["at_ms"] = r["at_ms"] or at
    return rows


def _outbox_row(m: Message, step: int, now_ms: int) -> dict[str, Any]:
    return {"key": m.key, "alarm_id": m.alarm_id, "step": step, "message": _encoder.encode(m).decode(), "status": "pending",
            "created_ms": now_ms, "deliveries": 0, "priority": notice_priority(m)}


# The write of a stepped escalation, guarded by the step it was read at (`_step_row`; a round's rows in one executemany).
_STEP_UPDATE = (
    sa.update(escalations)
    .where(escalations.c.alarm_id == sa.bindparam("k_alarm_id"), escalations.c.step == sa.bindparam("k_step"))
    .values(step=sa.bindparam("v_step"), due_ms=sa.bindparam("v_due_ms"), stopped=sa.bindparam("v_stopped"), state=sa.bindparam("v_state"),
            updated_ms=sa.bindparam("v_updated_ms"))
)


class EscalationStore:
    def __init__(self, engine: sa.Engine, policies: PolicySet) -> None:
        self.engine = engine
        self.policies = policies
        self.postgres = engine.dialect.name == "postgresql"
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    # -- writing ---------------------------------------------------------------------------------------------
    def _write(self, conn: sa.Connection, outcomes: Sequence[StepOutcome], worker: str, now_ms: int) -> None:
        """The outcomes' log entries and notices, one INSERT of each for all of them."""
        log_rows = [row for o in outcomes for row in _log_rows(o.actions, o.state.facts.drill, worker)]
        if log_rows:
            conn.execute(sa.insert(escalation_log), log_rows)
        notices = [_outbox_row(m, o.state.step, now_ms) for o in outcomes for m in o.messages]
        if notices:
            conn.execute(sa.insert(outbox), notices)

    def _step_row(self, alarm_id: str, read_step: int, s: EscalationState, now_ms: int) -> dict[str, Any]:
        """`_STEP_UPDATE`'s parameters for an escalation read at `read_step` and stepped to `s`."""
        return {"k_alarm_id": alarm_id, "k_step": read_step, "v_step": s.step, "v_due_ms": next_due(s, self.policies),
                "v_stopped": s.stopped is not None, "v_state": encode_state(s), "v_updated_ms": now_ms}

    def create(self, outcome: StepOutcome, worker: str, now_ms: int) -> bool:
        """Store a new escalation with its first step. False if the alarm already has one (nothing written). Any other
        refusal (a notice's key already queued, a value the database will not take) is raised as it is: it is not "the
        ladder exists", and taking it for that would leave the alarm without a ladder and the cause unsaid."""
        s = outcome.state
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(escalations).values(
                    alarm_id=s.alarm_id, policy=s.policy, drill=s.facts.drill, step=s.step, due_ms=next_due(s, self.policies),
                    stopped=s.stopped is not None, state=encode_state(s), started_ms=s.started_ms, updated_ms=now_ms,
                ))
                self._write(conn, [outcome], worker, now_ms)
        except sa.exc.IntegrityError:
            if self.get(s.alarm_id) is None:
                raise
            return False
        return True

    def create_many(self, outcomes: Sequence[StepOutcome], worker: str, now_ms: int) -> list[bool]:
        """Store new escalations with their first steps in one transaction (a storm's starts, issue 19); per outcome,
        whether it was stored. An alarm that already has an escalation (or comes twice in `outcomes`) is skipped, not
        an error: `INSERT .. ON CONFLICT DO NOTHING RETURNING` says which rows went in, and only their log rows and
        notices are written. If the transaction fails as a whole nothing is written and the error is raised (the
        caller falls back to `create` one by one)."""
        if not outcomes:
            return []
        rows = [{"alarm_id": o.state.alarm_id, "policy": o.state.policy, "drill": o.state.facts.drill, "step": o.state.step,
                 "due_ms": next_due(o.state, self.policies), "stopped": o.state.stopped is not None, "state": encode_state(o.state),
                 "started_ms": o.state.started_ms, "updated_ms": now_ms} for o in outcomes]
        first = {r["alarm_id"]: i for i, r in reversed(list(enumerate(rows)))}  # a second outcome of one alarm is a duplicate
        insert = (pg_insert if self.postgres else sqlite_insert)(escalations).on_conflict_do_nothing(index_elements=[escalations.c.alarm_id])
        with self.engine.begin() as conn:
            unique = [rows[i] for i in sorted(first.values())]  # one multi-row INSERT: the batch is small (START_BATCH)
            stored = set(conn.execute(insert.values(unique).returning(escalations.c.alarm_id)).scalars())
            created = [o.state.alarm_id in stored and first[o.state.alarm_id] == i for i, o in enumerate(outcomes)]
            self._write(conn, [o for o, c in zip(outcomes, created, strict=True) if c], worker, now_ms)
        return created

    def _locked(self, conn: sa.Connection, alarm_id: str, now_ms: int | None) -> Any:
        q = sa.select(escalations.c.step, escalations.c.state).where(escalations.c.alarm_id == alarm_id)
        if now_ms is not None:
            q = q.where(escalations.c.due_ms <= now_ms, sa.not_(escalations.c.stopped))
        if self.postgres:
            q = q.with_for_update(skip_locked=now_ms is not None)
        return conn.execute(q).first()

    def _step(self, alarm_id: str, fn: StepFn, worker: str, now_ms: int, *, due_only: bool) -> StepOutcome | None:
        with self.engine.begin() as conn:
            row = self._locked(conn, alarm_id, now_ms if due_only else None)
            if row is None:
                if due_only:
                    return None  # not due any more, or another process holds it
                raise UnknownEscalation(alarm_id)
            outcome = fn(decode_state(row.state))
            s = outcome.state
            if s.step == row.step:
                return outcome  # nothing happened: nothing to write
            if conn.execute(_STEP_UPDATE, self._step_row(alarm_id, row.step, s, now_ms)).rowcount != 1:
                raise StepConflict(alarm_id, row.step)
            self._write(conn, [outcome], worker, now_ms)
            return outcome

    def step_due(self, alarm_id: str, fn: StepFn, worker: str, now_ms: int) -> StepOutcome | None:
        """Fire the alarm's due timers if it is still due and nobody else holds it; None otherwise."""
        try:
            return self._step(alarm_id, fn, worker, now_ms, due_only=True)
        except (StepConflict, sa.exc.OperationalError):
            return None  # another process won the race (SQLite reports it as a busy database)

    def step_due_many(self, alarm_ids: Sequence[str], fn: StepFn, worker: str, now_ms: int) -> list[StepOutcome | None]:
        """`step_due` for a round of due escalations, written in ONE transaction; per id, its outcome, or None when it
        is no longer due or another process holds it (as `step_due`).

        The rows are read together (PostgreSQL: locked, `FOR UPDATE SKIP LOCKED`) and stepped with the pure ladder,
        and every changed one is written `WHERE step = <the step read>`, with the round's log entries and notices,
        all or nothing. If one of them moved meanwhile (SQLite: another process stepped it between the read and the
        write), the whole round is rolled back and each is stepped alone. SQLite's write lock is taken at the first
        write, after the ladder's work, as in `step_due`.

        Issue 19: after a storm of 2,000 smoke alarms their ladders' repeats (every 20-30 s) fell due together, and
        one transaction per step (its own commit and fsync, its statements built and compiled each time) held the
        timer loop at ~50 steps a second with a core busy: repeats came tens of seconds late, and the steps took the
        GIL and the alarm file from the next storm."""
        if not alarm_ids:
            return []
        q = (sa.select(escalations.c.alarm_id, escalations.c.step, escalations.c.state)
             .where(escalations.c.alarm_id.in_(list(alarm_ids)), escalations.c.due_ms <= now_ms, sa.not_(escalations.c.stopped)))
        if self.postgres:
            q = q.with_for_update(skip_locked=True)
        try:
            with self.engine.begin() as conn:
                read = {r.alarm_id: (r.step, r.state) for r in conn.execute(q)}
                outcomes: list[StepOutcome | None] = []
                updates: list[dict[str, Any]] = []
                changed: list[StepOutcome] = []
                for alarm_id in alarm_ids:
                    got = read.pop(alarm_id, None)  # popped: an id twice in a round is stepped once
                    if got is None:
                        outcomes.append(None)
                        continue
                    step, text = got
                    outcome = fn(decode_state(text))
                    outcomes.append(outcome)
                    s = outcome.state
                    if s.step == step:
                        continue  # nothing happened: nothing to write
                    updates.append(self._step_row(alarm_id, step, s, now_ms))
                    changed.append(outcome)
                if updates and conn.execute(_STEP_UPDATE, updates).rowcount != len(updates):
                    raise StepConflict(alarm_ids[0], -1)  # rolled back: nothing of the round is written
                self._write(conn, changed, worker, now_ms)
        except StepConflict:
            alone = {alarm_id: self.step_due(alarm_id, fn, worker, now_ms) for alarm_id in dict.fromkeys(alarm_ids)}
            return [alone.pop(alarm_id, None) for alarm_id in alarm_ids]  # popped: an id twice in a round is stepped once
        except sa.exc.OperationalError:
            return [None] * len(alarm_ids)  # SQLite busy: the round stays due for the next (as `step_due`)
        return outcomes

    def apply(self, alarm_id: str, fn: StepFn, worker: str, now_ms: int, retries: int = 5) -> StepOutcome:
        """Apply an event (a response, a stop) to the escalation, waiting for the row if another process holds it."""
        for _ in range(retries):
            try:
                outcome = self._step(alarm_id, fn, worker, now_ms, due_only=False)
            except StepConflict:
                continue
            assert outcome is not None
            return outcome
        raise StepConflict(alarm_id, -1)

    # -- reading ---------------------------------------------------------------------------------------------
    def due_ids(self, now_ms: int, limit: int) -> list[str]:
        q = (sa.select(escalations.c.alarm_id).where(escalations.c.due_ms <= now_ms, sa.not_(escalations.c.stopped))
             .order_by(escalations.c.due_ms).limit(limit))
        with self.engine.connect() as conn:
            return [r.alarm_id for r in conn.execute(q)]

    def next_due_ms(self) -> int | None:
        with self.engine.connect() as conn:
            v = conn.execute(sa.select(sa.func.min(escalations.c.due_ms)).where(sa.not_(escalations.c.stopped))).scalar()
        return None if v is None else int(v)

    def get(self, alarm_id: str) -> EscalationState | None:
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(escalations.c.state).where(escalations.c.alarm_id == alarm_id)).scalar()
        return None if text is None else decode_state(text)

    def open_callbacks(self, policies: Sequence[str], limit: int = 500) -> list[EscalationState]:
        """Running escalations of the policies that open a call-back (回访) whose outcome is not recorded yet, oldest first."""
        if not policies:
            return []
        q = (sa.select(escalations.c.state).where(sa.not_(escalations.c.stopped), escalations.c.policy.in_(list(policies)))
             .order_by(escalations.c.started_ms).limit(limit))
        with self.engine.connect() as conn:
            states = [decode_state(t) for t in conn.execute(q).scalars()]
        return [s for s in states if s.callback is not None and s.callback.open]

    def log(self, alarm_id: str) -> list[LogEntry]:
        c = escalation_log.c
        q = sa.select(c.alarm_id, c.step, c.kind, c.rung, c.field_state, c.contact, c.detail, c.at_ms, c.due_ms, c.worker)
        with self.engine.connect() as conn:
            return [LogEntry(**r._mapping) for r in conn.execute(q.where(c.alarm_id == alarm_id).order_by(c.step, c.n))]

    def misses_by_rung(self, *, drill: bool = False) -> dict[str, int]:
        """Deadline misses per rung; drills are counted apart and never mix with real alarms."""
        c = escalation_log.c
        q = (sa.select(c.rung, sa.func.count()).where(c.kind == "deadline_missed", c.drill == drill).group_by(c.rung))
        with self.engine.connect() as conn:
            return {str(r[0]): int(r[1]) for r in conn.execute(q)}

    # -- the outbox -------------------------------------------------------------------------------------------
    def claim_outbox(self, now_ms: int, limit: int, lease_ms: int, worker: str) -> list[tuple[str, str]]:
        o = outbox.c
        claimable = sa.or_(o.status == "pending", sa.and_(o.status == "sending", o.lease_until_ms < now_ms))
        q = sa.select(o.key, o.message).where(claimable).order_by(o.priority, o.created_ms, o.key).limit(limit)
        if self.postgres:
            q = q.with_for_update(skip_locked=True)
        try:
            with self.engine.begin() as conn:
                rows = conn.execute(q).all()
                if not rows:
                    return []
                # One UPDATE for the round (it was one per notice): still claimable when it runs, and RETURNING says
                # which went to us (on SQLite another process may have claimed some since the SELECT).
                ours = set(conn.execute(sa.update(outbox).where(o.key.in_([r.key for r in rows]), claimable).values(
                    status="sending", lease_until_ms=now_ms + lease_ms, claimed_by=worker, deliveries=o.deliveries + 1,
                ).returning(o.key)).scalars())
        except sa.exc.OperationalError:
            return []  # SQLite busy: another process is claiming; try again on the next round
        return [(r.key, r.message) for r in rows if r.key in ours]

    def finish_outbox(self, key: str, worker: str) -> None:
        self.finish_outbox_many([key], worker)

    def finish_outbox_many(self, keys: Sequence[str], worker: str) -> None:
        """Mark delivered notices done, one transaction (the notices of one round finish together, issue 19)."""
        if not keys:
            return
        o = outbox.c
        with self.engine.begin() as conn:
            for i in range(0, len(keys), 500):  # well under SQLite's limit of variables per statement
                conn.execute(sa.update(outbox).where(o.key.in_(keys[i:i + 500]), o.claimed_by == worker).values(status="done", lease_until_ms=None))

    def outbox_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {str(s): int(n) for s, n in conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))}
