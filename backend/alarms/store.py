"""The durable alarm store: alarms, their audit log, device records and rule state, via SQLAlchemy 2.

How this works: the constructor runs the Alembic migrations (backend/alarms/migrations) on the engine, so
a store that exists has the current schema; SQLite by default, PostgreSQL in production. `apply(actions)`
writes what the alerting core decided in ONE transaction: each `Persist` upserts the alarm row (by id) and
appends its audit entries; each `DeviceRecord` is appended. The open-key partial unique index makes the
database refuse a second open alarm for a key even if a bug tried. Methods are synchronous; the async
service calls them off the event loop.

Exceptions: what the database (SQLAlchemy, psycopg, sqlite3) raised is translated here, at the boundary, into
one small tree; the driver's error is the `__cause__`, and nothing of the driver leaks inward:

    StoreError
     ├── StoreUnavailable   not now: connection refused or lost, server shutting down, disk full, lock timeout,
     │                      read-only, I/O error. Nothing was written; the same write will succeed once the
     │                      database is back. Callers wait it out (ingest keeps the message journaled).
     └── StoreRefused       this content: the database refused these rows (a NUL byte, a value too long, a
                            constraint). Retrying the same rows fails the same way.

`StoreUnavailable` is also a backend.ingest.handoff.AlertingUnavailable: the ingest pipeline knows it as "the
alerting side is away" without importing the store.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from alerting.lifecycle import AlarmState
from alerting.model import Action, Alarm, AlarmKey, AuditEntry, DeviceRecord, Persist, Place, Severity
from backend.alarms.schema import alarm_assignments, alarm_audit, alarm_comment_photos, alarm_comments, alarms, device_records, rule_state
from backend.errors import BackendError
from backend.ingest.handoff import AlertingUnavailable
from backend.store.db import QueuedWriter, make_engine, sqlite_file
from backend.store.files import replace_atomically
from backend.store.migrations import upgrade

__all__ = ["IN_TRANSACTION", "AlarmRecord", "AlarmStore", "StoreError", "StoreRefused", "StoreUnavailable", "migrate", "record_json_of", "record_of",
           "translate"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_alarms"  # its own version table: other stores migrate the same database
DAY_MS = 86_400_000
# SQLite: host parameters in one multi-row statement (`_write_many`), at most; less where the build allows fewer
# (999 before SQLite 3.32, 32,766 since). ~260 alarms of a storm's round in one statement: each statement is two waits
# for Python's GIL (its prepare and its step let it go), and a wait behind the busy event loop costs up to a switch interval.
PARAMS_PER_STATEMENT = 8_192
WRITTEN_KEPT = 4_096  # alarms whose committed record JSON waits for the live feed (`AlarmStore.take_written`) at most


class StoreError(BackendError, RuntimeError):
    """The alarm store failed; `why` says how, in words a duty officer's log can show."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class StoreUnavailable(StoreError, AlertingUnavailable):
    """The database cannot take writes now (down, unreachable, full, locked, read-only): wait and retry."""


class StoreRefused(StoreError):
    """The database refused this content; the same rows will be refused again."""


# SQLSTATE classes and codes of PostgreSQL that mean "not now" (Appendix A of its manual): 08 connection
# exception, 53 insufficient resources (disk full, out of memory, too many connections), 57 operator
# intervention (admin shutdown, cannot connect now), 58 system error (I/O), 55P03 lock not available,
# 25006 read-only transaction, 40001/40P01 serialization failure and deadlock (the same write succeeds on retry).
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "HV")
_PG_UNAVAILABLE_CODES = frozenset({"55P03", "55006", "25006", "40001", "40P01"})
# SQLite primary result codes that mean "not now": BUSY 5, LOCKED 6, NOMEM 7, READONLY 8, IOERR 10, FULL 13,
# CANTOPEN 14, PROTOCOL 15. (CONSTRAINT 19, TOOBIG 18, MISMATCH 20 are the content's fault.)
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def _unavailable(exc: BaseException) -> bool:
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _PG_UNAVAILABLE_CLASSES or sqlstate in _PG_UNAVAILABLE_CODES
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_UNAVAILABLE
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    # No code to go by (a connection that could not be made, a pool timeout): the driver's class says it.
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DisconnectionError | sa.exc.TimeoutError
                      | ConnectionError | TimeoutError)


