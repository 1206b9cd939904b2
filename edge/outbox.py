"""The durable outbox: every message the agent accepts waits here (SQLite, WAL) until the centre PUBACKs it.

How this works:
- `accept(rows)` inserts a batch in one transaction. A message is *accepted* when that transaction commits;
  only then is the LAN broker acknowledged, so a crash before the commit loses nothing either (the LAN
  broker redelivers). With synchronous=NORMAL a commit survives kill -9 of the agent (it is in the WAL in
  the OS); synchronous=FULL also survives a power cut, at a few thousand commits per second.
- Each row keeps the exact bytes that were encoded at acceptance, so a replay carries the original msg_id
  and source_ts_ms and the centre can de-duplicate and order.
- `take(priorities, n)` hands out the oldest rows of the given priorities that are not already in flight
  (one cursor per priority, rows only ever get larger seq numbers); `ack(seqs)` deletes rows after their
  PUBACK; `release_all()` after a lost connection makes every unacknowledged row eligible again.
- One agent per outbox: `open` takes an exclusive advisory lock (flock) on `PATH.lock`, which holds the owner's
  PID; a second agent (same gateway started twice) gets `OutboxLocked` naming that PID. The kernel drops the
  lock when the owner dies, kill -9 included, so a stale lock file never blocks a restart.
- Bounded on disk: past `max_telemetry_rows` telemetry rows, or past `max_bytes` of stored topic+payload,
  the oldest TELEMETRY rows not in flight are deleted in the same transaction as the insert, and counted
  (persisted in `counters`, so the total survives restarts). LIFE_SAFETY and STATUS rows are never evicted;
  if they alone exceed the byte bound the outbox grows and says so in `over_bound`.
- Checkpoints off the event loop: the agent commits (accept, ack) on its event loop thread, and SQLite's automatic
  checkpoint runs inside the commit that crosses 1,000 WAL pages, copying the WAL into the database file and
  fsyncing it (tens of milliseconds on a busy disk: a smoke alarm accepted then waited for it). After
  `defer_checkpoints(wake)` commits never checkpoint; every `CHECKPOINT_EVERY` rows written, `wake()` is called,
  and the owner runs `checkpoint()` in a thread (its own connection, PASSIVE: it never blocks a commit). Nothing
  changes for durability: a checkpoint moves committed pages from the WAL into the database file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from broker.kinds import Priority
from edge.errors import OutboxError, OutboxLocked

__all__ = ["Outbox", "OutboxError", "OutboxLocked", "OutboxRow", "OutboxStats", "PendingRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    msg_id TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    accepted_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_priority ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS latches (adapter TEXT NOT NULL, device TEXT NOT NULL, flag TEXT NOT NULL, PRIMARY KEY (adapter, device, flag));
"""
_ROW_OVERHEAD = 48  # bytes SQLite spends per row beyond topic and payload, roughly: keeps max_bytes honest
# Rows written (inserted or deleted) between two deferred checkpoints: with rows of a few hundred bytes and their
# index entries, about the 1,000 pages after which SQLite's own automatic checkpoint would run inside a commit.
CHECKPOINT_EVERY = 2_000


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A message about to be accepted."""

    priority: Priority
    topic: str
    payload: bytes
    msg_id: str
    retain: bool = False


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    priority: Priority
    topic: str
    payload: bytes
    msg_id: str
    retain: bool


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: dict[Priority, int]
    stored_bytes: int
    in_flight: int
    accepted_total: int
    evicted_total: int
    acked_total: int
    over_bound: bool

    @property
    def total(self) -> int:
        return sum(self.depth.values())


class Outbox:
    def __init__(self, path: Path | str, *, max_telemetry_rows: int = 500_000, max_bytes: int = 256 * 1024 * 1024, synchronous: str = "normal") -> None:
        self.path = Path(path)
        self.max_telemetry_rows = max_telemetry_rows
        self.max_bytes = max_bytes
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._depth: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._bytes = 0
        self._cursor: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._in_flight: dict[int, Priority] = {}
        self._counters: dict[str, int] = {"accepted_total": 0, "evicted_total": 0, "acked_total": 0}
        self._checkpoint_wake: Callable[[], None] | None = None
        self._written = 0  # rows inserted or deleted since the last wake
        self._checkpointer: sqlite3.Connection | None = None

    # -- lifecycle

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            raise OutboxLocked(self.path, int(holder) if holder.isdigit() else None) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def open(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as exc:
            raise OutboxError(self.path, f"cannot open: {exc}") from exc
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.synchronous == 'FULL' else 'NORMAL'}")
            db.executescript(_SCHEMA)
            if self._checkpoint_wake is not None:
                db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoint() does it, in the owner's thread
            for p, n, b in db.execute("SELECT priority, COUNT(*), COALESCE(SUM(length(payload) + length(topic)), 0) FROM outbox GROUP BY priority"):
                self._depth[Priority(p)] = n
                self._bytes += b + n * _ROW_OVERHEAD
            for name, value in db.execute("SELECT name, value FROM counters"):
                self._counters[name] = value
        except (sqlite3.Error, OSError) as exc:
            self._unlock()
            raise OutboxError(self.path, f"cannot open: {exc}") from exc
        self._db = db
        return self

    def defer_checkpoints(self, wake: Callable[[], None]) -> None:
        """From now on (and on every open) commits never checkpoint; `wake()` says when `checkpoint()` is due."""
        self._checkpoint_wake = wake
        if self._db is not None:
            self._db.execute("PRAGMA wal_autocheckpoint=0")

    def _wrote(self, rows: int) -> None:
        self._written += rows
        if self._written >= CHECKPOINT_EVERY and self._checkpoint_wake is not None:
            self._written = 0
            self._checkpoint_wake()

    def checkpoint(self) -> int:
        """Copy committed WAL pages into the database file; return how many. PASSIVE, on a connection of its own:
        it neither waits for nor blocks a commit. Meant for a thread other than the event loop's, one at a time."""
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _busy, _log, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(self.path, f"cannot checkpoint: {exc}") from exc
        return int(copied) if copied >= 0 else 0

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._unlock()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(self.path, "not open")
        return self._db

    # -- accepting

    def accept(self, rows: Sequence[PendingRow], now_ms: int, latches: Mapping[str, Mapping[tuple[str, str], bool]] | None = None) -> int:
        """Commit a batch, and in the same transaction the adapters' latch changes (adapter -> (device, flag) ->
        raised); return how many telemetry rows were evicted to stay within the bound."""
        if not rows and not any(latches.values() if latches else ()):
            return 0
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO outbox (priority, topic, payload, msg_id, retain, accepted_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [(int(r.priority), r.topic, r.payload, r.msg_id, int(r.retain), now_ms) for r in rows],
            )
            for adapter, changes in (latches or {}).items():
                db.executemany("INSERT OR IGNORE INTO latches (adapter, device, flag) VALUES (?, ?, ?)",
                               [(adapter, d, f) for (d, f), up in changes.items() if up])
                db.executemany("DELETE FROM latches WHERE adapter = ? AND device = ? AND flag = ?",
                               [(adapter, d, f) for (d, f), up in changes.items() if not up])
            added: dict[Priority, int] = dict.fromkeys(Priority, 0)
            added_bytes = 0
            for r in rows:
                added[r.priority] += 1
                added_bytes += len(r.payload) + len(r.topic) + _ROW_OVERHEAD
            evicted, freed = self._evict(db, self._depth[Priority.TELEMETRY] + added[Priority.TELEMETRY], self._bytes + added_bytes)
            self._bump(db, accepted_total=len(rows), evicted_total=evicted)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OutboxError(self.path, f"cannot accept: {exc}") from exc
        for p, n in added.items():
            self._depth[p] += n
        self._depth[Priority.TELEMETRY] -= evicted
        self._bytes += added_bytes - freed
        self._counters["accepted_total"] += len(rows)
        self._counters["evicted_total"] += evicted
        self._wrote(len(rows) + evicted)
        return evicted

    def _evict(self, db: sqlite3.Connection, telemetry_rows: int, stored_bytes: int) -> tuple[int, int]:
        need_rows = telemetry_rows - self.max_telemetry_rows
        need_bytes = stored_bytes - self.max_bytes
        evicted = freed = 0
        after = 0
        while need_rows > 0 or need_bytes > 0:
            chunk = db.execute(
                "SELECT seq, length(payload) + length(topic) FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                (int(Priority.TELEMETRY), after, max(need_rows, 256) + len(self._in_flight)),
            ).fetchall()
            if not chunk:
                break
            victims = []
            for seq, size in chunk:
                after = seq
                if seq in self._in_flight:
                    continue
                victims.append((seq,))
                need_rows -= 1
                need_bytes -= size + _ROW_OVERHEAD
                freed += size + _ROW_OVERHEAD
                if need_rows <= 0 and need_bytes <= 0:
                    break
            db.executemany("DELETE FROM outbox WHERE seq = ?", victims)
            evicted += len(victims)
        return evicted, freed

    def _bump(self, db: sqlite3.Connection, **deltas: int) -> None:
        db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(k, v) for k, v in deltas.items() if v],
        )

    # -- draining

    def take(self, priorities: Iterable[Priority], limit: int) -> list[OutboxRow]:
        """The oldest rows of these priorities (in the order given) that are not in flight; marks them in flight."""
        out: list[OutboxRow] = []
        for p in priorities:
            if len(out) >= limit:
                break
            if self._depth[p] <= sum(1 for q in self._in_flight.values() if q is p):
                continue
            rows = self.db.execute(
                "SELECT seq, topic, payload, msg_id, retain FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                (int(p), self._cursor[p], limit - len(out)),
            ).fetchall()
            for seq, topic, payload, msg_id, retain in rows:
                out.append(OutboxRow(seq, p, topic, bytes(payload), msg_id, bool(retain)))
                self._in_flight[seq] = p
                self._cursor[p] = seq
        return out

    def ack(self, seqs: Sequence[int]) -> None:
        """Delete rows the centre acknowledged."""
        if not seqs:
            return
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            sizes = db.execute(
                f"SELECT seq, priority, length(payload) + length(topic) FROM outbox WHERE seq IN ({','.join('?' * len(seqs))})",  # noqa: S608 - placeholders only
                list(seqs),
            ).fetchall()
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s, _, _ in sizes])
            self._bump(db, acked_total=len(sizes))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OutboxError(self.path, f"cannot delete acknowledged rows: {exc}") from exc
        for _seq, p, size in sizes:
            self._depth[Priority(p)] -= 1
            self._bytes -= size + _ROW_OVERHEAD
        for seq in seqs:
            self._in_flight.pop(seq, None)
        self._counters["acked_total"] += len(sizes)
        self._wrote(len(sizes))

    def release_all(self) -> None:
        """The connection was lost: every unacknowledged row goes out again, oldest first."""
        self._in_flight.clear()
        self._cursor = dict.fromkeys(Priority, 0)

    # -- reporting

    def depth(self, priority: Priority | None = None) -> int:
        return sum(self._depth.values()) if priority is None else self._depth[priority]

    def pending(self, priority: Priority) -> int:
        """Rows of this priority not yet handed out."""
        return self._depth[priority] - sum(1 for q in self._in_flight.values() if q is priority)

    def stats(self) -> OutboxStats:
        return OutboxStats(
            depth=dict(self._depth),
            stored_bytes=self._bytes,
            in_flight=len(self._in_flight),
            accepted_total=self._counters["accepted_total"],
            evicted_total=self._counters["evicted_total"],
            acked_total=self._counters["acked_total"],
            over_bound=self._bytes > self.max_bytes,
        )

    def raised_latches(self) -> dict[str, list[tuple[str, str]]]:
        """adapter -> the (device, flag) latches that were raised when the agent stopped."""
        out: dict[str, list[tuple[str, str]]] = {}
        for adapter, device, flag in self.db.execute("SELECT adapter, device, flag FROM latches"):
            out.setdefault(adapter, []).append((device, flag))
        return out

    def counter(self, name: str) -> int:
        return self._counters.get(name, 0)

    def set_counter(self, name: str, value: int) -> None:
        """A small persisted number of the agent's own (e.g. the patrol sequence)."""
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        self._counters[name] = value
