"""Schema migrations for every SQL store: `alembic upgrade head` on a live connection, one migrator at a time.

How this works: each store keeps an Alembic script folder beside its module (its `env.py` calls
`run_environment` below) and its OWN version table (`alembic_version_<store>`), so several stores can share
one database and still be upgraded independently. A store's constructor calls `upgrade(engine, folder,
version_table)`:

1. Fast path: if the version table already names the scripts' head, nothing is locked or run (the common
   case at every start after the first).
2. On PostgreSQL, `pg_advisory_xact_lock(MIGRATION_LOCK)` is taken in the migration's own transaction, so
   processes starting together on a fresh database migrate one after another; the lock goes with the
   commit. The second one then finds the version table at head and does nothing. PostgreSQL's DDL is
   transactional: a migration that fails leaves nothing behind.
3. Inside one process, a `threading.Lock` serialises migrations too: Alembic's `context` and `op` are
   module-global proxies, so two threads running migrations at once would run each other's operations on
   each other's connections.

SQLite needs no advisory lock (one file, written by one backend process) but its DDL is not transactional
under the pysqlite driver: a failed revision can leave part of its work behind.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["MIGRATION_LOCK", "current_heads", "run_environment", "upgrade"]

# PostgreSQL advisory lock key ("SWES") held by every schema migration. It is the key the escalation and
# receipt stores took around their create_all before migrations existed, so a process still running the
# old code and one running this code never change the schema at the same time. Other keys in use:
# 0x5357_0001 (rules leader), 0x5357_0002 (cluster start-up).
MIGRATION_LOCK = 0x5357_4553

_in_process = threading.Lock()


def _config(script_location: Path, connection: sa.Connection, version_table: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    return cfg


def current_heads(connection: sa.Connection, version_table: str) -> set[str]:
    """The revisions the database is at for this version table (empty before the first migration)."""
    mc = MigrationContext.configure(connection, opts={"version_table": version_table})
    return set(mc.get_current_heads())


def _upgrade(conn: sa.Connection, script_location: Path, version_table: str) -> None:
    cfg = _config(script_location, conn, version_table)
    head = set(ScriptDirectory.from_config(cfg).get_heads())
    if current_heads(conn, version_table) == head:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    command.upgrade(cfg, "head")


def upgrade(bind: sa.Engine | sa.Connection, script_location: Path, version_table: str) -> None:
    """Bring one store's tables to its newest revision (idempotent; safe for processes starting together).

    Given an engine, runs in a transaction of its own and commits. Given a connection, runs in that
    connection's transaction and leaves the commit to the caller (the advisory lock is held until then)."""
    with _in_process:
        if isinstance(bind, sa.Engine):
            with bind.begin() as conn:
                _upgrade(conn, script_location, version_table)
        else:
            _upgrade(bind, script_location, version_table)


def run_environment(target_metadata: sa.MetaData) -> None:
    """The body of a store's migrations/env.py: migrate on the connection and version table `upgrade` passed.

    `render_as_batch` lets later revisions alter SQLite tables (SQLite's ALTER TABLE is limited)."""
    attributes = context.config.attributes
    context.configure(connection=attributes["connection"], target_metadata=target_metadata,
                      version_table=attributes["version_table"], render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
