"""Alembic migrations of the duty store (backend.duty.store), run by backend.store.migrations.upgrade()."""
