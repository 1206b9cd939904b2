"""Alembic migrations of the user store (backend.store.users), run by backend.store.migrations.upgrade()."""
