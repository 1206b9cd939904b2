"""The alarm store, as the rest of the backend has known it since the thin slice.

The store now lives in backend.alarms.store (lifecycle, audit log, Alembic migrations); this module keeps the
old import path working. `metadata` here holds the tables of the other small stores (users) that are still
created with `create_all`; the alarm tables are created only by the migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

from backend.alarms.store import AlarmRecord, AlarmStore

__all__ = ["AlarmRecord", "AlarmStore", "metadata"]

metadata = sa.MetaData()
