"""The monthly report read from real stores (SQLite and PostgreSQL: alarms, audit log, the ladder's log) and served by the
API: figures as worked out by hand, the month cut in Beijing time on a machine in UTC, the XLSX opened, bad requests
refused with a Chinese reason."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from backend.escalation import store as escalation_store
from backend.reports.monthly import monthly_report
from backend.reports.query import month_input
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.migrations import upgrade
from backend.store.pg_local import LocalPostgres
from broker.kinds import DeviceKind
from tests.api.conftest import ApiRig, make_rig
from tests.history.seed import Seed, seed, store_for
from tests.processes import fresh_database

BJ = ZoneInfo("Asia/Shanghai")
NOW = int(datetime(2026, 12, 6, 9, tzinfo=BJ).timestamp() * 1000)
CLOSED = ((60, "acknowledge", "acknowledged"), (300, "finish", "handled"), (600, "verify_close", "closed"))
FALSE = ((60, "mark_false", "false_alarm"),)


def bj(day: int, hour: int = 0, month: int = 11) -> int:
    return int(datetime(2026, month, day, hour, tzinfo=BJ).timestamp() * 1000)


def dev(sites: SiteDirectory, building: str, kind: DeviceKind, n: int = 0) -> str:
    return [d.id for d in sites.devices_by_building[building] if d.kind is kind][n]


def november(sites: SiteDirectory) -> list[Seed]:
    smoke = dev(sites, "c01-b01", DeviceKind.SMOKE)
    return [
        Seed("f1", "smoke", dev(sites, "c01-b02", DeviceKind.SMOKE), bj(3, 10), CLOSED),
        Seed("f2", "smoke", smoke, bj(4, 10), FALSE),
        Seed("f3", "smoke", smoke, bj(9, 10), FALSE),
        Seed("c1", "comm_lost", dev(sites, "c01-b03", DeviceKind.CAMERA), bj(2), ((12 * 3600, "resolve", "closed"),), severity="minor"),
        Seed("d1", "smoke", smoke, bj(5, 10), drill=True),
        Seed("d2", "smoke", smoke, bj(19, 15), drill=True),
        # 1 November 01:00 in Beijing is 31 October 17:00 UTC: November's; 31 October 23:00 in Beijing is October's
        Seed("edge_in", "sos", dev(sites, "c01-b04", DeviceKind.SOS), bj(1, 1)),
        Seed("edge_out", "sos", dev(sites, "c01-b04", DeviceKind.SOS), bj(31, 23, month=10)),
    ]


def ladder(engine: sa.Engine) -> None:
    upgrade(engine, escalation_store.MIGRATIONS, escalation_store.VERSION_TABLE)
    rows = []
    for alarm, paged, scene in (("f1", bj(3, 10), bj(3, 10) + 150_000), ("f2", bj(4, 10), bj(4, 10) + 200_000)):
        base = {"alarm_id": alarm, "step": 0, "field_state": None, "contact": None, "due_ms": None, "drill": False, "worker": "t"}
        rows += [{**base, "n": 0, "kind": "paged", "rung": "fire_station", "detail": "m1", "at_ms": paged},
                 {**base, "step": 1, "n": 0, "kind": "observed", "rung": "fire_station", "detail": "m1: acknowledge", "at_ms": paged + 30_000,
                  "field_state": "acknowledged"},
                 {**base, "step": 2, "n": 0, "kind": "observed", "rung": "fire_station", "detail": "m1: arrive", "at_ms": scene, "field_state": "on_scene"}]
    with engine.begin() as conn:
        conn.execute(sa.insert(escalation_store.escalation_log), rows)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path, sample_site: SiteDirectory) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        e = make_engine(sqlite_url(tmp_path / "alarms.db"))
    else:
        pg: LocalPostgres = request.getfixturevalue("postgres_server")
        e = sa.create_engine(fresh_database(pg, "rep"))
    seed(store_for(e, sample_site), sample_site, november(sample_site))
    ladder(e)
    yield e
    e.dispose()


@pytest.fixture
def machine_in_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_month_from_the_stores(engine: sa.Engine, sample_site: SiteDirectory, machine_in_utc: None) -> None:
    assert time.localtime(0).tm_gmtoff == 0  # the machine is in UTC; the month is Beijing's
    r = monthly_report(month_input(engine, sample_site, "c01", "2026-11", tz=BJ, now_ms=NOW))
    assert r["totals"]["real"] == 5  # f1, f2, f3, c1, edge_in (edge_out is October's in Beijing)
    assert r["totals"]["drill"] == 2
    assert (r["totals"]["closed"], r["totals"]["false_alarm"], r["totals"]["resolved"], r["totals"]["open"]) == (1, 2, 1, 1)
    flagged = [d for d in r["false_alarm_devices"] if d["flagged"]]
    assert [d["device_id"] for d in flagged] == [dev(sample_site, "c01-b01", DeviceKind.SMOKE)]
    fs = next(x for x in r["response"] if x["rung"] == "fire_station")
    assert (fs["paged"], fs["on_scene"]["p50_s"], fs["on_scene"]["p90_s"], fs["on_scene"]["meets_target"]) == (2, 150, 200, False)
    assert fs["acknowledge"]["p90_s"] == 30
    assert (r["drills"]["fire_drills"], r["drills"]["meets_target"]) == (2, True)
    cams = sum(1 for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA)
    assert r["health"]["cameras"] == cams
    assert r["health"]["camera_rate"] == pytest.approx(1 - 0.5 / (30 * cams))
    october = monthly_report(month_input(engine, sample_site, "c01", "2026-10", tz=BJ, now_ms=NOW))
    assert october["totals"]["real"] == 1  # edge_out


@pytest.fixture
async def api(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    async with make_rig(tmp_path, sample_site) as r:
        r.clock.advance((NOW - r.clock.now_ms()) / 1000)
        r.renew_sessions()
        seed(store_for(r.service.store.engine, sample_site), sample_site, november(sample_site))
        ladder(r.service.store.engine)
        yield r


async def test_the_report_api_and_its_xlsx(api: ApiRig) -> None:
    r = await api.client.get("/api/reports/communities", headers=api.auth("duty"))
    assert r.json() == {"communities": [{"id": "c01", "name": "幸福里社区"}], "this_month": "2026-12", "time_zone": "Asia/Shanghai"}
    r = await api.client.get("/api/reports/communities/c01/monthly", params={"month": "2026-11"}, headers=api.auth("duty"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["report"]["totals"]["false_alarm"] == 2
    assert body["words"]["types"]["smoke"] == "烟感报警"
    assert body["words"]["outcomes"]["false_alarm"] == "误报"
    r = await api.client.get("/api/reports/communities/c01/monthly.xlsx", params={"month": "2026-11"}, headers=api.auth("duty"))
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["概览", "按类型", "误报设备", "响应时间", "演练", "设备健康", "巡检"]
    overview = {row[0]: str(row[1]) for row in wb["概览"].iter_rows(values_only=True) if row and len(row) > 1}
    assert overview["误报"] == "2"
    assert overview["统计区间"].startswith("2026-11-01 00:00:00 至 2026-12-01 00:00:00")
    assert "达标" in overview["消防演练（次）"]
    flagged = [row for row in wb["误报设备"].iter_rows(min_row=3, values_only=True) if row[5] == "是"]
    assert len(flagged) == 1
    fire = next(row for row in wb["响应时间"].iter_rows(values_only=True) if row[0] == "微型消防站")
    assert (fire[4], fire[5], fire[6], fire[7]) == ("150 秒", "200 秒", "180 秒", "未达标")
    # the current month by default
    r = await api.client.get("/api/reports/communities/c01/monthly", headers=api.auth("duty"))
    assert r.json()["report"]["month"] == "2026-12"


BAD = [
    ("duty", "/api/reports/communities/c01/monthly?month=2027-01", 400, "还没有开始"),
    ("duty", "/api/reports/communities/c01/monthly.xlsx?month=2027-01", 400, "还没有开始"),
    ("duty", "/api/reports/communities/c01/monthly?month=2026-13", 422, "格式不对"),
    ("duty", "/api/reports/communities/c01/monthly?month=1999-12", 400, "超出范围"),
    ("duty", "/api/reports/communities/c99/monthly?month=2026-11", 404, "没有社区 'c99'"),
    ("gw1", "/api/reports/communities/c01/monthly?month=2026-11", 403, "您的角色（grid_worker）"),
    ("mfs", "/api/reports/communities", 403, "您的角色（micro_fire_station）"),
    ("duty", "/api/reports/communities/c01/monthly.xlsx?month=2026-11x", 422, "格式不对"),
]


async def test_a_bad_report_request_is_refused_with_a_reason(api: ApiRig) -> None:
    for who, url, code, zh in BAD:
        r = await api.client.get(url, headers=api.auth(who))
        assert r.status_code == code, f"{url}: {r.text}"
        assert zh in r.json()["detail"], url


def test_utc_is_not_beijing() -> None:
    assert datetime(2026, 11, 1, tzinfo=BJ).astimezone(UTC).day == 31
