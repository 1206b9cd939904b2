"""The alarm store, as the rest of the backend has known it since the thin slice.

The store now lives in backend.alarms.store (lifecycle, audit log, Alembic migrations); this module keeps the
old import path working. The tables of the other small stores that share the alarm database (users, console
acts) have their own metadata and migrations beside their modules (see backend.store.migrations).
"""

from __future__ import annotations

from backend.alarms.store import AlarmRecord, AlarmStore

__all__ = ["AlarmRecord", "AlarmStore"]
