"""Alembic environment of the work-order store: a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.store.migrations import run_environment
from backend.workorders.schema import metadata

run_environment(metadata)
