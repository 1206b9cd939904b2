"""The private PostgreSQL of tests and of `shouwang cluster` (backend/store/pg_local.py): its data stays in the folder
it was given, so a server started again there finds it. As root the server runs as the `postgres` user: a data folder
that user cannot reach is refused with the reason, never swapped for a temporary folder the next start would not
find (it was, and the cluster's alarms and ladders were gone after a restart); a scratch server (tests, benchmarks)
takes a temporary folder instead and removes it when it is left."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.store.pg_local import LocalPostgres, PostgresFolderUnreachable

pytestmark = pytest.mark.postgres

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user's reach matters only when the tests run as root (CI does)")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may pass through (as a deployment's data folder is), outside pytest's private tmp_path."""
    base = Path(tempfile.mkdtemp(prefix="shouwang-test-pg-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_server_started_again_on_its_folder_finds_its_data(open_folder: Path) -> None:
    folder = open_folder / "postgres"
    with LocalPostgres(folder) as pg:
        assert pg.workdir == folder.resolve()
        engine = sa.create_engine(pg.url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alarms (id text PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO alarms VALUES ('A1')"))
        engine.dispose()
    assert (folder / "data" / "PG_VERSION").exists()
    with LocalPostgres(folder) as pg:
        engine = sa.create_engine(pg.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM alarms")).scalars().all() == ["A1"]
        engine.dispose()


@as_root
def test_a_data_folder_the_postgres_user_cannot_reach_is_refused_with_the_fix(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(PostgresFolderUnreachable) as refused:
        LocalPostgres(private / "postgres")
    assert refused.value.blocked == private.resolve() or refused.value.blocked in private.resolve().parents
    assert "chmod o+x" in str(refused.value)
    assert str(private / "postgres") in str(refused.value)


@as_root
def test_a_scratch_server_runs_in_a_temporary_folder_and_removes_it(tmp_path: Path) -> None:
    with LocalPostgres(tmp_path / "pg", scratch=True) as pg:  # tmp_path: inside pytest's folder, private to root
        used = pg.workdir
        assert not used.is_relative_to(tmp_path)
        assert (used / "data" / "PG_VERSION").exists()
    assert not used.exists(), "the scratch server's temporary folder was left behind"
