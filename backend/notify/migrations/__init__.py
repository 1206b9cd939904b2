"""Alembic migrations of the delivery receipts (backend.notify.receipts), run by backend.store.migrations.upgrade()."""
