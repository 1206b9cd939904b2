"""Alembic migrations of the 119 hand-off store (backend.forward.store), run by backend.store.migrations.upgrade()."""
