"""Alembic environment of the short links: a live connection and the version table come from upgrade()."""

from __future__ import annotations

from backend.notify.shortlinks import metadata
from backend.store.migrations import run_environment

run_environment(metadata)
