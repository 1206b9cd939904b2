"""The time-series API on a real SQLite store: answers, resolutions, and the errors a console user sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.api import ApiDeps, create_app
from backend.api.tokens import TokenSigner
from backend.ingest.handoff import Reading
from backend.store.alarms import AlarmStore
from backend.store.db import make_engine, sqlite_url
from backend.store.timeseries import SqliteTimeSeries, TagDirectory
from backend.store.users import UserStore
from broker.clock import VirtualClock
from tests.timeseries.conftest import TinySite, tiny_site

MIN = 60_000


@dataclass
class Api:
    http: httpx.AsyncClient
    site: TinySite
    store: SqliteTimeSeries
    now: int


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    site = tiny_site()
    clock = VirtualClock()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(site.sites))
    engine = make_engine(sqlite_url(tmp_path / "app.db"))
    users = UserStore(engine)
    users.ensure_admin("admin", "correct horse")
    deps = ApiDeps(AlarmStore(engine), users, TokenSigner(b"k" * 32), clock, dict, timeseries=store, sites=site.sites)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://test") as http:
        token = (await http.post("/api/login", json={"username": "admin", "password": "correct horse"})).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield Api(http, site, store, clock.now_ms())
    store.close()
    engine.dispose()


async def test_series_of_a_day_comes_from_minute_rollups(api: Api) -> None:
    d = api.site.devices[0]
    start = api.now - 24 * 3_600_000
    api.store.write([Reading(d, "gw", "temperature_c", 20.0 + (i % 10), start + i * 10_000, start) for i in range(0, 8640, 3)])
    r = await api.http.get(f"/api/devices/{d}/series", params={"metric": "temperature_c"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["resolution"], body["every_ms"], body["from_ms"], body["to_ms"]) == ("1m", MIN, start, api.now)
    assert len(body["points"]) == 1440
    assert body["points"][0] == {"ts_ms": start, "min": 20.0, "max": 23.0, "mean": 21.5, "count": 2}
    hourly = (await api.http.get(f"/api/devices/{d}/series", params={"metric": "temperature_c", "every": "1h"})).json()
    assert (hourly["resolution"], len(hourly["points"]), hourly["points"][0]["count"]) == ("1h", 24, 120)


async def test_latest_values_per_device_and_per_building(api: Api) -> None:
    d0, d1 = api.site.devices[:2]
    api.store.write([Reading(d0, "gw", "power_w", 5.0, api.now - 2000, api.now), Reading(d1, "gw", "power_w", 7.0, api.now - 1000, api.now)])
    one = (await api.http.get(f"/api/devices/{d0}/latest")).json()
    assert one == {"device_id": d0, "values": [{"metric": "power_w", "value": 5.0, "ts_ms": api.now - 2000}]}
    building = (await api.http.get(f"/api/buildings/{api.site.building}/latest")).json()
    assert [(x["device_id"], [v["value"] for v in x["values"]]) for x in building["devices"]] == [(d0, [5.0]), (d1, [7.0]), (api.site.devices[2], [])]


async def test_a_buildings_readings_over_a_range(api: Api) -> None:
    api.store.write([Reading(d, "gw", "power_w", float(i), api.now - 5000 + i, api.now) for i, d in enumerate(api.site.devices)])
    r = await api.http.get(f"/api/buildings/{api.site.building}/readings", params={"from": str(api.now - MIN), "to": "2026-01-01T08:00:00+08:00"})
    assert r.status_code == 200, r.text
    assert [(x["device_id"], x["value"]) for x in r.json()["readings"]] == [(d, float(i)) for i, d in enumerate(api.site.devices[:3])]


@pytest.mark.parametrize(
    ("path", "params", "code", "says"),
    [
        ("/api/devices/nope/series", {"metric": "power_w"}, 404, "no device 'nope'"),
        ("/api/buildings/nope/readings", {}, 404, "no building 'nope'"),
        ("/api/devices/{d}/series", {}, 422, "metric"),
        ("/api/devices/{d}/series", {"metric": "power"}, 422, "not a metric name"),
        ("/api/devices/{d}/series", {"metric": "power_w", "from": "yesterday"}, 422, "Unix milliseconds or ISO 8601"),
        ("/api/devices/{d}/series", {"metric": "power_w", "from": "2026-01-01T00:00:00"}, 422, "needs a time zone"),
        ("/api/devices/{d}/series", {"metric": "power_w", "every": "0s"}, 422, "positive duration"),
        ("/api/devices/{d}/series", {"metric": "power_w", "from": "2000", "to": "1000"}, 400, "'to' must be after 'from'"),
        ("/api/devices/{d}/series", {"metric": "power_w", "every": "1s"}, 400, "more than 10000 buckets"),
    ],
)
async def test_bad_questions_get_clear_answers(api: Api, path: str, params: dict[str, str], code: int, says: str) -> None:
    r = await api.http.get(path.format(d=api.site.devices[0]), params=params, headers={"Accept-Language": "en"})  # the sentences in English
    assert r.status_code == code, r.text
    assert says in r.text


async def test_without_a_login_nothing_is_answered_and_a_store_outage_is_a_503(api: Api) -> None:
    d = api.site.devices[0]
    r = await api.http.get(f"/api/devices/{d}/latest", headers={"Authorization": ""})
    assert r.status_code == 401
    api.store.set_down("maintenance")
    r = await api.http.get(f"/api/devices/{d}/latest")
    assert r.status_code == 503
    assert "maintenance" in r.json()["detail"]
