"""Alembic migrations of the alarm store, run programmatically by backend.alarms.store.migrate()."""
