"""The history query on a seeded store (SQLite and the real PostgreSQL): keyset pages walk everything kept (more than a
year) once each, newest first; each filter returns exactly the rows that match it; the search finds places by their
words; a territory never sees another's alarms."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.api.auth import Territory
from backend.history.query import BadCursor, HistoryFilter, HistoryRow, _select, count, iter_rows, page
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from backend.store.users import User
from broker.kinds import DeviceKind
from tests.history.seed import Seed, seed, store_for
from tests.processes import fresh_database

DAY = 86_400_000
NOW = 1_796_000_000_000  # 2026-11-30 08:53 in Beijing
TYPES = ("smoke", "sos", "comm_lost", "residual_current")
FALSE = ((30, "acknowledge", "acknowledged"), (90, "mark_false", "false_alarm"))
REAL = ((20, "acknowledge", "acknowledged"), (200, "finish", "handled"), (400, "verify_close", "closed"))


def seeds(sites: SiteDirectory) -> list[Seed]:
    """Every 3 days for 400 days (a year and more), each type in turn, over buildings of grids 1 and 2; every 5th a false
    alarm, every 7th a drill, the newest still open."""
    kinds = {"smoke": DeviceKind.SMOKE, "sos": DeviceKind.SOS, "comm_lost": DeviceKind.CAMERA, "residual_current": DeviceKind.ELECTRICAL}
    blds = ["c01-b01", "c01-b02", "c01-b03", "c01-b06", "c01-b13"]
    out = []
    for i in range(134):
        t = TYPES[i % len(TYPES)]
        b = blds[i % len(blds)]
        dev = next(d.id for d in sites.devices_by_building[b] if d.kind is kinds[t])
        path = FALSE if i % 5 == 0 else () if i < 3 else REAL
        out.append(Seed(f"a{i:03d}", t, dev, NOW - i * 3 * DAY - 3600_000, path=path, severity="critical" if t == "smoke" else "major",
                        drill=i % 7 == 0, detail=f"detail {i} 漏电" if t == "residual_current" else None))
    return out


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path, sample_site: SiteDirectory) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        e = make_engine(sqlite_url(tmp_path / "alarms.db"))
    else:
        pg: LocalPostgres = request.getfixturevalue("postgres_server")
        e = sa.create_engine(fresh_database(pg, "hist"))
    seed(store_for(e, sample_site), sample_site, seeds(sample_site))
    yield e
    e.dispose()


EVERYWHERE = Territory("all", None, None, None)


def walk(engine: sa.Engine, f: HistoryFilter, territory: Territory, sites: SiteDirectory, limit: int) -> list[HistoryRow]:
    rows: list[HistoryRow] = []
    after = None
    for _ in range(1000):
        p = page(engine, f, territory, sites, after=after, limit=limit)
        rows += p.rows
        if p.next_cursor is None:
            return rows
        after = p.next_cursor
    raise AssertionError("paging never ended")


def test_keyset_pages_walk_more_than_a_year_once_each_newest_first(engine: sa.Engine, sample_site: SiteDirectory) -> None:
    rows = walk(engine, HistoryFilter(), EVERYWHERE, sample_site, limit=7)
    assert [r.id for r in rows] == [f"a{i:03d}" for i in range(134)]
    assert rows[0].raised_at_ms - rows[-1].raised_at_ms > 365 * DAY
    assert [r.id for r in iter_rows(engine, HistoryFilter(), EVERYWHERE, sample_site, batch=10)] == [r.id for r in rows]
    # an alarm raised while a person pages neither shifts nor repeats a page: the cursor is a place in time, not an offset
    first = page(engine, HistoryFilter(), EVERYWHERE, sample_site, limit=10)
    seed(store_for(engine, sample_site), sample_site, [Seed("new", "smoke", "c01-b01-u1-f3-smoke", NOW)])
    second = page(engine, HistoryFilter(), EVERYWHERE, sample_site, after=first.next_cursor, limit=10)
    assert [r.id for r in second.rows] == [f"a{i:03d}" for i in range(10, 20)]


Check = Callable[[Seed], bool]


def cases(sites: SiteDirectory) -> list[tuple[HistoryFilter, Check]]:
    grid_of = {d: sites.devices[d].building for d in sites.devices}
    return [
        (HistoryFilter(from_ms=NOW - 30 * DAY, to_ms=NOW - 10 * DAY), lambda s: NOW - 30 * DAY <= s.raised_ms < NOW - 10 * DAY),
        (HistoryFilter(kinds=("sos", "comm_lost")), lambda s: s.alarm_type in ("sos", "comm_lost")),
        (HistoryFilter(severity="critical"), lambda s: s.severity == "critical"),
        (HistoryFilter(state="open_unknown"), lambda s: False),
        (HistoryFilter(state="raised"), lambda s: not s.path),
        (HistoryFilter(state="closed"), lambda s: bool(s.path) and s.path[-1][2] == "closed"),
        (HistoryFilter(drill=True), lambda s: s.drill),
        (HistoryFilter(drill=False, false_alarm=True), lambda s: not s.drill and s.path == FALSE),
        (HistoryFilter(false_alarm=False), lambda s: s.path != FALSE),
        (HistoryFilter(building="c01-b03"), lambda s: grid_of[s.device] == "c01-b03"),
        (HistoryFilter(grid="c01-g2"), lambda s: sites.buildings[grid_of[s.device]].grid == "c01-g2"),
        (HistoryFilter(community="c01"), lambda s: True),
        (HistoryFilter(text="3号楼"), lambda s: grid_of[s.device] == "c01-b03"),  # building 3 by name, not 13号楼
        (HistoryFilter(text="第2网格"), lambda s: sites.buildings[grid_of[s.device]].grid == "c01-g2"),
        (HistoryFilter(text="漏电"), lambda s: s.alarm_type == "residual_current"),
        (HistoryFilter(text="C01-B13-"), lambda s: grid_of[s.device] == "c01-b13"),  # a device id, any case
        (HistoryFilter(text="a05"), lambda s: s.id.startswith("a05")),
        (HistoryFilter(text="100%_"), lambda s: False),  # LIKE's wildcards are plain characters
        (HistoryFilter(kinds=("smoke",), drill=False, from_ms=NOW - 200 * DAY, grid="c01-g1"),
         lambda s: s.alarm_type == "smoke" and not s.drill and s.raised_ms >= NOW - 200 * DAY
         and sites.buildings[grid_of[s.device]].grid == "c01-g1"),
    ]


def test_each_filter_returns_exactly_the_rows_that_match(engine: sa.Engine, sample_site: SiteDirectory) -> None:
    all_seeds = seeds(sample_site)
    for f, check in cases(sample_site):
        expected = [s.id for s in all_seeds if check(s)]
        got = [r.id for r in walk(engine, f, EVERYWHERE, sample_site, limit=13)]
        assert got == expected, f"{f}: {len(got)} rows, expected {len(expected)}"
        assert count(engine, f, EVERYWHERE, sample_site) == len(expected), f
    assert {r.was_false for r in walk(engine, HistoryFilter(false_alarm=True), EVERYWHERE, sample_site, limit=50)} == {True}


def test_a_territory_never_sees_another_grid(engine: sa.Engine, sample_site: SiteDirectory) -> None:
    gw1 = Territory.of(User("gw1", "grid_worker", "gw1", "c01-g1"), sample_site)
    rows = walk(engine, HistoryFilter(), gw1, sample_site, limit=20)
    assert rows
    assert {sample_site.buildings[r.building_id or ""].grid for r in rows} == {"c01-g1"}
    nobody = Territory("none", None, frozenset(), frozenset())
    assert page(engine, HistoryFilter(), nobody, sample_site).rows == []
    other = Territory.of(User("d2", "duty_officer", "d2", "c02"), sample_site)
    assert walk(engine, HistoryFilter(), other, sample_site, limit=50) == []


@pytest.mark.parametrize("cursor", ["", "abc", "12", ".a1", "x.a1", "1" * 200])
def test_a_cursor_not_given_out_is_refused(engine: sa.Engine, sample_site: SiteDirectory, cursor: str) -> None:
    if not cursor:
        assert page(engine, HistoryFilter(), EVERYWHERE, sample_site, after=cursor).rows  # empty: the first page
        return
    with pytest.raises(BadCursor):
        page(engine, HistoryFilter(), EVERYWHERE, sample_site, after=cursor)


def test_the_history_indexes_exist(engine: sa.Engine) -> None:
    names = {ix["name"] for ix in sa.inspect(engine).get_indexes("alarms")} | {ix["name"] for ix in sa.inspect(engine).get_indexes("alarm_audit")}
    assert {"ix_alarm_raised_id", "ix_alarm_community_raised", "ix_alarm_device_raised", "ix_audit_to_state"} <= names


def test_a_deep_page_walks_the_keyset_index_not_a_sort(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The page query reads ix_alarm_raised_id in order from the cursor: no sort of the whole table (SQLite's plan; PostgreSQL's
    planner chooses by its statistics)."""
    engine = make_engine(sqlite_url(tmp_path / "plan.db"))
    seed(store_for(engine, sample_site), sample_site, seeds(sample_site))
    q = _select(HistoryFilter(), EVERYWHERE, sample_site, (NOW - 200 * DAY, "a050"), 50)
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = " | ".join(str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    engine.dispose()
    assert "ix_alarm_raised_id" in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
