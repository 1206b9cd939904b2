"""The escalation tests' database: SQLite, and PostgreSQL where marked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from tests.conftest import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = make_engine(sqlite_url(tmp_path / "centre.db"))
        yield engine
        engine.dispose()
        return
    pg: LocalPostgres = request.getfixturevalue("postgres_server")
    with fresh_database(pg, "escalation") as engine:
        yield engine
