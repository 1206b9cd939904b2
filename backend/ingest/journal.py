"""The ingest journal: an append-only local spool that makes a message durable before it is acknowledged.

How this works: each lane of the pipeline owns one journal file (SQLite, WAL, synchronous=NORMAL), so a
telemetry batch commit never holds the write lock an event needs. A message gets a sequence number at
intake; `append` commits a group of messages (topic, raw payload, de-duplication key) in one transaction,
and only then does the pipeline send their PUBACKs. What is journaled but not yet done (stored in the
time-series store, or handed to alerting) is replayed from here after a restart.

Two ways to mark work done: `mark_done_through(seq)` moves a watermark (telemetry is stored in sequence
order, so one UPDATE covers a whole batch) and `mark_done(seqs)` flags single rows (the uplink lane hands
messages on in priority order, not sequence order). `prune` drops done rows older than the de-duplication
window; the keys of the newest `keep` rows are what a restarted worker loads to recognise redeliveries.

A commit with synchronous=NORMAL in WAL mode is durable against a crash of the process (kill -9), not
against a power cut before the next checkpoint; `synchronous_full=True` covers that at ~6 k commits/s.

Checkpoints: SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages, copying the WAL
into the database file and fsyncing it: tens of milliseconds on a busy disk, paid by whoever committed. The
uplink lane commits on the event loop thread, so with `auto_checkpoint=False` commits never checkpoint and
`checkpoint()` (its own connection, PASSIVE: it never blocks a commit) is called from the journal's thread
instead (backend/ingest/pipeline.py: after every `CHECKPOINT_EVERY` rows the uplink lane wrote). Durability is the same: a checkpoint moves committed pages
from one file to another; it does not make anything durable that was not already.

Exceptions: `JournalError` (the disk refused; the caller retries and does not acknowledge).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.errors import BackendError
from backend.store.db import check_sqlite_file

__all__ = ["Journal", "JournalEntry", "JournalError"]

# Up to this many rows are committed by one multi-row INSERT (see `append`): an uplink round is usually one to a few
# messages; 5 parameters a row stays far below SQLite's 32,766, and each distinct row count is one cached statement.
_ONE_STATEMENT_ROWS = 16


class JournalError(BackendError):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"journal {path} failed: {why}")
        self.path = path
        self.why = why


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    key: str  # "{gateway}/{msg_id}"
    topic: str
    payload: bytes
    received_ms: int


class Journal:
    def __init__(self, path: Path, *, keep: int = 200_000, synchronous_full: bool = False, auto_checkpoint: bool = True) -> None:
        self.path = path
        self._keep = keep
        self._checkpointer: sqlite3.Connection | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        check_sqlite_file(path, "the ingest journal")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {'FULL' if synchronous_full else 'NORMAL'}")
        if not auto_checkpoint:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoint() does it, off the committing thread
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS entries (
                seq INTEGER PRIMARY KEY, key TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
                received_ms INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT OR IGNORE INTO meta VALUES ('done_through', 0);
            """
        )
        self.last_seq: int = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0]
        self.done_through: int = self._db.execute("SELECT value FROM meta WHERE name = 'done_through'").fetchone()[0]
        self.last_seq = max(self.last_seq, self.done_through)

    def _run(self, sql: str, args: Iterable[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise JournalError(self.path, f"{type(exc).__name__}: {exc}") from exc

    def append(self, entries: Sequence[tuple[int, str, str, bytes, int]]) -> None:
        """Commit (seq, key, topic, payload, received_ms) rows; when this returns they survive a crash."""
        if not entries:
            return
        with self._lock:
            try:
                if len(entries) <= _ONE_STATEMENT_ROWS:
                    # One INSERT of all the rows, its own transaction (autocommit): as atomic and as durable as BEGIN ...
                    # COMMIT, in one call into SQLite instead of three. The uplink lane commits on the event loop thread,
                    # and every call releases the GIL, which the store writer's thread may then hold for a switch
                    # interval (5 ms) before the loop gets it back: a smoke alarm's commit paid that up to three times.
                    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(entries))
                    self._db.execute(f"INSERT INTO entries (seq, key, topic, payload, received_ms) VALUES {values}",  # noqa: S608
                                     [v for row in entries for v in row])
                else:
                    self._db.execute("BEGIN")
                    self._db.executemany("INSERT INTO entries (seq, key, topic, payload, received_ms) VALUES (?, ?, ?, ?, ?)", entries)
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise JournalError(self.path, f"{type(exc).__name__}: {exc}") from exc
            self.last_seq = max(self.last_seq, entries[-1][0])

    def mark_done_through(self, seq: int) -> None:
        with self._lock:
            if seq > self.done_through:
                self._run("UPDATE meta SET value = ? WHERE name = 'done_through'", (seq,))
                self.done_through = seq

    def mark_done(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._run(f"UPDATE entries SET done = 1 WHERE seq IN ({','.join('?' * len(seqs))})", seqs)  # noqa: S608

    def pending(self, after_seq: int = 0, limit: int = 10_000) -> list[JournalEntry]:
        """Entries not yet done, in sequence order, after `after_seq` (and after the watermark)."""
        with self._lock:
            rows = self._run(
                "SELECT seq, key, topic, payload, received_ms FROM entries WHERE seq > ? AND done = 0 ORDER BY seq LIMIT ?",
                (max(after_seq, self.done_through), limit),
            ).fetchall()
        return [JournalEntry(s, k, t, bytes(p), r) for s, k, t, p, r in rows]

    def recent_keys(self) -> list[str]:
        """The keys of the newest `keep` entries, oldest first: the de-duplication window to reload."""
        with self._lock:
            rows = self._run("SELECT key FROM entries WHERE seq > ? ORDER BY seq", (self.last_seq - self._keep,)).fetchall()
        return [k for (k,) in rows]

    def recent_entries(self) -> list[JournalEntry]:
        """The newest `keep` entries, oldest first, with their payloads: the uplink lane's window to reload, so
        a msg_id reused for a different message is told from a redelivery after a restart too."""
        with self._lock:
            rows = self._run("SELECT seq, key, topic, payload, received_ms FROM entries WHERE seq > ? ORDER BY seq",
                             (self.last_seq - self._keep,)).fetchall()
        return [JournalEntry(s, k, t, bytes(p), r) for s, k, t, p, r in rows]

    def prune(self) -> int:
        """Drop done entries that fell out of the de-duplication window; return how many went."""
        with self._lock:
            cut = self.last_seq - self._keep + 1  # pending rows are never dropped, however old
            cur = self._run("DELETE FROM entries WHERE seq < ? AND (seq <= ? OR done = 1)", (cut, self.done_through))
            return cur.rowcount

    def checkpoint(self) -> int:
        """Copy committed WAL pages into the database file (PASSIVE: never waits for, nor blocks, a commit); return
        the pages copied. On its own connection, so it does not take the lock commits take: call it from a thread
        that is not the event loop's."""
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            _busy, _log_pages, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise JournalError(self.path, f"checkpoint: {type(exc).__name__}: {exc}") from exc
        return int(copied) if copied >= 0 else 0

    def count(self) -> int:
        with self._lock:
            return int(self._run("SELECT count(*) FROM entries").fetchone()[0])

    def keys(self) -> list[str]:
        """Every key still held, in sequence order (tests)."""
        with self._lock:
            return [k for (k,) in self._run("SELECT key FROM entries ORDER BY seq").fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            self._db.close()
