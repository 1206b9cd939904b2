"""Alembic environment of the uplink queue (PostgreSQL only): a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.relay.queue import metadata
from backend.store.migrations import run_environment

run_environment(metadata)
