"""Alembic migrations of the escalation store (backend.escalation.store), run by backend.store.migrations.upgrade()."""
