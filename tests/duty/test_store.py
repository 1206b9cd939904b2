"""The duty tables round trip on SQLite and on a real PostgreSQL (the session's server, a fresh database here);
a second accept or cancel writes nothing; a new store on the same database (a restart) keeps everything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.directory import Seat
from backend.duty.store import AuditRow, DutyStore, HandoverRecord, OverrideRecord, ShiftRecord
from backend.sites.roster import OverrideKind, RosterOverride
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from tests.processes import fresh_database

T0 = 1_767_225_600_000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def pg_url(postgres_server: LocalPostgres) -> str:
    return fresh_database(postgres_server, "duty")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        e = make_engine(sqlite_url(tmp_path / "alarms.db"))
    else:
        e = sa.create_engine(request.getfixturevalue("pg_url"))
        DutyStore(e)
        with e.begin() as conn:  # each test starts empty
            for t in ("duty_audit", "duty_handovers", "duty_shifts", "duty_overrides"):
                conn.execute(sa.text(f"DELETE FROM {t}"))
    yield e
    e.dispose()


def row(action: str, subject: str, at: int = T0) -> AuditRow:
    return AuditRow(at, "duty", "roster", action, subject, "c01", f"{action} {subject}")


def test_overrides_round_trip_and_survive_a_restart(engine: sa.Engine) -> None:
    store = DutyStore(engine)
    leave = RosterOverride("ov1", OverrideKind.SICK, T0, T0 + 8 * HOUR, "c01-g1-w1", "c01-g1-w2", Seat.GRID_WORKER, None, "发烧")
    assign = RosterOverride("ov2", OverrideKind.ASSIGN, T0, T0 + HOUR, None, "c01-vol01", Seat.BUILDING_LEADER, "c01-b01", "外出")
    store.add_override(OverrideRecord(leave, "c01", "duty", T0), row("override_sick", "ov1"))
    store.add_override(OverrideRecord(assign, "c01", "duty", T0 + 1), row("override_assign", "ov2"))
    again = DutyStore(engine)  # a restart: the constructor finds the tables at head and keeps them
    got = {r.override.id: r for r in again.overrides(live_at_ms=T0)}
    assert got["ov1"].override == leave
    assert got["ov2"].override == assign
    assert got["ov1"].community == "c01"
    assert [r.override.id for r in again.overrides(live_at_ms=T0 + 2 * HOUR)] == ["ov1"], "ov2 ended at 09:00"
    assert again.cancel_override("ov1", "duty", "回来了", T0 + HOUR, row("override_cancel", "ov1", T0 + HOUR))
    assert not again.cancel_override("ov1", "duty2", "again", T0 + 2 * HOUR, row("override_cancel", "ov1", T0 + 2 * HOUR)), "once"
    rec = again.get_override("ov1")
    assert rec is not None
    assert (rec.cancelled_ms, rec.cancelled_by, rec.cancel_reason) == (T0 + HOUR, "duty", "回来了")
    assert again.overrides(live_at_ms=T0 + HOUR) == []
    assert [(a.action, a.subject) for a in again.audit_rows()] == [("override_cancel", "ov1"), ("override_assign", "ov2"), ("override_sick", "ov1")]


def test_shifts_open_once_per_officer_and_close(engine: sa.Engine) -> None:
    store = DutyStore(engine)
    assert store.start_shift(ShiftRecord("s1", "duty", "值班员甲", "c01", T0, None), row("shift_start", "duty"))
    assert not store.start_shift(ShiftRecord("s2", "duty", "值班员甲", "c01", T0 + 1, None), row("shift_start", "duty")), "already on a shift"
    assert store.start_shift(ShiftRecord("s3", "duty2", "值班员乙", "c01", T0 + 2, None), row("shift_start", "duty2"))
    assert [s.username for s in store.open_shifts()] == ["duty", "duty2"]
    ended = store.end_shift("duty", T0 + 12 * HOUR, row("shift_end", "duty"))
    assert ended is not None
    assert ended.ended_ms == T0 + 12 * HOUR
    assert store.end_shift("duty", T0 + 13 * HOUR, row("shift_end", "duty")) is None
    assert [s.username for s in store.open_shifts()] == ["duty2"]
    assert len(store.audit_rows()) == 3, "a refused start or end writes no audit row"


def test_a_handover_is_accepted_once(engine: sa.Engine) -> None:
    store = DutyStore(engine)
    snap = {"open_alarms": [{"id": "A1", "title": "烟感报警"}], "overdue": [], "windows": [], "silenced": [], "offline": [], "work_orders": ""}
    store.add_handover(HandoverRecord("h1", "c01", "duty", T0, "3号楼烟感待复核", snap, None, None, None), row("handover_write", "h1"))
    assert store.accept_handover("h1", "duty2", "A1 未见现场照片", T0 + HOUR, row("handover_accept", "h1"))
    assert not store.accept_handover("h1", "duty3", "", T0 + 2 * HOUR, row("handover_accept", "h1"))
    h = store.get_handover("h1")
    assert h is not None
    assert (h.snapshot, h.accepted_by, h.accepted_ms, h.objections) == (snap, "duty2", T0 + HOUR, "A1 未见现场照片")
    assert [x.id for x in store.handovers()] == ["h1"]
    assert [a.action for a in store.audit_rows()] == ["handover_accept", "handover_write"]
