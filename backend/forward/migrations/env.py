"""Alembic environment of the 119 hand-off store: a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.forward.store import metadata
from backend.store.migrations import run_environment

run_environment(metadata)
