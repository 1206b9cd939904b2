"""Central broker restart, PostgreSQL restart and device clocks 10 minutes off, against the backend as a subprocess.

- Broker restart: smoke events stream in from a gateway-like publisher; Mosquitto (persistence on) is stopped
  mid-stream and started again on its port. Every smoke event becomes exactly one alarm, and the ladder pages
  again after the restart (the backend's publisher reconnected): zero life-safety loss, escalations resumed.
- PostgreSQL restart: the backend's alarm store is a real PostgreSQL (storage.alarm_db_url) that is stopped
  mid-stream and started again. Every smoke event becomes an alarm and the ladder steps on.
- Device clocks 10 minutes fast and slow: smoke alarms are raised for every device, nothing is dropped as
  "future", and the board orders them by when the centre raised them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.store.pg_local import LocalPostgres
from broker.process import MosquittoProcess
from tests.faults.helpers import GATEWAY, BackendProcess, SmokePublisher, listening, smoke_id, until, write_fixture_files

pytestmark = pytest.mark.mosquitto


async def _open_smokes(backend: BackendProcess) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in await backend.alarms(open="true"):
        if r["alarm_type"] == "smoke":
            out.setdefault(r["device_id"], []).append(r["id"])
    return out


async def test_central_broker_restart_mid_stream_loses_no_alarm_and_the_ladder_resumes(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    central = mosquitto_factory("central", persistence=True)
    site, policy = write_fixture_files(tmp_path)
    backend = BackendProcess(tmp_path / "var", central.url, site, policy).start()
    gw = SmokePublisher(central.host, central.port)
    try:
        async with listening(central.host, central.port) as apps:
            for i in range(10):
                gw.smoke(GATEWAY, smoke_id(i), f"br-{i}")
            await until(lambda: len({n.alarm_id for n, _ in apps.to("gw1")}) >= 1, 20, "pages before the restart")
            central.stop()
            for i in range(10, 20):  # the broker is down: the gateway queues them
                gw.smoke(GATEWAY, smoke_id(i), f"br-{i}")
            await asyncio.sleep(1.0)  # the outage itself
            central.start()
            restarted_ms = time.time_ns() // 1_000_000
            for i in range(20, 30):
                gw.smoke(GATEWAY, smoke_id(i), f"br-{i}")
            await until(gw.all_acknowledged, 30, "the broker to take every smoke event")
            smokes = await until(lambda: _all(backend, 30), 40, "an alarm for each of the 30 smoke events")
            assert all(len(ids) == 1 for ids in smokes.values()), "one alarm per device, none twice"
            # Escalations resumed: the ladder published notices after the broker came back (deadlines are 4 s).
            await until(lambda: [n for _, n, _ in apps.notices if n.issued_ts_ms > restarted_ms + 1000], 30, "a notice issued after the restart")
    finally:
        gw.close()
        backend.stop()


async def _all(backend: BackendProcess, n: int) -> dict[str, list[str]] | None:
    smokes = await _open_smokes(backend)
    return smokes if len(smokes) >= n else None


@pytest.mark.postgres
async def test_postgresql_restart_mid_stream_loses_no_alarm(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    central = mosquitto_factory("central", persistence=True)
    site, policy = write_fixture_files(tmp_path)
    with LocalPostgres(tmp_path / "pg", scratch=True) as pg:
        backend = BackendProcess(tmp_path / "var", central.url, site, policy, env={"SHOUWANG_STORAGE__ALARM_DB_URL": pg.url}).start()
        gw = SmokePublisher(central.host, central.port)
        try:
            async with listening(central.host, central.port) as apps:
                for i in range(10):
                    gw.smoke(GATEWAY, smoke_id(i), f"pg-{i}")
                await until(lambda: _all(backend, 10), 30, "the first ten alarms")
                pg.stop()
                for i in range(10, 20):  # the database is down: ingest journals them; alerting retries
                    gw.smoke(GATEWAY, smoke_id(i), f"pg-{i}")
                await until(gw.all_acknowledged, 30, "the broker to take every smoke event")
                await asyncio.sleep(2.0)  # the outage itself
                pg.start()
                restarted_ms = time.time_ns() // 1_000_000
                for i in range(20, 30):
                    gw.smoke(GATEWAY, smoke_id(i), f"pg-{i}")
                smokes = await until(lambda: _all(backend, 30), 60, "an alarm for each of the 30 smoke events")
                assert all(len(ids) == 1 for ids in smokes.values()), "one alarm per device, none twice"
                await until(lambda: [n for _, n, _ in apps.notices if n.issued_ts_ms > restarted_ms], 30, "a notice issued after the restart")
                engine = sa.create_engine(pg.url)
                try:
                    with engine.connect() as conn:
                        stored = conn.execute(sa.text("SELECT count(*) FROM alarms WHERE alarm_type = 'smoke'")).scalar_one()
                finally:
                    engine.dispose()
                assert stored == 30
        finally:
            gw.close()
            backend.stop()


async def test_device_clocks_ten_minutes_fast_or_slow_still_raise_and_order_by_arrival(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    central = mosquitto_factory("central")
    site, policy = write_fixture_files(tmp_path)
    backend = BackendProcess(tmp_path / "var", central.url, site, policy).start()
    gw = SmokePublisher(central.host, central.port)
    skews = {0: +600_000, 1: -600_000, 2: 0, 3: +600_000, 4: -600_000}
    try:
        for i, skew in skews.items():
            gw.smoke(GATEWAY, smoke_id(i), f"clk-{i}", ts_ms=time.time_ns() // 1_000_000 + skew)
            await asyncio.sleep(0.3)  # distinct arrival times at the centre
        smokes = await until(lambda: _all(backend, len(skews)), 30, "an alarm for every device, skewed clocks included")
        rows = {r["device_id"]: r for r in await backend.alarms(open="true") if r["alarm_type"] == "smoke"}
        assert set(smokes) == {smoke_id(i) for i in skews}
        raised = [rows[smoke_id(i)]["raised_at_ms"] for i in sorted(skews)]
        assert raised == sorted(raised), "alarms are ordered by when the centre raised them, whatever the device clocks say"
        for i, skew in skews.items():  # the device's own time is kept as evidence, not trusted for ordering
            r = rows[smoke_id(i)]
            assert abs((r["first_seen_ms"] - r["raised_at_ms"]) - skew) < 30_000, (i, skew, r["first_seen_ms"] - r["raised_at_ms"])
    finally:
        gw.close()
        backend.stop()
