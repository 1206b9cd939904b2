"""The uplink queue: one PostgreSQL table between the ingest workers and the rules leader.

How this works: an ingest worker writes one row per message it hands to alerting: `uplink` rows (events,
availability, gateway status, patrol: the topic and the re-encoded message) one by one, at once, on their own
connection; `readings` rows (the readings of one telemetry message) in multi-row batches on another, so a
life-safety row never waits behind telemetry. Every insert is `ON CONFLICT (key) DO NOTHING` on a unique key
(`{gateway}/{msg_id}` for uplinks, `{gateway}/{device}@{source_ts_ms}:{metrics}` for readings), so a worker
that replays its journal after a crash never adds a row twice; each insert transaction ends with `NOTIFY
uplink_queue`, which wakes the leader when it commits. Console actions and ladder moves are `move`/`window`
rows, written by any backend process.

The rules leader reads pending rows (`consumed_ms IS NULL`) ordered by (priority, id) and marks them
consumed in the same transaction as the alarm writes they caused (backend.relay.leader). A consumed row is
kept for `relay.retain_consumed_h` so its key still refuses a late replay, then pruned.

Why not a plain id cursor: ids come from a sequence at insert time, but concurrent workers commit in any
order, so a reader at cursor 101 can miss a row 100 that commits a moment later. Marking rows consumed has
no such gap; the cost is one UPDATE per consumed batch.

Invariants: a key is in the table at most once; a row is consumed at most once (the UPDATE that marks it
checks `consumed_ms IS NULL`, and a leader that finds a row already consumed rolls its whole transaction back).

Schema: `uplink_queue` below is the table's one definition; backend/relay/migrations creates and upgrades it
(version table `alembic_version_relay`, run by `ensure_tables` at start). The queries are hand-written SQL on
one psycopg connection (the hot path: no statement building per row).

Exceptions:

    RelayError
     ├── QueueUnavailable   PostgreSQL refused or is unreachable (carries why)
     └── LostLeadership     this process no longer holds the rules lock; its transaction is rolled back
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import sqlalchemy as sa

from backend.errors import BackendError
from backend.ingest.handoff import AlertingUnavailable, Reading
from backend.store.migrations import upgrade
from broker.kinds import Priority
from broker.schemas import Uplink, encode

__all__ = [
    "CHANNEL", "LostLeadership", "QueueRow", "QueueUnavailable", "RelayError", "UplinkQueue", "mark_consumed", "metadata", "migrate_queue",
    "pg_conninfo", "readings_rows", "uplink_queue",
]

CHANNEL = "uplink_queue"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_relay"  # its own: the alarm store and others migrate the same database

metadata = sa.MetaData()

uplink_queue = sa.Table(
    "uplink_queue",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # uplink | readings | move | window
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("topic", sa.Text),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("received_ms", sa.BigInteger, nullable=False),
    sa.Column("enqueued_ms", sa.BigInteger, nullable=False, server_default=sa.text("(extract(epoch from clock_timestamp()) * 1000)::bigint")),
    sa.Column("consumed_ms", sa.BigInteger),
    sa.Column("result", sa.Text),
    sa.UniqueConstraint("key", name="ux_uplink_queue_key"),
)
sa.Index("ix_uplink_queue_pending", uplink_queue.c.priority, uplink_queue.c.id, postgresql_where=uplink_queue.c.consumed_ms.is_(None))
sa.Index("ix_uplink_queue_consumed", uplink_queue.c.consumed_ms, postgresql_where=uplink_queue.c.consumed_ms.is_not(None))

_INSERT = ("INSERT INTO uplink_queue (key, kind, priority, topic, body, received_ms) VALUES (%s, %s, %s, %s, %s, %s) "
           "ON CONFLICT (key) DO NOTHING")


class RelayError(BackendError):
    pass


class QueueUnavailable(RelayError, AlertingUnavailable):
    """PostgreSQL is away; to ingest this is "alerting is unavailable": the message stays journaled, offered again."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the uplink queue is unavailable: {why}")
        self.why = why


