"""Stores under test: the SQLite store always; InfluxDB when SHOUWANG_INFLUX_URL (+ _TOKEN, _ORG, _BUCKET) is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.sites.model import Building, Community, Device, Gateway, Grid, SiteDirectory
from backend.store.timeseries import SqliteTimeSeries, TagDirectory, TimeSeriesStore
from broker.kinds import DeviceKind

INFLUX_ENV = ("SHOUWANG_INFLUX_URL", "SHOUWANG_INFLUX_TOKEN", "SHOUWANG_INFLUX_ORG", "SHOUWANG_INFLUX_BUCKET")


@dataclass(frozen=True)
class TinySite:
    sites: SiteDirectory
    building: str
    other_building: str
    devices: tuple[str, ...]  # three in `building`, one in `other_building`


def tiny_site() -> TinySite:
    """A site with unique ids, so tests against a shared InfluxDB bucket never see each other's points."""
    u = uuid.uuid4().hex[:8]
    c, g, b1, b2, gw = f"c-{u}", f"g-{u}", f"b1-{u}", f"b2-{u}", f"gw-{u}"
    devices = {
        f"d{i}-{u}": Device(f"d{i}-{u}", DeviceKind.ELECTRICAL, gw, b1 if i < 3 else b2) for i in range(4)
    }
    sites = SiteDirectory(
        communities={c: Community(c, "社区")}, grids={g: Grid(g, "一网格", c)},
        buildings={b1: Building(b1, "1号楼", g, 6, 2, 0, 0), b2: Building(b2, "2号楼", g, 6, 2, 40, 0)},
        households={}, gateways={gw: Gateway(gw, None, c)}, devices=devices, fire_stations={}, volunteer_teams={}, responders={},
    )
    return TinySite(sites, b1, b2, tuple(devices))


@pytest.fixture
def site() -> TinySite:
    return tiny_site()


@pytest.fixture(params=["sqlite", "influx"])
def store(request: pytest.FixtureRequest, tmp_path: Path, site: TinySite) -> Iterator[TimeSeriesStore]:
    if request.param == "sqlite":
        s = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(site.sites))
        yield s
        s.close()
        return
    missing = [name for name in INFLUX_ENV if not os.environ.get(name)]
    if missing:
        pytest.skip(f"InfluxDB contract run skipped: {', '.join(missing)} not set (no InfluxDB 2.x server can be installed here; "
                    "the writer is tested up to the wire in test_influx_wire.py)")
    from backend.store.timeseries.influx import InfluxTimeSeries

    i = InfluxTimeSeries(os.environ["SHOUWANG_INFLUX_URL"], os.environ["SHOUWANG_INFLUX_TOKEN"], os.environ["SHOUWANG_INFLUX_ORG"],
                         os.environ["SHOUWANG_INFLUX_BUCKET"], TagDirectory(site.sites), max_retries=1, retry_interval_s=0.2)
    yield i
    i.close()
