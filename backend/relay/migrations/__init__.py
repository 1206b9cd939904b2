"""Alembic migrations of the uplink queue (PostgreSQL only) (backend.relay.queue), run by backend.store.migrations.upgrade()."""
