"""Every SQL store gets its schema from its Alembic migrations, on SQLite and on a real PostgreSQL.

For each store: a fresh database migrates to exactly the tables its queries use (Alembic's autogenerate
comparison finds no difference); a database made the old way (create_all, or the queue's raw DDL) is adopted
with its rows; a second start changes nothing; and processes starting together on a fresh PostgreSQL
database all succeed, one migrating while the others wait on the advisory lock.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.schema import CreateIndex

from backend.alarms import schema as alarm_schema
from backend.alarms import store as alarm_store
from backend.api import console_records
from backend.escalation import store as escalation_store
from backend.escalation.runtime import load_policies
from backend.notify import receipts
from backend.relay import queue
from backend.store import users
from backend.store.db import make_engine, sqlite_url
from backend.store.migrations import MIGRATION_LOCK, current_heads
from backend.store.pg_local import LocalPostgres
from tests.processes import fresh_database as new_database
from tests.waiting import until

REPO = Path(__file__).resolve().parents[2]

# The uplink queue's DDL as backend/relay/queue.py ran it before migrations (commit 2bceba5).
OLD_QUEUE_DDL = [
    """CREATE TABLE IF NOT EXISTS uplink_queue (
        id bigserial PRIMARY KEY,
        key text NOT NULL,
        kind text NOT NULL,
        priority smallint NOT NULL,
        topic text,
        body bytea NOT NULL,
        received_ms bigint NOT NULL,
        enqueued_ms bigint NOT NULL DEFAULT (extract(epoch from clock_timestamp()) * 1000)::bigint,
        consumed_ms bigint,
        result text,
        CONSTRAINT ux_uplink_queue_key UNIQUE (key)
    )""",
    "CREATE INDEX IF NOT EXISTS ix_uplink_queue_pending ON uplink_queue (priority, id) WHERE consumed_ms IS NULL",
    "CREATE INDEX IF NOT EXISTS ix_uplink_queue_consumed ON uplink_queue (consumed_ms) WHERE consumed_ms IS NOT NULL",
]


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _old_escalation(engine: sa.Engine) -> None:
    """The escalation tables as create_all made them before migrations: today's, without what 0002 added."""
    escalation_store.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_notify_outbox_claim"))
        conn.execute(sa.text("ALTER TABLE notify_outbox DROP COLUMN priority"))


def _old_receipts(engine: sa.Engine) -> None:
    """The receipts table as create_all made it before migrations: today's, without what 0002 added."""
    receipts.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE notify_receipts DROP COLUMN delayed_ms"))


def _old_users(engine: sa.Engine) -> None:
    """The user tables as create_all made them before migrations: users and API tokens (0002 added the one-tap moves
    and the login audit)."""
    users.metadata.create_all(engine, tables=[users.users, users.api_tokens])