class LostLeadership(RelayError):
    def __init__(self, why: str) -> None:
        super().__init__(f"no longer the rules leader: {why}")
        self.why = why


@dataclass(frozen=True, slots=True)
class QueueRow:
    id: int
    key: str
    kind: str  # uplink | readings | move | window
    topic: str | None
    body: bytes
    received_ms: int


def pg_conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (postgresql+psycopg://...)."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"the uplink queue needs PostgreSQL, not {u.get_backend_name()} ({u.render_as_string(hide_password=True)})")
    return str(u.set(drivername="postgresql").render_as_string(hide_password=False))


def migrate_queue(conninfo: str) -> None:
    """Bring the queue table to the newest revision, on a connection of its own (the queue's own is autocommit)."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo, connect_timeout=10), poolclass=sa.pool.NullPool)
    try:
        upgrade(engine, MIGRATIONS, VERSION_TABLE)
    finally:
        engine.dispose()


_reading_enc = msgspec.json.Encoder()
_reading_dec = msgspec.json.Decoder(list[tuple[str, str, str, float, int, int, bool]])


def readings_rows(readings: Sequence[Reading]) -> list[tuple[str, str, int, None, bytes, int]]:
    """Readings grouped per telemetry message (gateway, device, source time): one idempotent row each."""
    groups: dict[tuple[str, str, int], list[Reading]] = {}
    for r in readings:
        groups.setdefault((r.gateway_id, r.device_id, r.source_ts_ms), []).append(r)
    rows = []
    for (gw, dev, ts), rs in groups.items():
        metrics = hashlib.blake2s(",".join(sorted(r.metric for r in rs)).encode(), digest_size=4).hexdigest()
        body = _reading_enc.encode([(r.device_id, r.gateway_id, r.metric, r.value, r.source_ts_ms, r.received_ms, r.drill) for r in rs])
        rows.append((f"{gw}/{dev}@{ts}:{metrics}", "readings", int(Priority.TELEMETRY), None, body, rs[0].received_ms))
    return rows


def decode_readings(body: bytes) -> list[Reading]:
    return [Reading(*t) for t in _reading_dec.decode(body)]


def mark_consumed(conn: sa.Connection, ids: Sequence[int], now_ms: int) -> None:
    """Inside the leader's transaction: mark rows consumed, refusing (rolling back) if any already was."""
    if not ids:
        return
    n = conn.execute(sa.text("UPDATE uplink_queue SET consumed_ms = :now WHERE id = ANY(:ids) AND consumed_ms IS NULL"),
                     {"now": now_ms, "ids": list(ids)}).rowcount
    if n != len(ids):
        raise LostLeadership(f"{len(ids) - n} of {len(ids)} queue rows were already consumed by another leader")


def record_results(conn: sa.Connection, results: Mapping[int, str]) -> None:
    """Inside the leader's transaction: the results of rows marked consumed in it (a parked row's reason), so a row is
    never consumed without the record of what became of it (before, the results followed in a second transaction: a
    reader could see a parked row consumed and not yet parked, and a crash in between lost the record)."""
    if results:
        conn.execute(sa.text("UPDATE uplink_queue SET result = :result WHERE id = :id"), [{"result": r, "id": i} for i, r in results.items()])


class UplinkQueue:
    """Blocking access to the queue on one psycopg connection (call from one thread at a time)."""

    def __init__(self, url: str) -> None:
        self.conninfo = pg_conninfo(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise QueueUnavailable(str(exc)) from exc
        return self._conn

    def _do(self, fn: Any) -> Any:
        with self._lock:
            try:
                return fn(self._connection())
            except psycopg.Error as exc:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise QueueUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def ensure_tables(self) -> None:
        try:
            migrate_queue(self.conninfo)
        except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
            raise QueueUnavailable(f"cannot migrate the queue table: {type(exc).__name__}: {exc}") from exc

    def put_uplink(self, uplink: Uplink, received_ms: int) -> None:
        msg = uplink.message
        key = f"{uplink.topic.gateway}/{msg.msg_id}"  # type: ignore[union-attr]
        row = (key, "uplink", int(uplink.priority), str(uplink.topic), encode(msg), received_ms)
        self.put_rows([row])

    def put_rows(self, rows: Sequence[tuple[str, str, int, str | None, bytes, int]]) -> None:
        """Insert rows (skipping keys already there) and NOTIFY, in one transaction."""
        if not rows:
            return

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_INSERT, rows)
                cur.execute(f"NOTIFY {CHANNEL}")

        self._do(run)

    def put_command(self, kind: str, key: str, body: bytes, now_ms: int) -> int:
        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                row = conn.execute(_INSERT + " RETURNING id", (key, kind, int(Priority.STATUS), None, body, now_ms)).fetchone()
                conn.execute(f"NOTIFY {CHANNEL}")
            assert row is not None
            return int(row[0])

        return int(self._do(run))

    def result(self, row_id: int) -> str | None:
        def run(conn: psycopg.Connection[Any]) -> str | None:
            row = conn.execute("SELECT result FROM uplink_queue WHERE id = %s", (row_id,)).fetchone()
            return None if row is None else row[0]

        out: str | None = self._do(run)
        return out

    def pending(self, limit: int) -> list[QueueRow]:
        def run(conn: psycopg.Connection[Any]) -> list[QueueRow]:
            rows = conn.execute(
                "SELECT id, key, kind, topic, body, received_ms FROM uplink_queue WHERE consumed_ms IS NULL ORDER BY priority, id LIMIT %s",
                (limit,),
            ).fetchall()
            return [QueueRow(int(i), k, kd, t, bytes(b), int(r)) for i, k, kd, t, b, r in rows]

        out: list[QueueRow] = self._do(run)
        return out

    def set_results(self, results: dict[int, str]) -> None:
        if results:
            self._do(lambda conn: conn.cursor().executemany("UPDATE uplink_queue SET result = %s WHERE id = %s",
                                                            [(r, i) for i, r in results.items()]))

    def depth(self) -> dict[str, int]:
        def run(conn: psycopg.Connection[Any]) -> dict[str, int]:
            rows = conn.execute("SELECT kind, count(*) FROM uplink_queue WHERE consumed_ms IS NULL GROUP BY kind").fetchall()
            return {k: int(n) for k, n in rows}

        out: dict[str, int] = self._do(run)
        return out

    def backlog(self, now_ms: int) -> dict[str, int | None]:
        """Rows waiting for the rules leader and the age of the oldest (ms; None when none wait): a queue that
        stays non-empty with a growing age is stuck. For /readyz and the console, with RulesSeat.stuck()."""
        def run(conn: psycopg.Connection[Any]) -> dict[str, int | None]:
            row = conn.execute("SELECT count(*), min(enqueued_ms) FROM uplink_queue WHERE consumed_ms IS NULL").fetchone()
            n, oldest = (int(row[0]), row[1]) if row else (0, None)
            return {"pending": n, "oldest_pending_age_ms": None if oldest is None else max(0, now_ms - int(oldest))}

        out: dict[str, int | None] = self._do(run)
        return out

    def parked(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent rows the rules leader parked (consumed without effect after bounded retries), newest first."""
        def run(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT key, consumed_ms, result FROM uplink_queue WHERE kind = 'uplink' AND consumed_ms IS NOT NULL "
                "AND result LIKE '{\"ok\":false,\"error\":\"parked\"%%' ORDER BY consumed_ms DESC LIMIT %s", (limit,),
            ).fetchall()
            return [{"key": k, "consumed_ms": int(c), "result": r} for k, c, r in rows]

        out: list[dict[str, Any]] = self._do(run)
        return out

    def prune(self, before_ms: int) -> int:
        out: int = self._do(lambda conn: conn.execute("DELETE FROM uplink_queue WHERE consumed_ms < %s", (before_ms,)).rowcount)
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
