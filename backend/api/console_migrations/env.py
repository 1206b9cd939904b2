"""Alembic environment of the console's records: a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.api.console_records import metadata
from backend.store.migrations import run_environment

run_environment(metadata)
