"""The alarm store translates what the database raises into "not now" or "this content" (issue 22).

Real databases, real failures: SQLite opened read-only, SQLite locked by another writer, PostgreSQL down,
PostgreSQL refusing a NUL byte in text. A `StoreUnavailable` is waited out by ingest (it is an
AlertingUnavailable); a `StoreRefused` is the content's fault. No driver exception leaks out of the store.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.book import AlarmBook
from alerting.model import Action, Place, Severity, Signal, SignalKind
from backend.alarms.store import AlarmStore, StoreRefused, StoreUnavailable
from backend.ingest.handoff import AlertingUnavailable
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from tests.processes import fresh_database


def smoke_alarm(detail: str | None = None, device: str = "smoke-1") -> list[Action]:
    sig = Signal(SignalKind.RAISE, "smoke", f"device:{device}", 1_700_000_000_000, Severity.CRITICAL, True, False, "烟感报警",
                 Place(device=device, gateway="gw1"), detail)
    return list(AlarmBook().signal(sig, 1_700_000_000_000))


def test_a_read_only_sqlite_store_is_unavailable_not_refused(tmp_path: Path) -> None:
    AlarmStore(make_engine(sqlite_url(tmp_path / "alarms.sqlite"))).engine.dispose()  # migrated, then opened read-only
    ro = sa.create_engine(f"sqlite:///file:{tmp_path / 'alarms.sqlite'}?mode=ro&uri=true")
    store = AlarmStore(ro)  # at the newest revision already: migrating only reads
    with pytest.raises(StoreUnavailable) as info:
        store.apply(smoke_alarm())
    assert isinstance(info.value, AlertingUnavailable)
    assert "readonly" in info.value.why
    ro.dispose()


def test_a_sqlite_store_locked_by_another_writer_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite"
    AlarmStore(make_engine(sqlite_url(path))).engine.dispose()
    store = AlarmStore(sa.create_engine(sqlite_url(path), connect_args={"timeout": 0.2}))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.apply(smoke_alarm())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.apply(smoke_alarm())  # the lock is gone: the same write succeeds
    assert [r.alarm_type for r in store.list()] == ["smoke"]
    store.engine.dispose()


@pytest.mark.postgres
def test_postgresql_down_is_unavailable_and_a_nul_byte_is_refused(tmp_path: Path, postgres_server: LocalPostgres) -> None:
    store = AlarmStore(make_engine(fresh_database(postgres_server)))
    with pytest.raises(StoreRefused) as refused:
        store.apply(smoke_alarm("kitchen\x00smoke"))
    assert not isinstance(refused.value, AlertingUnavailable)
    store.apply(smoke_alarm("kitchen smoke"))  # the same alarm, its text clean: stored
    store.engine.dispose()
    with LocalPostgres(tmp_path / "pg", scratch=True) as pg:
        own = AlarmStore(make_engine(pg.url))
        pg.stop()
        with pytest.raises(StoreUnavailable):
            own.apply(smoke_alarm(device="smoke-2"))
        with pytest.raises(StoreUnavailable):
            own.list()
        own.engine.dispose()


async def test_a_threshold_alarm_whose_commit_failed_is_raised_by_the_retry(tmp_path: Path) -> None:
    """The store is locked while the reading that crosses 300 mA is decided: the commit fails (StoreUnavailable,
    ingest keeps the reading and offers it again). The retry must raise the alarm: before, the rule's flag stayed
    "active" after the failed commit, so the retry took the alarm for raised and nothing was ever stored."""
    from backend.alarms.service import AlarmService
    from backend.ingest.handoff import Reading
    from backend.sites import load_site_directory
    from broker.clock import VirtualClock
    from broker.kinds import DeviceKind
    from tests.conftest import SAMPLE_SITE

    sites = load_site_directory(SAMPLE_SITE)
    box = next(d for d in sites.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    path = tmp_path / "alarms.db"
    clock = VirtualClock()
    engine = sa.create_engine(sqlite_url(path), connect_args={"timeout": 0.2})
    async with AlarmService.for_sites(make_engine(sqlite_url(path)), sites, clock, tick_s=3600) as svc:
        svc.store.engine.dispose()
        svc.store.engine = engine  # a short lock timeout, so the locked commit fails fast
        t = clock.now_ms()
        await svc.on_readings([Reading(box.id, box.gateway, "residual_current_ma", 350.0, t, t)])
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        second = [Reading(box.id, box.gateway, "residual_current_ma", 350.0, t + 60_000, t + 60_000)]
        try:
            with pytest.raises(StoreUnavailable):
                await svc.on_readings(second)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await svc.on_readings(second)  # ingest offers the same reading again once the store is back
        assert [(r.alarm_type, r.device_id) for r in svc.store.list(open_only=True)] == [("residual_current", box.id)]
