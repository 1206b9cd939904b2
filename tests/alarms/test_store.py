"""The durable alarm store on SQLite and on a real PostgreSQL (the fixture's server, a fresh database here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.book import AlarmBook, replay
from alerting.lifecycle import AlarmState, Move
from alerting.model import Persist, Place, Severity, Signal, SignalKind
from backend.alarms.store import ALARM_ROW_KEYS, AUDIT_ROW_KEYS, AlarmStore, StoreError, _row, migrate
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from tests.processes import fresh_database

T0 = 1_767_225_600_000
DAY = 86_400_000


@pytest.fixture(scope="module")
def pg_url(postgres_server: LocalPostgres) -> str:
    return fresh_database(postgres_server, "alarms")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlarmStore]:
    if request.param == "sqlite":
        engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    else:
        engine = sa.create_engine(request.getfixturevalue("pg_url"))
        with engine.begin() as conn:  # each test starts empty
            for t in ("alarm_audit", "alarms", "device_records", "rule_state"):
                if sa.inspect(conn).has_table(t):
                    conn.execute(sa.text(f"DELETE FROM {t}"))
    yield AlarmStore(engine, lambda b: ("g1", "c01"))
    engine.dispose()


def smoke(subject: str = "device:s1", drill: bool = False) -> Signal:
    return Signal(SignalKind.RAISE, "smoke", subject, T0, Severity.CRITICAL, True, drill, "烟感报警 · 1号楼", Place("s1", "gw1", "b1", 1))


def test_alarms_and_audit_round_trip(store: AlarmStore) -> None:
    book = AlarmBook()
    actions = book.signal(smoke(), T0)
    store.apply(actions)
    [a] = [p.alarm for p in actions if isinstance(p, Persist)]
    store.apply(book.move(a.id, Move.ACKNOWLEDGE, "officer:zhang", T0 + 1000, note="我已收到"))
    store.apply(book.signal(smoke(), T0 + 2000))
    back = store.get(a.id)
    assert back is not None
    assert back == book.get(a.id), "what the store gives back is what the core holds"
    assert (back.state, back.occurrences, back.title) == (AlarmState.ACKNOWLEDGED, 2, "烟感报警 · 1号楼")
    assert replay(store.audit(a.id)) is AlarmState.ACKNOWLEDGED
    [rec] = store.list()
    assert (rec.grid_id, rec.community_id, rec.is_open) == ("g1", "c01", True)
    assert store.open_alarms() == [back]


def test_the_database_refuses_a_second_open_alarm_for_a_key(store: AlarmStore) -> None:
    store.apply(AlarmBook(id_prefix="X").signal(smoke(), T0))
    with pytest.raises(StoreError):
        store.apply(AlarmBook(id_prefix="Y").signal(smoke(), T0))
    assert len(store.list()) == 1
    store.apply(AlarmBook(id_prefix="Z").signal(smoke(drill=True), T0))
    assert store.counts(drill=False) == {"smoke": 1}
    assert store.counts(drill=True) == {"smoke": 1}


def test_one_apply_keeps_the_cores_order_for_a_close_and_reopen_of_a_key(store: AlarmStore) -> None:
    """A whole life in one transaction (as a storm batch gives it): raise, clear and raise again on one key, a
    second write of the same alarm, and 50 other alarms. The store must write in the core's order (the closed
    alarm before its successor, or the open-key index refuses) and end equal to the core."""
    book = AlarmBook()

    def battery(kind: SignalKind, t: int) -> Signal:
        return Signal(kind, "low_battery", "device:s1", t, Severity.MINOR)

    actions = book.signal(battery(SignalKind.RAISE, T0), T0)
    actions += book.signal(battery(SignalKind.CLEAR, T0 + 1), T0 + 1)
    actions += [a for i in range(50) for a in book.signal(smoke(f"device:s{i + 10}"), T0 + 2)]
    actions += book.signal(battery(SignalKind.RAISE, T0 + 3), T0 + 3)
    actions += book.signal(battery(SignalKind.RAISE, T0 + 4), T0 + 4)
    store.apply(actions)
    last = {p.alarm.id: p.alarm for p in actions}  # the core's final word on each alarm (closed ones leave its book)
    assert len(last) == 52
    for alarm_id, alarm in last.items():
        assert store.get(alarm_id) == alarm
        assert replay(store.audit(alarm_id)) is alarm.state
    battery_alarms = sorted((r for r in store.list(limit=100) if r.alarm_type == "low_battery"), key=lambda r: r.raised_at_ms)
    assert [(r.is_open, r.occurrences) for r in battery_alarms] == [(False, 1), (True, 2)]


def test_rule_state_and_migrations_are_idempotent(store: AlarmStore) -> None:
    assert store.load_rule_state("engine") is None
    store.save_rule_state("engine", b"\x00abc", T0)
    store.save_rule_state("engine", b"\x01def", T0 + 1)
    assert store.load_rule_state("engine") == b"\x01def"
    migrate(store.engine)
    AlarmStore(store.engine)
    assert store.load_rule_state("engine") == b"\x01def"


def test_sqlite_keeps_the_snapshot_beside_the_database_without_its_write_lock(tmp_path: Path) -> None:
    """Issue 19: ~10 MB of rule state written into the alarm file held its one write lock 73-200 ms, and a smoke alarm
    committed meanwhile waited. The snapshot is a file of its own: saved while another connection holds the write
    lock; a row an older version left is read until the first save, then deleted so it can never come back; a crash's
    temporary file is removed."""
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    store = AlarmStore(engine)
    with engine.begin() as conn:  # what an older version wrote
        conn.execute(sa.text("INSERT INTO rule_state (name, data, updated_ms) VALUES ('engine', :d, 1)"), {"d": b"old row"})
    assert store.load_rule_state("engine") == b"old row"
    (tmp_path / ".alarms.db.rule-state-engine-k2j4").write_bytes(b"half")  # a crash between the write and the rename
    store.save_rule_state("engine", b"first", T0)
    assert store.rule_state_file("engine") == tmp_path / "alarms.db.rule-state-engine"
    assert (tmp_path / "alarms.db.rule-state-engine").read_bytes() == b"first"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM rule_state")).scalar() == 0
    other = make_engine(sqlite_url(tmp_path / "alarms.db"))
    with other.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # another writer holds the database's write lock
        conn.exec_driver_sql("INSERT INTO device_records (device_id, at_ms, kind, drill) VALUES ('d', 1, 'self_test', 0)")
        started = time.monotonic()
        store.save_rule_state("engine", b"x" * 10_000_000, T0 + 1)
        assert time.monotonic() - started < 5.0, "the save waited for the write lock (its busy timeout is 30 s)"
        conn.rollback()
    assert store.load_rule_state("engine") == b"x" * 10_000_000
    assert AlarmStore(engine).load_rule_state("engine") == b"x" * 10_000_000, "a restarted store reads the file"
    assert sorted(p.name for p in tmp_path.iterdir() if "rule-state" in p.name) == ["alarms.db.rule-state-engine"], "no temporary left, old or new"
    other.dispose()
    engine.dispose()


def test_retention_keeps_a_year_at_least(store: AlarmStore) -> None:
    book = AlarmBook()
    store.apply(book.signal(Signal(SignalKind.RAISE, "low_battery", "device:s1", T0, Severity.MINOR), T0))
    store.apply(book.signal(Signal(SignalKind.CLEAR, "low_battery", "device:s1", T0 + 1000), T0 + 1000))
    store.apply(book.signal(smoke(), T0))
    with pytest.raises(ValueError, match="at least a year"):
        store.purge(T0 + 400 * DAY, 300)
    assert store.purge(T0 + 399 * DAY, 400) == 0
    assert store.purge(T0 + 401 * DAY, 400) == 1, "the closed alarm goes; the open smoke alarm stays however old"
    assert [r.alarm_type for r in store.list()] == ["smoke"]


def test_a_thin_slice_database_is_migrated_keeping_its_old_table(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "old.db"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alarms (id INTEGER PRIMARY KEY, key VARCHAR(200), is_open BOOLEAN)"))
        conn.execute(sa.text("INSERT INTO alarms VALUES (1, 'd1:smoke', 1)"))
    store = AlarmStore(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"alarms", "alarms_legacy_v0", "alarm_audit", "alembic_version_alarms"} <= tables
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alarms_legacy_v0")).scalar_one() == 1
    assert store.list() == []


def test_a_storm_in_one_apply_round_trips_across_many_multi_row_statements(store: AlarmStore) -> None:
    """On SQLite a commit's rows go as multi-row statements of ~270 alarms (issue 19: one statement step per row made
    the commit wait for Python's GIL once per row); every row and audit entry comes back as the core holds it, drills,
    flags and empty fields included, in the core's order (a close and a re-open of a key in the same commit)."""
    book = AlarmBook()
    actions = []
    for i in range(700):
        sig = smoke(f"device:s{i}", drill=i % 7 == 0)
        actions += book.signal(sig, T0 + i)
    first = next(p.alarm for p in actions if isinstance(p, Persist))
    actions += book.move(first.id, Move.ACKNOWLEDGE, "officer:zhang", T0 + 500, note="我已收到")
    actions += book.signal(Signal(SignalKind.CLEAR, "smoke", "device:s1", T0 + 600), T0 + 600)
    store.apply(actions)
    alarms = {p.alarm.id: book.get(p.alarm.id) or p.alarm for p in actions if isinstance(p, Persist)}
    assert len(alarms) == 700
    for alarm_id, alarm in alarms.items():
        assert store.get(alarm_id) == alarm
    assert replay(store.audit(first.id)) is AlarmState.ACKNOWLEDGED
    assert sum(len(store.audit(i)) for i in alarms) == sum(len(p.audit) for p in actions if isinstance(p, Persist))
    assert sum(1 for r in store.list(limit=1000) if r.drill) == len(range(0, 700, 7))


def test_the_statements_are_compiled_at_open_for_the_rows_the_store_writes(tmp_path: Path) -> None:
    """The first alarm after a start compiles nothing on the event loop (~5 ms of SQLAlchemy's compile before): the
    statements are compiled when the store opens, for the keys `_row` and `_audit_row` give, in the same order."""
    store = AlarmStore(make_engine(sqlite_url(tmp_path / "alarms.db")), lambda b: ("g1", "c01"))
    assert set(store._compiled) == {"alarms", "audit"}, "compiled at open"
    book = AlarmBook()
    actions = book.signal(smoke(), T0)
    [persist] = [p for p in actions if isinstance(p, Persist)]
    a = persist.alarm
    assert tuple(_row(a, "g1", "c01")) == ALARM_ROW_KEYS
    assert persist.audit
    assert all(tuple(AlarmStore._audit_row(e)) == AUDIT_ROW_KEYS for e in persist.audit)
    compiled = dict(store._compiled)
    assert store.apply_now(actions)
    assert store._compiled == compiled, "the alarm's commit used the statements compiled at open"
    assert store.get(a.id) == a