def translate(exc: BaseException, what: str) -> StoreError:
    """The store's exception for a database error raised while doing `what` (raise it `from exc`)."""
    why = f"{what}: {type(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).__name__}: {str(exc).splitlines()[0]}"
    return StoreUnavailable(why) if _unavailable(exc) else StoreRefused(why)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise the store's exception for any database error inside the block (see the module docstring)."""
    try:
        yield
    except _DB_ERRORS as exc:
        raise translate(exc, what) from exc


# What the database layer raises: SQLAlchemy wraps the driver's errors; a few come unwrapped (psycopg's dumper
# refusing a NUL byte raises before the statement is sent; a socket error while connecting).
_DB_ERRORS = (sa.exc.SQLAlchemyError, OSError)


# Hook for backend/relay (issue 10, scale-out): work that must commit in the SAME transaction as the alarm
# writes of `apply`: the rules leader marks the uplink-queue rows it consumed (exactly once) and checks it
# still holds the leader lock (a fence). Set per asyncio task; asyncio.to_thread carries it into the thread.
# Unset (the default, and always in the single-process system) it changes nothing.
IN_TRANSACTION: ContextVar[Callable[[sa.Connection], None] | None] = ContextVar("alarm_store_in_transaction", default=None)


def migrate(engine: sa.Engine) -> None:
    """Bring the alarm tables to the newest revision (idempotent; one process at a time on PostgreSQL)."""
    upgrade(engine, MIGRATIONS, VERSION_TABLE)


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm as the API shows it."""

    id: str
    key: str
    alarm_type: str
    severity: str
    state: str
    title: str
    life_safety: bool
    device_id: str | None
    gateway_id: str | None
    building_id: str | None
    unit: int | None
    household_id: str | None
    grid_id: str | None
    community_id: str | None
    drill: bool
    occurrences: int
    first_seen_ms: int
    last_seen_ms: int
    raised_at_ms: int
    updated_ms: int
    needs_callback: bool
    flapping: bool
    silenced_until_ms: int | None
    silenced_by: str | None
    cause: str | None
    detail: str | None
    is_open: bool

    def as_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def _row(a: Alarm, grid: str | None, community: str | None) -> dict[str, Any]:
    return {
        "id": a.id, "key": str(a.key), "subject": a.key.subject, "alarm_type": a.alarm_type, "severity": a.severity.value,
        "state": a.state.value, "life_safety": a.life_safety, "title": a.title[:300], "device_id": a.place.device,
        "gateway_id": a.place.gateway, "building_id": a.place.building, "unit": a.place.unit, "household_id": a.place.household,
        "grid_id": grid, "community_id": community, "drill": a.drill, "occurrences": a.occurrences, "first_seen_ms": a.first_seen_ms,
        "last_seen_ms": a.last_seen_ms, "raised_at_ms": a.raised_at_ms, "updated_ms": a.updated_ms, "audit_seq": a.audit_seq,
        "needs_callback": a.needs_callback, "flapping": a.flapping, "recent_changes": ",".join(map(str, a.recent_changes_ms)),
        "silenced_until_ms": a.silenced_until_ms, "silenced_by": a.silenced_by, "cause": a.cause, "cause_closed_ms": a.cause_closed_ms,
        "detail": (a.detail or "")[:500] or None, "source_msg_id": a.source_msg_id, "is_open": a.is_open,
    }


ALARM_ROW_KEYS = tuple(c.name for c in alarms.c)  # `_row`'s keys, in this order (tests/alarms/test_store.py)
AUDIT_ROW_KEYS = tuple(c.name for c in alarm_audit.c if c.name != "id")  # `AlarmStore._audit_row`'s


def record_of(a: Alarm, grid: str | None, community: str | None) -> AlarmRecord:
    """The alarm as its row reads back, filed under this grid and community."""
    return AlarmRecord(**record_json_of(a, grid, community))


def record_json_of(a: Alarm, grid: str | None, community: str | None) -> dict[str, Any]:
    """`record_of(...).as_json()` without the record in between (the live feed's path: one per alarm in a storm)."""
    return _record_json(_row(a, grid, community))


def _record_json(row: dict[str, Any]) -> dict[str, Any]:
    return {f: row[f] for f in AlarmRecord.__slots__}


def _values_of(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values in `names` order, as a tuple: operator.itemgetter takes a fifth of the time of a generator over
    the names (~1 ms less per storm round of 256 alarms, in the commit's thread, which holds the GIL meanwhile)."""
    if len(names) == 1:
        key = names[0]
        return lambda r: (r[key],)
    getter: Callable[[dict[str, Any]], tuple[Any, ...]] = operator.itemgetter(*names)
    return getter


@dataclass(frozen=True, slots=True)
class _Rows:
    """What `AlarmStore.apply` writes for a batch of actions: alarm rows in runs of distinct alarms, audit entries,
    device records, and (alarm, row) for the live feed."""

    runs: list[list[dict[str, Any]]]
    audit: list[dict[str, Any]]
    records: list[dict[str, Any]]
    written: list[tuple[Alarm, dict[str, Any]]]


def _busy(exc: sa.exc.OperationalError) -> bool:
    """SQLite said the file is locked by another writer (SQLITE_BUSY, or a stale read snapshot: SQLITE_BUSY_SNAPSHOT)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _alarm(r: Any) -> Alarm:
    return Alarm(
        id=r.id, key=AlarmKey.parse(r.key), state=AlarmState(r.state), severity=Severity(r.severity), life_safety=r.life_safety,
        title=r.title, place=Place(r.device_id, r.gateway_id, r.building_id, r.unit, r.household_id), occurrences=r.occurrences,
        first_seen_ms=r.first_seen_ms, last_seen_ms=r.last_seen_ms, raised_at_ms=r.raised_at_ms, updated_ms=r.updated_ms,
        audit_seq=r.audit_seq, needs_callback=r.needs_callback, flapping=r.flapping,
        recent_changes_ms=tuple(int(x) for x in r.recent_changes.split(",") if x), silenced_until_ms=r.silenced_until_ms,
        silenced_by=r.silenced_by, cause=r.cause, cause_closed_ms=r.cause_closed_ms, detail=r.detail, source_msg_id=r.source_msg_id,
    )


class AlarmStore:
    def __init__(self, engine: sa.Engine, building_context: Callable[[str], tuple[str | None, str | None]] | None = None, *,
                 gateway_context: Callable[[str], tuple[str | None, str | None]] | None = None) -> None:
        """`building_context(building_id)` -> (grid id, community id), to file alarms by grid and community;
        `gateway_context(gateway_id)` the same for an alarm with no building (backend.alarms.adapter)."""
        self.engine = engine
        self.building_context = building_context or (lambda _b: (None, None))
        self.gateway_context = gateway_context or (lambda _g: (None, None))
        self._upsert_stmt: Any = None
        # SQLite: statement name -> (INSERT .. VALUES, one row's "(?, ..)", what follows, a row's values in parameter
        # order (`_values_of`), rows per statement) (`_write_many`)
        self._compiled: dict[str, tuple[str, str, str, Callable[[dict[str, Any]], tuple[Any, ...]], int]] = {}
        # `keep_written`: the record JSON of each alarm written, kept from the commit for the live feed (`take_written`)
        self.keep_written = False
        self._written: dict[int, tuple[Alarm, dict[str, Any]]] = {}
        self._loop_engine: sa.Engine | None = None  # SQLite: the event loop's own connection (`apply_now`)
        self._sqlite_path = sqlite_file(engine)
        self._table_state_cleared: set[str] = set()  # SQLite: snapshots whose old row and crash leftovers this store removed
        try:
            migrate(engine)
        except _DB_ERRORS as exc:
            raise translate(exc, f"cannot migrate the alarm store at {engine.url.render_as_string(hide_password=True)}") from exc
        if self._sqlite_path is not None:  # opened here, at start: the event loop's first alarm opens no file
            self._loop_engine = make_engine(engine.url.render_as_string(hide_password=False), event_loop_writer=True)
            with self._loop_engine.connect() as conn:
                # ...nor compiles its statements: SQLAlchemy's compile of the upsert took ~5 ms, paid by the first alarm
                # after each start (on the event loop, inside its commit) until then
                self._shape(conn, "alarms", self._upsert(), ALARM_ROW_KEYS)
                self._shape(conn, "audit", sa.insert(alarm_audit), AUDIT_ROW_KEYS)

    def _insert(self) -> Any:
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    def _upsert(self) -> Any:
        """The alarm upsert, built once: building a SQLAlchemy statement per row costs ~100x its execution."""
        if self._upsert_stmt is None:
            stmt = self._insert()(alarms)
            self._upsert_stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={c.name: stmt.excluded[c.name] for c in alarms.c if c.name != "id"})
        return self._upsert_stmt

    def place_of(self, place: Place) -> tuple[str | None, str | None]:
        """(grid id, community id) an alarm at `place` is filed under: its building's, else its gateway's."""
        return (self.building_context(place.building) if place.building
                else self.gateway_context(place.gateway) if place.gateway else (None, None))

    def record(self, a: Alarm) -> AlarmRecord:
        """The alarm as its row reads back (what the board shows), without reading it back."""
        return record_of(a, *self.place_of(a.place))

    def take_written(self, a: Alarm) -> dict[str, Any] | None:
        """`record_json_of(a, *place_of(a.place))` as `apply` built it when it committed this very alarm (the
        object, not an equal one), handed over once; None if it was not kept. With `keep_written` on, the commit's
        thread builds each row once for the database and the live feed, and the event loop does not build it again
        (issue 19: ~20 µs an alarm in a storm)."""
        kept = self._written.pop(id(a), None)
        return kept[1] if kept is not None and kept[0] is a else None

    # -- writing -----------------------------------------------------------------------------------------
    def apply(self, actions: Sequence[Action], *, synced: bool = True) -> bool:
        """Write the core's decisions in one transaction, in order (a close before the re-open of its key). Return
        whether a `sync()` is still owed: `synced=False` on SQLite commits without the fsync inside the commit
        (synchronous=NORMAL for this transaction: it survives a crash of the process, a power cut only after `sync()`);
        the connection goes back to the pool with its FULL again. PostgreSQL's commit is durable as it returns.

        Alarm rows go as few executemany calls of one prepared upsert: consecutive writes of distinct alarms
        share a call; a second write of the same alarm starts the next call, so the rows reach the database
        in the core's order and the open-key unique index never sees two open alarms for a key. Audit
        entries and device records follow in one call each (nothing reads them inside the transaction)."""
        if not actions:
            return False
        rows = self._rows(actions)
        unsynced = not synced and self._sqlite_path is not None
        try:
            with self.engine.connect() as conn:
                driver = conn.connection.driver_connection  # the pragma outside SQLAlchemy's transaction (no autobegin)
                if unsynced:
                    driver.execute("PRAGMA synchronous = NORMAL")  # type: ignore[union-attr]
                try:
                    with conn.begin():
                        self._write(conn, rows)
                        also = IN_TRANSACTION.get()  # issue 10 hook, see IN_TRANSACTION
                        if also is not None:
                            also(conn)
                finally:
                    if unsynced:
                        driver.execute("PRAGMA synchronous = FULL")  # type: ignore[union-attr]
        except _DB_ERRORS as exc:
            raise translate(exc, f"could not store {len(actions)} alarm actions") from exc
        self._keep(rows)
        return unsynced

    def apply_now(self, actions: Sequence[Action]) -> bool:
        """`apply` on the calling thread, for a caller that must not wait (the event loop, with a few life-safety
        alarms): SQLite only, and only if nobody writes the file now. True once committed: durable against a crash of
        the process (synchronous=NORMAL), not yet against a power cut until `sync()` returns. False, with nothing
        written, when the file is busy (another connection of this process or another process writes it), on
        another database, or inside a cluster's transaction hook: the caller then uses `apply` from its thread.

        Issue 19: a lone smoke alarm's commit from the commit thread took ~1.4 ms at the median (~0.5 ms of it the
        fsync) and its slowest ones 4-11 ms, much of that waiting to be scheduled (the thread woken, then the event
        loop woken back) on two cores shared with the broker and the devices. Here the commit needs neither wake-up,
        and the fsync (`sync`) is done in the commit thread while the alarm goes out to the console and the ladder;
        the caller returns (and the ingest journal marks the message done) only after it."""
        if not actions or self._sqlite_path is None or IN_TRANSACTION.get() is not None:
            return False
        rows = self._rows(actions)
        try:
            assert self._loop_engine is not None
            with self._loop_engine.connect() as conn:
                writer = conn.connection.driver_connection
                assert isinstance(writer, QueuedWriter)
                if not writer.try_hold():
                    return False  # a thread of this process is writing the file: never wait for it here
                try:
                    with conn.begin():
                        self._write(conn, rows)
                except sa.exc.OperationalError as exc:
                    if _busy(exc):  # another process holds the file's write lock: nothing was written
                        return False
                    raise
                finally:
                    writer.release_hold()
        except _DB_ERRORS as exc:
            raise translate(exc, f"could not store {len(actions)} alarm actions") from exc
        self._keep(rows)
        return True

    def sync(self) -> None:
        """Make what `apply_now` committed durable against a power cut: the write-ahead log flushed to the disk, which
        is what synchronous=FULL does inside each commit (the log's frames are the commits; a checkpoint syncs the
        database file itself). Raises OSError when the disk refuses."""
        path = self._sqlite_path
        if path is None:
            return
        try:
            fd = os.open(path.with_name(path.name + "-wal"), os.O_RDONLY)
        except FileNotFoundError:  # the last connection closed and checkpointed it into the database file, synced
            return
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _rows(self, actions: Sequence[Action]) -> _Rows:
        runs: list[list[dict[str, Any]]] = [[]]
        in_run: set[str] = set()
        audit: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        written: list[tuple[Alarm, dict[str, Any]]] = []
        for act in actions:
            if isinstance(act, Persist):
                if act.alarm.id in in_run:
                    runs.append([])
                    in_run.clear()
                in_run.add(act.alarm.id)
                row = _row(act.alarm, *self.place_of(act.alarm.place))
                runs[-1].append(row)
                if self.keep_written:
                    written.append((act.alarm, row))
                audit += [self._audit_row(e) for e in act.audit]
            elif isinstance(act, DeviceRecord):
                records.append({"device_id": act.device, "kind": act.kind, "at_ms": act.at_ms, "drill": act.drill,
                                "detail": (act.detail or "")[:500] or None})
        return _Rows(runs, audit, records, written)

    def _write(self, conn: sa.Connection, rows: _Rows) -> None:
        for run in rows.runs:
            if run:
                self._write_many(conn, "alarms", self._upsert(), run)
        if rows.audit:
            self._write_many(conn, "audit", sa.insert(alarm_audit), rows.audit)
        if rows.records:
            conn.execute(sa.insert(device_records), rows.records)

    def _keep(self, rows: _Rows) -> None:
        if rows.written:  # committed: kept for the live feed, which takes each once (bounded: one not taken is built again)
            if len(self._written) > WRITTEN_KEPT:
                self._written.clear()
            self._written.update((id(a), (a, _record_json(row))) for a, row in rows.written)

    def _write_many(self, conn: sa.Connection, name: str, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """`conn.execute(stmt, rows)`; on SQLite as multi-row statements of the statement compiled once (VALUES
        (...), (...), ... up to PARAMS_PER_STATEMENT values, or the build's limit), each row's values a plain tuple. Issue 19: SQLAlchemy's
        per-row parameter processing cost more than SQLite's insert itself, and the driver gives Python's GIL back
        around every statement step: one step per row meant one wait for the GIL per row behind the busy event loop
        (a storm's 252-alarm commit took 50-300 ms instead of ~15). The values are plain str, int, bool and None,
        which sqlite3 takes as they are."""
        if self.engine.dialect.name != "sqlite":
            conn.execute(stmt, rows)
            return
        head, row, tail, values_of, per = self._shape(conn, name, stmt, list(rows[0]))  # values_of: a row's values in the statement's order
        for i in range(0, len(rows), per):
            chunk = rows[i:i + per]
            conn.exec_driver_sql(head + ", ".join([row] * len(chunk)) + tail, tuple(itertools.chain.from_iterable(map(values_of, chunk))))

    def _shape(self, conn: sa.Connection, name: str, stmt: Any, keys: Sequence[str]) -> tuple[str, str, str, Callable[[dict[str, Any]], tuple[Any, ...]], int]:
        """`_write_many`'s statement `name` compiled once for rows with these keys (every row of a name has the same keys:
        `_row`, `_audit_row`)."""
        shape = self._compiled.get(name)
        if shape is None:
            c = stmt.compile(dialect=self.engine.dialect, column_keys=list(keys))
            sql = str(c)
            head, values, rest = sql.partition(" VALUES ")
            row = rest[:rest.index(")") + 1]
            assert c.positional
            assert c.positiontup is not None
            assert values, sql
            assert row.count("?") == sql.count("?") == len(c.positiontup), sql
            limit = conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
            per_row = len(c.positiontup)
            shape = self._compiled[name] = (head + values, row, rest[len(row):], _values_of(c.positiontup), max(1, min(limit, PARAMS_PER_STATEMENT) // per_row))
        return shape

    @staticmethod
    def _audit_row(e: AuditEntry) -> dict[str, Any]:
        return {"alarm_id": e.alarm_id, "seq": e.seq, "at_ms": e.at_ms, "actor": e.actor[:64], "move": e.move,
                "from_state": e.from_state.value if e.from_state else None, "to_state": e.to_state.value, "note": e.note[:500], "drill": e.drill}

    def rule_state_file(self, name: str) -> Path | None:
        """Where a SQLite store keeps the rule-state snapshot `name`: a file beside the database (`alarms.db` ->
        `alarms.db.rule-state-engine`), written whole and renamed into place. In the database it held the file's one
        write lock while ~10 MB (street scale) went in, 73-200 ms every `snapshot_s`, and a smoke alarm committed
        meanwhile waited (issue 19). None on PostgreSQL (row locks; the `rule_state` table) and in memory."""
        db = sqlite_file(self.engine)
        return None if db is None else db.with_name(f"{db.name}.rule-state-{name}")

    def save_rule_state(self, name: str, data: bytes, now_ms: int) -> None:
        path = self.rule_state_file(name)
        if path is not None:
            with translated("could not save the rule state"):
                replace_atomically(path, data, prefix=f".{path.name}-")
                if name not in self._table_state_cleared:  # an older version's row must never come back over the file
                    with self.engine.begin() as conn:
                        conn.execute(sa.delete(rule_state).where(rule_state.c.name == name))
                    for left in path.parent.glob(f".{path.name}-*"):  # a crash's temporary file (~10 MB); one writer per file
                        left.unlink(missing_ok=True)
                    self._table_state_cleared.add(name)
            return
        with translated("could not save the rule state"), self.engine.begin() as conn:
            self._write_rule_state_row(conn, name, data, now_ms)

    def _write_rule_state_row(self, conn: sa.Connection, name: str, data: bytes, now_ms: int) -> None:
        """The snapshot as its `rule_state` row (PostgreSQL), inside the caller's transaction."""
        stmt = self._insert()(rule_state).values(name=name, data=data, updated_ms=now_ms)
        conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"data": stmt.excluded.data, "updated_ms": now_ms}))

    def purge(self, now_ms: int, retention_days: int) -> int:
        """Delete closed alarms, their audit entries and device records older than the retention period."""
        if retention_days < 366:
            raise ValueError("alarm records are kept at least a year (GB 50440)")
        cutoff = now_ms - retention_days * DAY_MS
        with translated("could not purge old alarm records"), self.engine.begin() as conn:
            old = sa.select(alarms.c.id).where(~alarms.c.is_open, alarms.c.updated_ms < cutoff)
            conn.execute(sa.delete(alarm_audit).where(alarm_audit.c.alarm_id.in_(old)))
            for t in (alarm_assignments, alarm_comments, alarm_comment_photos):  # issue 17: the alarm's collaboration goes with it (photo files stay)
                conn.execute(sa.delete(t).where(t.c.alarm_id.in_(old)))
            n = conn.execute(sa.delete(alarms).where(~alarms.c.is_open, alarms.c.updated_ms < cutoff)).rowcount
            conn.execute(sa.delete(device_records).where(device_records.c.at_ms < cutoff))
        return int(n)

    # -- reading -----------------------------------------------------------------------------------------
    def load_rule_state(self, name: str) -> bytes | None:
        """The last snapshot saved: on SQLite the file (`rule_state_file`), else (PostgreSQL, or a store an older
        version wrote) the `rule_state` row."""
        path = self.rule_state_file(name)
        if path is not None:
            with translated("could not read the rule state"), contextlib.suppress(FileNotFoundError):
                return path.read_bytes()
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            row = conn.execute(sa.select(rule_state.c.data).where(rule_state.c.name == name)).first()
        return bytes(row.data) if row is not None else None

    def open_alarms(self) -> list[Alarm]:
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return [_alarm(r) for r in conn.execute(sa.select(alarms).where(alarms.c.is_open))]

    def changed_since(self, since_ms: int) -> list[Alarm]:
        """Alarms whose row changed at or after `since_ms`, oldest change first (a feed's durable source)."""
        q = sa.select(alarms).where(alarms.c.updated_ms >= since_ms).order_by(alarms.c.updated_ms)
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return [_alarm(r) for r in conn.execute(q)]

    def has_history(self) -> bool:
        """Has this store ever held an alarm or a device record (the site ran before)?"""
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return any(conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None for t in (alarms, device_records))

    def latest_change_ms(self) -> int:
        """The newest row change's time (0: no alarms yet)."""
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(alarms.c.updated_ms))).scalar_one() or 0)

    def get(self, alarm_id: str) -> Alarm | None:
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            r = conn.execute(sa.select(alarms).where(alarms.c.id == alarm_id)).first()
        return _alarm(r) if r is not None else None

    def audit(self, alarm_id: str) -> list[AuditEntry]:
        q = sa.select(alarm_audit).where(alarm_audit.c.alarm_id == alarm_id).order_by(alarm_audit.c.seq)
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return [AuditEntry(r.alarm_id, r.seq, r.at_ms, r.actor, r.move, AlarmState(r.from_state) if r.from_state else None,
                               AlarmState(r.to_state), r.note, r.drill) for r in conn.execute(q)]

    def device_records(self, device_id: str) -> list[DeviceRecord]:
        q = sa.select(device_records).where(device_records.c.device_id == device_id).order_by(device_records.c.at_ms)
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return [DeviceRecord(r.device_id, r.kind, r.at_ms, r.drill, r.detail) for r in conn.execute(q)]

    def list(self, *, open_only: bool = False, limit: int = 200, drill: bool | None = None) -> list[AlarmRecord]:
        q = sa.select(*[alarms.c[f] for f in AlarmRecord.__slots__]).order_by(alarms.c.raised_at_ms.desc()).limit(limit)
        if open_only:
            q = q.where(alarms.c.is_open)
        if drill is not None:
            q = q.where(alarms.c.drill == drill)
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return [AlarmRecord(**row._mapping) for row in conn.execute(q)]

    def counts(self, *, drill: bool, open_only: bool = True) -> dict[str, int]:
        """Alarms per type; real and drill never mix."""
        q = sa.select(alarms.c.alarm_type, sa.func.count()).where(alarms.c.drill == drill).group_by(alarms.c.alarm_type)
        if open_only:
            q = q.where(alarms.c.is_open)
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            return {t: int(n) for t, n in conn.execute(q)}
