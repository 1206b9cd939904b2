"""Alembic environment: always handed a live connection by backend.alarms.store.migrate()."""

from __future__ import annotations

from alembic import context

from backend.alarms.schema import metadata

VERSION_TABLE = "alembic_version_alarms"  # its own version table: other stores may migrate the same database

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
