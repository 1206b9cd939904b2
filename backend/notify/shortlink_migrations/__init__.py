"""Alembic migrations of the short links (backend.notify.shortlinks), run by backend.store.migrations.upgrade()."""
