"""Database engines for the stores: SQLite by default (WAL), PostgreSQL in production.

SQLite is opened in WAL mode with synchronous=NORMAL for the bulk tables and FULL where each alarm record
must be durable on its own (docs/measured.md: ~6.3 k single-row commits/s with FULL, plenty for alarms). One
exception: a few life-safety alarms committed on the event loop use NORMAL for that commit and fsync the log right
after, from a thread, while they go on the console (backend.alarms.store `AlarmStore.apply_now`).

One writer at a time per SQLite file, queued in the process: SQLite lets one transaction write a file at a time,
and a connection that finds it busy sleeps in SQLite's busy handler (1, 2, 5 ... up to 100 ms a try) however soon
the writer finishes. In a storm the alarm service, the ladder, the notices and their receipts all write the
one file from their threads, and those sleeps, not the writes (~0.2 ms each), held alarms back for seconds. So
each connection of a file's engine takes the file's write lock (a Python lock, woken the moment it is released)
before its first write statement and gives it back when its transaction ends (commit, rollback or close); reads
never wait for it (WAL). Other processes on the same file (a cluster on SQLite) still meet SQLite's own lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Self

import sqlalchemy as sa

from backend.errors import BackendError

__all__ = ["QueuedWriter", "StoreFileUnreadable", "check_sqlite_file", "make_engine", "sqlite_file", "sqlite_url"]


class StoreFileUnreadable(BackendError, RuntimeError):
    """A store's file on disk is not a database SQLite can read (corrupt, truncated, another program's file).

    Raised at start, before anything is written, naming the file and what to do; `user_facing` tells the command
    line to print it as one line instead of a traceback."""

    user_facing = True

    def __init__(self, path: Path, what: str, why: str) -> None:
        self.path, self.what, self.why = path, what, why
        super().__init__(f"{what} {path} cannot be read ({why}): restore it from a backup, or move it aside "
                         f"(mv {path} {path}.broken) to start with an empty one")


def check_sqlite_file(path: Path, what: str) -> None:
    """Refuse to start on a store file SQLite cannot read, naming it (a missing or empty file is a new store)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30.0)) as conn:
            conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreFileUnreadable(path, what, str(exc)) from exc


_WRITES: Final = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(database: str) -> threading.Lock | None:
    """The process's write lock for one database file (None for an in-memory database: nobody else writes it)."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    key = os.path.realpath(database)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


class _QueuedCursor(sqlite3.Cursor):
    connection: QueuedWriter

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        self.connection.before(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.after()

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Self:
        self.connection.before(sql)
        try:
            return super().executemany(sql, parameters)
        finally:
            self.connection.after()

    def executescript(self, sql_script: str, /) -> Self:
        self.connection.before("CREATE")  # a script may write anything
        try:
            super().executescript(sql_script)
            return self
        finally:
            self.connection.after()


class QueuedWriter(sqlite3.Connection):
    """A SQLite connection that queues for its file's write lock before it writes (see the module's docstring)."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._lock = _write_lock(os.fspath(database))
        self._wait_s = float(kwargs.get("timeout", 5.0))
        self._held = False

    def before(self, sql: str) -> None:
        if self._lock is None or self._held or not sql.lstrip()[:16].upper().startswith(_WRITES):
            return
        # After the busy timeout without the lock (a transaction left open elsewhere in this thread), SQLite's own
        # busy handler decides, as it would without the queue: a slow write, never a hang.
        self._held = self._lock.acquire(timeout=self._wait_s)

    def after(self) -> None:
        if self._held and not self.in_transaction:  # autocommit or DDL: the write is already over
            self._release()

    def try_hold(self) -> bool:
        """Take the file's write lock now if no other connection of this process holds it, without waiting (a writer on
        the event loop, which must never block on it). True: held until this connection's transaction ends or
        `release_hold`; the next write statement does not queue again."""
        if self._lock is None or self._held:
            return True
        self._held = self._lock.acquire(blocking=False)
        return self._held

    def release_hold(self) -> None:
        """Give back a lock `try_hold` took (nothing if the transaction's end gave it back already)."""
        self._release()

    def _release(self) -> None:
        if self._held:
            self._held = False
            assert self._lock is not None
            self._lock.release()

    def cursor(self, factory: Any = _QueuedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cur: _QueuedCursor = self.cursor()
        return cur.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        cur: _QueuedCursor = self.cursor()
        return cur.executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        cur: _QueuedCursor = self.cursor()
        return cur.executescript(sql_script)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_file(engine: sa.Engine) -> Path | None:
    """The database file of a SQLite engine (as its URL names it); None for another database or one in memory."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database)
    return None


def make_engine(url: str, *, synchronous: str = "FULL", what: str = "the alarm database", event_loop_writer: bool = False) -> sa.Engine:
    """An engine for a store. `event_loop_writer` (SQLite only): one connection for short writes on the event loop
    (backend.alarms.store `AlarmStore.apply_now`), which must never wait there: no busy timeout, no fsync in its commits
    (synchronous=NORMAL; its caller syncs the log from a thread) and no automatic checkpoint in them (the file's other
    connections run it); it queues with the file's other connections of this process (`QueuedWriter.try_hold`)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            check_sqlite_file(Path(path), what)
        pragmas = ["PRAGMA journal_mode=WAL", f"PRAGMA synchronous={'NORMAL' if event_loop_writer else synchronous}", "PRAGMA foreign_keys=ON"]
        if event_loop_writer:
            pragmas.append("PRAGMA wal_autocheckpoint=0")
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 0 if event_loop_writer else 30, "factory": QueuedWriter},
                                  **({"poolclass": sa.pool.StaticPool} if event_loop_writer else {}))

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            for pragma in pragmas:
                cur.execute(pragma)
            cur.close()

        return engine
    if event_loop_writer:
        raise ValueError("an event-loop writer is for a SQLite file only")
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
