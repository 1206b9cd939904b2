"""Alembic migrations of the work-order store, run programmatically by backend.workorders.store.migrate()."""
