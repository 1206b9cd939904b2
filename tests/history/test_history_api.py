"""The history API on the real alarm service: a filtered list paged to its end, its CSV and XLSX exports holding exactly
those rows (opened with csv and openpyxl), one alarm's 处置记录单, every bad request refused with a Chinese reason (English
on request) and nothing written, and Beijing times with the machine in UTC (or New York)."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from backend.alarms.collab import AlarmCollab
from backend.alarms.collab import Person as CollabPerson
from backend.alarms.schema import alarm_audit, alarms
from backend.api.console_history import site_zone
from backend.api.console_records import ConsoleAct, ConsoleRecords
from backend.escalation import store as escalation_store
from backend.forward.store import ForwardStore, forwards
from backend.history.export import HEADERS
from backend.settings import SiteSettings
from backend.sites import SiteDirectory
from backend.store.migrations import upgrade
from tests.api.conftest import ApiRig, make_rig
from tests.history.seed import Seed, seed, store_for
from tests.history.test_query import FALSE, NOW, REAL, seeds
from tests.workorders.images import png


@pytest.fixture
async def api(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    async with make_rig(tmp_path, sample_site) as r:
        r.clock.advance((NOW - r.clock.now_ms()) / 1000)
        r.renew_sessions()
        seed(store_for(r.service.store.engine, sample_site), sample_site, seeds(sample_site))
        yield r


FILTER = {"type": ["smoke", "sos"], "drill": "false", "from": "2026-03-01", "to": "2026-11-20", "grid": "c01-g1"}


async def walk(api: ApiRig, who: str, params: dict[str, Any], limit: int = 9) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        r = await api.client.get("/api/history", params={**params, "limit": limit, **({"after": after} if after else {})}, headers=api.auth(who))
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body["alarms"]
        if not body["next_cursor"]:
            return rows
        after = body["next_cursor"]


async def test_the_exports_hold_exactly_the_rows_the_filter_shows(api: ApiRig, sample_site: SiteDirectory) -> None:
    shown = await walk(api, "duty", FILTER)
    first = (await api.client.get("/api/history", params=FILTER, headers=api.auth("duty"))).json()
    assert first["total"] == len(shown) > 10
    assert first["time_zone"] == "Asia/Shanghai"
    assert {a["alarm_type"] for a in shown} == {"smoke", "sos"}
    assert {a["grid_name"] for a in shown} == {"第1网格"}
    assert not any(a["drill"] for a in shown)
    ids = [a["id"] for a in shown]

    r = await api.client.get("/api/history.csv", params=FILTER, headers=api.auth("duty"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeff")
    table = list(csv.reader(io.StringIO(text[1:])))
    assert tuple(table[0]) == HEADERS
    assert [row[0] for row in table[1:]] == ids
    by_id = {a["id"]: a for a in shown}
    for row in table[1:]:
        a = by_id[row[0]]
        assert row[1] == a["raised_local"]
        assert (row[2], row[3], row[4]) == (a["type_text"], a["severity_text"], a["state_text"])
        assert row[5] == ("是" if a["false_alarm"] else "否")
        assert (row[7], row[8], row[9]) == ("幸福里社区", "第1网格", a["building_name"])

    r = await api.client.get("/api/history.xlsx", params=FILTER, headers=api.auth("duty"))
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content), read_only=True)
    sheet = [tuple("" if v is None else v for v in row) for row in wb.worksheets[0].iter_rows(values_only=True)]
    assert sheet[0] == HEADERS
    assert [row[0] for row in sheet[1:]] == ids
    assert [row[1] for row in sheet[1:]] == [a["raised_local"] for a in shown]


async def test_a_grid_worker_exports_only_her_grid(api: ApiRig) -> None:
    r = await api.client.get("/api/history.csv", headers=api.auth("gw2"))
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8")[1:])))[1:]
    assert rows
    assert {row[8] for row in rows} == {"第2网格"}
    shown = await walk(api, "gw2", {}, limit=50)
    assert [a["id"] for a in shown] == [row[0] for row in rows]


async def test_false_alarm_and_search_filters(api: ApiRig, sample_site: SiteDirectory) -> None:
    false_ids = {s.id for s in seeds(sample_site) if s.path == FALSE}
    got = await walk(api, "duty", {"false_alarm": "true"}, limit=100)
    assert {a["id"] for a in got} == false_ids
    got = await walk(api, "duty", {"q": "3号楼"}, limit=100)
    assert {a["building_name"] for a in got} == {"3号楼"}


def counts(api: ApiRig) -> tuple[int, int]:
    with api.service.store.engine.connect() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(alarms)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(alarm_audit)).scalar_one())


BAD: list[tuple[dict[str, Any], int, str, str]] = [
    ({"from": "2026-11-20", "to": "2026-11-01"}, 400, "早于开始时间", "before 'from'"),
    ({"from": "2026-13-01"}, 422, "不是有效的日期", "not a valid date"),
    ({"from": "2026/11/01"}, 422, "格式不对", "pattern"),
    ({"from": "1999-12-31"}, 400, "超出范围", "out of range"),
    ({"to": "2031-01-01"}, 400, "超出范围", "out of range"),
    ({"from": "2026-12-25"}, 400, "在未来", "in the future"),
    ({"community": "c99"}, 404, "没有社区 'c99'", "no community 'c99'"),
    ({"grid": "c09-g1"}, 404, "没有网格", "no grid"),
    ({"building": "c01-b99"}, 404, "没有楼栋", "no building"),
    ({"limit": "501"}, 422, "太大", "less than or equal"),
    ({"after": "not-a-cursor"}, 400, "翻页标记无效", "not a cursor"),
    ({"type": "Smoke!"}, 422, "告警类型", "alarm type"),
    ({"state": "burning"}, 422, "state", "state"),
    ({"q": "a\x01b"}, 422, "q", "q"),
]


async def test_a_bad_request_is_refused_with_a_reason_and_nothing_written(api: ApiRig) -> None:
    before = counts(api)
    for params, code, zh, en in BAD:
        for url in ("/api/history", "/api/history.csv", "/api/history.xlsx"):
            if ("after" in params or "limit" in params) and url != "/api/history":
                continue  # paging is the list's alone
            r = await api.client.get(url, params=params, headers=api.auth("duty"))
            assert r.status_code == code, f"{url} {params}: {r.status_code} {r.text}"
            assert zh in r.json()["detail"], r.json()["detail"]
            r = await api.client.get(url, params=params, headers={**api.auth("duty"), "Accept-Language": "en"})
            assert en in r.json()["detail"], r.json()["detail"]
    assert counts(api) == before


async def test_a_place_outside_the_territory_is_not_found_like_an_unknown_one(api: ApiRig) -> None:
    outside = await api.client.get("/api/history", params={"building": "c01-b01"}, headers=api.auth("gw2"))
    unknown = await api.client.get("/api/history", params={"building": "c01-b99"}, headers=api.auth("gw2"))
    assert outside.status_code == unknown.status_code == 404
    assert outside.json()["detail"].replace("c01-b01", "X") == unknown.json()["detail"].replace("c01-b99", "X")
    r = await api.client.get("/api/history", params={"grid": "c01-g1"}, headers=api.auth("gw2"))
    assert r.status_code == 404


async def test_the_record_page_and_its_xlsx(api: ApiRig, sample_site: SiteDirectory) -> None:
    s = next(s for s in seeds(sample_site) if s.path == REAL and not s.drill and sample_site.devices[s.device].building == "c01-b06")
    r = await api.client.get(f"/api/history/{s.id}/record", headers=api.auth("duty"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "处置记录单" in page
    assert "6号楼" in page
    assert "处置完成" in page  # the audit moves, in words
    assert "复核关闭" in page
    assert "值班员签字" in page
    assert "时间均为北京时间" in page
    r = await api.client.get(f"/api/history/{s.id}/record.xlsx", headers=api.auth("duty"))
    wb = load_workbook(io.BytesIO(r.content))
    cells = [c for row in wb.worksheets[0].iter_rows(values_only=True) for c in row if c is not None]
    assert "处置记录单" in cells
    assert "6号楼" in cells
    assert "处置完成" in cells
    for who in ("gw1", "leader"):  # grid 1, building 1: 6号楼 is outside
        r = await api.client.get(f"/api/history/{s.id}/record", headers=api.auth(who))
        assert r.status_code == 404
        assert "辖区内没有警报" in r.json()["detail"]


@pytest.fixture(params=["UTC", "America/New_York"])
def machine_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


async def test_times_a_person_reads_are_beijing_times_on_a_machine_in_another_zone(api: ApiRig, sample_site: SiteDirectory,
                                                                                  machine_zone: str) -> None:
    assert time.strftime("%Z") in ("UTC", "EST", "EDT"), machine_zone
    when = 1_795_883_400_000  # 2026-11-28T16:30:00Z = 2026-11-29 00:30 in Beijing
    dev = next(d.id for d in sample_site.devices_by_building["c01-b40"] if d.kind.value == "smoke")
    seed(store_for(api.service.store.engine, sample_site), sample_site, [Seed("bj1", "smoke", dev, when)])
    body = (await api.client.get("/api/history", params={"building": "c01-b40"}, headers=api.auth("duty"))).json()
    assert body["alarms"][0]["raised_local"] == "2026-11-29 00:30:00"
    assert body["utc_offset_min"] == 480
    # a date filter is a Beijing day: 29 November there begins at 16:00 UTC on the 28th
    got = (await api.client.get("/api/history", params={"building": "c01-b40", "from": "2026-11-29"}, headers=api.auth("duty"))).json()
    assert [a["id"] for a in got["alarms"]] == ["bj1"]
    got = (await api.client.get("/api/history", params={"building": "c01-b40", "to": "2026-11-28"}, headers=api.auth("duty"))).json()
    assert got["alarms"] == []
    r = await api.client.get("/api/history.csv", params={"building": "c01-b40"}, headers=api.auth("duty"))
    assert list(csv.reader(io.StringIO(r.content.decode()[1:])))[1][1] == "2026-11-29 00:30:00"
    r = await api.client.get("/api/history/bj1/record", headers=api.auth("duty"))
    assert "2026-11-29 00:30:00" in r.text


async def test_without_a_login_nothing_is_shown(api: ApiRig) -> None:
    for url in ("/api/history", "/api/history.csv", "/api/history.xlsx", "/api/history/a001/record", "/api/history/a001/record.xlsx"):
        r = await api.client.get(url)
        assert r.status_code == 401
        assert "登录" in r.json()["detail"]


async def test_the_record_holds_the_ladders_pages_and_answers_and_the_consoles_notes(api: ApiRig, sample_site: SiteDirectory) -> None:
    s = next(s for s in seeds(sample_site) if s.path == REAL and not s.drill)
    engine = api.service.store.engine
    upgrade(engine, escalation_store.MIGRATIONS, escalation_store.VERSION_TABLE)  # the ladder's log beside the alarms, as on a server
    base = {"alarm_id": s.id, "field_state": None, "contact": None, "due_ms": None, "drill": False, "worker": "backend"}
    with engine.begin() as conn:
        conn.execute(sa.insert(escalation_store.escalation_log), [
            {**base, "step": 0, "n": 0, "kind": "paged", "rung": "fire_station", "detail": "c01-mfs-head", "at_ms": s.raised_ms + 1000},
            {**base, "step": 0, "n": 1, "kind": "notify", "rung": "fire_station", "detail": "page", "at_ms": s.raised_ms + 1000},
            {**base, "step": 1, "n": 0, "kind": "observed", "rung": "fire_station", "detail": "c01-mfs-head: arrive", "at_ms": s.raised_ms + 150_000,
             "field_state": "on_scene"},
        ])
    ConsoleRecords(engine).add(ConsoleAct(s.id, s.raised_ms + 60_000, "duty", "verify", note="电话核实：厨房冒烟"))
    r = await api.client.get(f"/api/history/{s.id}/record", headers=api.auth("duty"))
    rows = [[cell.strip() for cell in re.findall(r"<td>(.*?)</td>", tr)] for tr in re.findall(r"<tr>(.*?)</tr>", r.text.split("处置过程", 1)[1])]
    rows = [row for row in rows if len(row) == 5]  # the body, not the header
    whats = [(row[1], row[2], row[3], row[4]) for row in rows]
    assert ("升级", "呼叫 · 微型消防站", "系统", "c01-mfs-head") in whats  # who was paged
    assert ("升级", "应答 · 微型消防站", "系统", "c01-mfs-head：到场") in whats  # who answered, and what
    assert ("值班台", "核实", "duty", "电话核实：厨房冒烟") in whats  # the console's act with its note
    assert ("状态", "复核关闭", "duty1", "") in whats  # every lifecycle move with its actor
    assert not any(w[1].startswith("发出通知") for w in whats)  # the notices themselves are not the record's
    times = [row[0] for row in rows]
    assert times == sorted(times)


async def test_the_record_holds_assignments_comments_with_photos_and_the_119_hand_off(api: ApiRig, sample_site: SiteDirectory,
                                                                                      tmp_path: Path) -> None:
    s = next(s for s in seeds(sample_site) if s.path == REAL and not s.drill)
    engine = api.service.store.engine
    collab = AlarmCollab(api.service.store, api.clock, tmp_path / "photos")
    await collab.assign(s.id, "duty", CollabPerson("c01-g1-w1", "杨敏", "grid_worker"), note="请到场核查")
    await collab.comment(s.id, "杨敏（网格员）", "厨房油锅起火，已扑灭", [png()])
    store = ForwardStore(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(forwards).values(
            forward_id="F1", alarm_id=s.id, alarm_type="smoke", how="verified", verifier="duty", verified_ms=s.raised_ms + 60_000, drill=False,
            status="receipted", channel="primary", receipt="RX119-0001", reason="", rounds=1, payload="{}", created_ms=s.raised_ms + 60_500,
            updated_ms=s.raised_ms + 61_000, receipted_ms=s.raised_ms + 61_000))
    assert store is not None
    r = await api.client.get(f"/api/history/{s.id}/record", headers=api.auth("duty"))
    rows = [[cell.strip() for cell in re.findall(r"<td>(.*?)</td>", tr)] for tr in re.findall(r"<tr>(.*?)</tr>", r.text.split("处置过程", 1)[1])]
    whats = [(row[1], row[2], row[3], row[4]) for row in rows if len(row) == 5]
    assert ("协同", "指派负责人", "duty", "杨敏（网格员） · 请到场核查") in whats
    assert ("协同", "评论", "杨敏（网格员）", "厨房油锅起火，已扑灭（1 张照片）") in whats
    assert ("转警", "转警119", "duty", "核实属实后转警") in whats
    assert ("转警", "119 已回执", "系统", "回执号 RX119-0001 · primary") in whats
    x = await api.client.get(f"/api/history/{s.id}/record.xlsx", headers=api.auth("duty"))
    assert x.status_code == 200
    cells = [c for row in load_workbook(io.BytesIO(x.content)).worksheets[0].iter_rows(values_only=True) for c in row if c is not None]
    assert "厨房油锅起火，已扑灭（1 张照片）" in cells


async def test_the_site_time_zone_comes_from_the_settings(api: ApiRig) -> None:
    """site.time_zone (the server's settings, ApiDeps.extras["site"]) wins; without it, the alarm service's maintenance zone (which
    follows site.time_zone), else Beijing time."""
    assert site_zone(api.deps)[1] == "Asia/Shanghai"
    tokyo = dataclasses.replace(api.deps, extras={**(api.deps.extras or {}), "site": SiteSettings(time_zone="Asia/Tokyo")})
    tz, name = site_zone(tokyo)
    assert name == "Asia/Tokyo"
    assert datetime.fromtimestamp(1_795_883_400, tz).strftime("%H:%M") == "01:30"  # 16:30 UTC