def _old_queue(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for stmt in OLD_QUEUE_DDL:
            conn.execute(sa.text(stmt))


@dataclass(frozen=True)
class Store:
    name: str
    metadata: sa.MetaData
    migrations: Path
    version_table: str
    open: Callable[[sa.Engine], object]  # what the backend does at start: construct the store
    old_way: Callable[[sa.Engine], None] | None  # how the tables were made before migrations (None: always migrated)
    postgres_only: bool = False
    old_way_frozen: bool = False  # the old way is a copy of the old DDL, not create_all of today's Tables


STORES = [
    Store("alarms", alarm_schema.metadata, alarm_store.MIGRATIONS, "alembic_version_alarms", alarm_store.AlarmStore, None),
    Store("escalation", escalation_store.metadata, escalation_store.MIGRATIONS, "alembic_version_escalation",
          lambda e: escalation_store.EscalationStore(e, load_policies()), _old_escalation, old_way_frozen=True),
    Store("receipts", receipts.metadata, receipts.MIGRATIONS, "alembic_version_notify", receipts.ReceiptStore, _old_receipts, old_way_frozen=True),
    Store("users", users.metadata, users.MIGRATIONS, "alembic_version_users", users.UserStore, _old_users, old_way_frozen=True),
    Store("console", console_records.metadata, console_records.MIGRATIONS, "alembic_version_console", console_records.ConsoleRecords,
          console_records.metadata.create_all),
    Store("queue", queue.metadata, queue.MIGRATIONS, "alembic_version_relay", lambda e: queue.UplinkQueue(_url(e)).ensure_tables(), _old_queue,
          postgres_only=True, old_way_frozen=True),
]


def _cases(stores: list[Store]) -> list[Any]:
    """(store, dialect) pairs; the PostgreSQL ones carry the postgres marker. The queue exists only on PostgreSQL."""
    out = []
    for s in stores:
        if not s.postgres_only:
            out.append(pytest.param(s, "sqlite", id=f"{s.name}-sqlite"))
        out.append(pytest.param(s, "postgresql", id=f"{s.name}-postgresql", marks=pytest.mark.postgres))
    return out


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], sa.Engine]]:
    """A factory: an engine on a new, empty database of the given dialect."""
    made: list[tuple[sa.Engine, str | None]] = []

    def make(dialect: str) -> sa.Engine:
        if dialect == "sqlite":
            engine = make_engine(sqlite_url(tmp_path / f"db{len(made)}.sqlite"))
            made.append((engine, None))
            return engine
        server: LocalPostgres = request.getfixturevalue("postgres_server")
        url = new_database(server, "mig")
        engine = sa.create_engine(url)
        made.append((engine, url.rsplit("/", 1)[1]))
        return engine

    yield make
    for engine, name in made:
        engine.dispose()
        if name is not None:
            admin = sa.create_engine(request.getfixturevalue("postgres_server").url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()


def _predicate(text: str | None) -> str | None:
    return None if text is None else re.sub(r"[\s()]", "", text).lower()


def partial_index_differences(engine: sa.Engine, metadata: sa.MetaData) -> list[Any]:
    """Partial indexes whose WHERE differs from the table's (autogenerate does not compare predicates)."""
    key = f"{engine.dialect.name}_where"
    insp = sa.inspect(engine)
    out: list[Any] = []
    for table in metadata.tables.values():
        reflected = {i["name"]: i.get("dialect_options", {}).get(key) for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            ddl = str(CreateIndex(index).compile(dialect=engine.dialect))
            want = _predicate(ddl.split(" WHERE ", 1)[1]) if " WHERE " in ddl else None
            got = _predicate(None if reflected.get(index.name) is None else str(reflected[index.name]))
            if got != want:
                out.append(("index_where", table.name, index.name, got, want))
    return out


def differences(engine: sa.Engine, metadata: sa.MetaData) -> list[Any]:
    """What autogenerate would change to make the database match the store's tables (other stores' tables and
    the version tables are not this store's business), and any partial index whose predicate differs."""
    def ours(name: str | None, type_: str, _parent: Any) -> bool:
        return type_ != "table" or name in metadata.tables

    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": ours})
        found = list(compare_metadata(mc, metadata))
    return found + partial_index_differences(engine, metadata)


def head(store: Store) -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(store.migrations))
    return set(ScriptDirectory.from_config(cfg).get_heads())


def at(engine: sa.Engine, store: Store) -> set[str]:
    with engine.connect() as conn:
        return current_heads(conn, store.version_table)


def sample_row(table: sa.Table, n: int) -> dict[str, Any]:
    """A row for any of the stores' tables, made from its column types (n keeps keys distinct)."""
    row: dict[str, Any] = {}
    for c in table.columns:
        if (c.primary_key and c.autoincrement is True) or c.server_default is not None:
            continue
        t = c.type
        if isinstance(t, sa.Boolean):
            row[c.name] = n % 2 == 0
        elif isinstance(t, sa.Integer):  # also BigInteger, SmallInteger
            row[c.name] = n + 1
        elif isinstance(t, sa.LargeBinary):
            row[c.name] = b"\x00body%d" % n
        else:
            row[c.name] = f"{c.name}-{n}"
    return row


def rows(engine: sa.Engine, table: sa.Table, names: list[str] | None = None) -> list[tuple[Any, ...]]:
    """The table's rows (only the columns `names`: those an old database had)."""
    cols = [table.c[n] for n in names] if names is not None else list(table.columns)
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(*cols)))


