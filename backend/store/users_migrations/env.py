"""Alembic environment of the user store: a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.store.migrations import run_environment
from backend.store.users import metadata

run_environment(metadata)
