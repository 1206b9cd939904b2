"""Alembic migrations of the console's records (backend.api.console_records), run by backend.store.migrations.upgrade()."""