@pytest.mark.parametrize(("store", "dialect"), _cases(STORES))
def test_a_fresh_database_migrates_to_the_tables_the_queries_use(store: Store, dialect: str, fresh_database: Callable[[str], sa.Engine]) -> None:
    engine = fresh_database(dialect)
    store.open(engine)
    assert set(store.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    assert differences(engine, store.metadata) == []
    assert at(engine, store) == head(store), f"{store.version_table} names the newest revision"


@pytest.mark.parametrize(("store", "dialect"), _cases([s for s in STORES if s.old_way is not None]))
def test_a_database_made_before_migrations_is_adopted_with_its_rows(store: Store, dialect: str,
                                                                    fresh_database: Callable[[str], sa.Engine]) -> None:
    engine = fresh_database(dialect)
    assert store.old_way is not None
    # create_all of today's Tables is what the code before migrations made only while the baseline is the head.
    assert store.old_way_frozen or head(store) == {"0001"}, "a revision after 0001 exists: make the old database from a frozen copy of the pre-migration schema"
    store.old_way(engine)
    tables = [t for t in store.metadata.tables.values() if sa.inspect(engine).has_table(t.name)]  # a later revision may add tables
    with engine.begin() as conn:
        for t in tables:
            conn.execute(sa.insert(t), [sample_row(t, n) for n in range(3)])
    had = {t.name: [c["name"] for c in sa.inspect(engine).get_columns(t.name)] for t in tables}
    before = {t.name: rows(engine, t, had[t.name]) for t in tables}
    assert at(engine, store) == set(), "the old way wrote no version"

    store.open(engine)

    assert at(engine, store) == head(store), f"{store.version_table} is stamped"
    assert {t.name: rows(engine, t, had[t.name]) for t in tables} == before, "every row is kept"
    assert differences(engine, store.metadata) == [], "the old schema is the baseline's"


@pytest.mark.parametrize(("store", "dialect"), _cases(STORES))
def test_a_second_start_changes_nothing(store: Store, dialect: str, fresh_database: Callable[[str], sa.Engine]) -> None:
    engine = fresh_database(dialect)
    store.open(engine)
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)  # every engine: the queue's migration makes its own
    try:
        store.open(engine)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert at(engine, store) == head(store)
    changes = [s for s in sent if s.lstrip().split(None, 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}]
    assert changes == [], "an up-to-date database is only read"
    assert not [s for s in sent if "pg_advisory" in s], "an up-to-date database takes no migration lock"


def test_the_comparison_sees_a_missing_index(fresh_database: Callable[[str], sa.Engine]) -> None:
    """The check the tests above rely on can fail: a schema that lost an index is told apart."""
    engine = fresh_database("sqlite")
    escalation_store.EscalationStore(engine, load_policies())
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_escalations_due"))
    assert [d[0] for d in differences(engine, escalation_store.metadata)] == ["add_index"]


# A backend process at start: every store's migration, in the order the backend constructs them.
_START = """
import sys
import sqlalchemy as sa
from backend.alarms.store import AlarmStore
from backend.api.console_records import ConsoleRecords
from backend.escalation.runtime import load_policies
from backend.escalation.store import EscalationStore
from backend.notify.receipts import ReceiptStore
from backend.relay.queue import UplinkQueue
from backend.store.users import UserStore

url = sys.argv[1]
engine = sa.create_engine(url)
UserStore(engine)
AlarmStore(engine)
EscalationStore(engine, load_policies())
ReceiptStore(engine)
ConsoleRecords(engine)
UplinkQueue(url).ensure_tables()
engine.dispose()
"""


@pytest.mark.postgres
async def test_processes_starting_together_on_a_fresh_database_all_succeed(fresh_database: Callable[[str], sa.Engine]) -> None:
    engine = fresh_database("postgresql")
    url = _url(engine)

    def waiting() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = :k"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"), {"k": MIGRATION_LOCK}).scalar_one())

    holder = engine.connect()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        holder.begin()
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})  # so the starts really overlap
        procs = [subprocess.Popen([sys.executable, "-c", _START, url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for _ in range(2)]
        await until(lambda: waiting() == len(procs), timeout_s=60, what="every process waiting on the migration lock")
        holder.commit()
        outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    finally:
        holder.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    for store in STORES:
        assert at(engine, store) == head(store), store.version_table
        assert differences(engine, store.metadata) == [], store.name
