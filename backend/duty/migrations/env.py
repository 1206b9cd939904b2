"""Alembic environment of the duty store: a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.duty.store import metadata
from backend.store.migrations import run_environment

run_environment(metadata)
