"""Database engines for the stores: SQLite by default (WAL), PostgreSQL in production.

SQLite is opened in WAL mode with synchronous=NORMAL for the bulk tables and FULL where each alarm record
must be durable on its own (docs/measured.md: ~6.3 k single-row commits/s with FULL, plenty for alarms).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.errors import BackendError

__all__ = ["StoreFileUnreadable", "check_sqlite_file", "make_engine", "sqlite_url"]


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


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str, *, synchronous: str = "FULL", what: str = "the alarm database") -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            check_sqlite_file(Path(path), what)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
