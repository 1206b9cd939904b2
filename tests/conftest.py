"""Fixtures shared by every test: real Mosquitto and PostgreSQL on free loopback ports, the sample site.

Real services are started by the fixtures themselves. If one is not installed the test fails with the
command that installs it (the README's test command installs them), it is never skipped silently.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from backend.sites import SiteDirectory, load_site_directory
from backend.store.pg_local import LocalPostgres
from broker.embedded import free_port
from broker.process import MosquittoProcess, open_config
from tests.stalls import StallWatch

if TYPE_CHECKING:
    from backend.server import Backend

REPO = Path(__file__).resolve().parent.parent
# Real device messages (shared/device-samples), kept in the repository so a fresh clone tests without shared/
# beside it; tests/test_fixtures.py keeps the copy identical to shared/ whenever shared/ is there.
SAMPLES = REPO / "tests" / "fixtures" / "device-samples.jsonl"
SHARED_SAMPLES = REPO.parent / "shared" / "device-samples" / "samples.jsonl"
SAMPLE_SITE = REPO / "sites" / "sample-community.yaml"
# The embedded broker's default port is 1883 (fixed for gateways); tests, and the processes they start, take free ones.
os.environ.setdefault("SHOUWANG_BROKER__EMBEDDED_PORT", "0")


@pytest.fixture(scope="session")
def sample_site() -> SiteDirectory:
    return load_site_directory(SAMPLE_SITE)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A fresh anonymous Mosquitto on a free port, stopped after the test."""
    with MosquittoProcess(tmp_path / "mosquitto") as m:
        yield m


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoProcess]]:
    """Start as many brokers as a test needs: factory(name, config=None, persistence=False).

    `persistence=True` keeps QoS 1 messages and sessions across stop()/start(), like a production broker."""
    started: list[MosquittoProcess] = []

    def make(name: str = "broker", config: str | None = None, persistence: bool = False) -> MosquittoProcess:
        port = free_port()
        if config is None:
            data = tmp_path / name / "data" if persistence else None
            if data is not None:
                data.mkdir(parents=True, exist_ok=True)
            config = open_config(port, persistence_dir=data)
        m = MosquittoProcess(tmp_path / name, port=port, config=config)
        m.start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """One real PostgreSQL for the session; tests that need isolation create their own database."""
    with LocalPostgres(tmp_path_factory.mktemp("pg"), scratch=True) as pg:
        yield pg


@contextlib.contextmanager
def fresh_database(pg: LocalPostgres, prefix: str) -> Iterator[sa.Engine]:
    """An engine on a new, empty database of the session's PostgreSQL, dropped again afterwards."""
    from tests.processes import fresh_database as new_database  # here: tests.processes imports this module

    url = new_database(pg, prefix)
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL of this test alone: the test may stop and start it (the session's server is shared)."""
    with LocalPostgres(tmp_path / "pg", scratch=True) as pg:
        yield pg


@pytest.fixture
async def backend_on_own_postgres(tmp_path: Path, sample_site: SiteDirectory, own_postgres: LocalPostgres,
                                  mosquitto: MosquittoProcess) -> AsyncIterator[Backend]:
    """A running backend (ingest, alarms, API) whose alarm database is `own_postgres`, on `mosquitto`."""
    from backend.server import Backend
    from backend.settings import load_settings

    settings = load_settings(None, api={"port": 0, "admin_password": "admin-pass-2026"},
                             storage={"data_dir": tmp_path / "var", "alarm_db_url": own_postgres.url},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE}, patrol={"enabled": False})
    async with Backend(settings, sample_site, "127.0.0.1", mosquitto.port) as b:
        yield b


_STALLS = StallWatch(REPO / "test-artifacts" / "stalls.log")  # tests/stalls.py: who held the event loop when it stalled


def pytest_sessionstart(session: pytest.Session) -> None:
    _STALLS.start()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Watched while an async test runs (its event loop must not stall); a sync test may block on what it waits for."""
    _STALLS.watch(item.nodeid if inspect.iscoroutinefunction(getattr(item, "obj", None)) else None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _STALLS.stop()
