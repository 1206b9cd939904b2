"""Issue 19: receipts written in batches. A batch is stored exactly as one by one would store it, in one transaction;
a notice's console copy and its channels known without sending (not configured, drill withheld, rate limited) are
one transaction, published after it in order; the notices of one outbox round share their receipt and outbox
transactions (backend.notify.receipts.GroupCommit); a failed or cancelled write neither hangs nor loses the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alerting.ladder import Contact
from backend.escalation.runtime import EscalationRuntime
from backend.escalation.settings import EscalationSettings
from backend.notify import DeliveryStatus, Dispatcher, Message, Receipt, ReceiptStore
from backend.notify.receipts import GroupCommit, ReceiptStage, receipt_events, receipts
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from backend.stream import CentreStream, Event, ReceiptRecorded
from broker.clock import VirtualClock
from tests.conftest import fresh_database
from tests.escalation.helpers import THU_0900, RecordingChannel, fire
from tests.waiting import until

WANG = Contact("mfs-0", "王强", phone="13900000000")


class Commits:
    """Transactions that wrote, committed on an engine (SQLAlchemy's `commit` event; on SQLite a block that only read
    commits nothing: its driver opens a transaction at the first write)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.n = 0
        self.sqlite = engine.dialect.name == "sqlite"
        sa.event.listen(engine, "commit", self._heard)

    def _heard(self, conn: sa.Connection) -> None:
        self.n += int(conn.connection.dbapi_connection.in_transaction) if self.sqlite else 1  # type: ignore[union-attr]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    e = make_engine(sqlite_url(tmp_path / "receipts.db"))
    yield e
    e.dispose()


def rows(store: ReceiptStore) -> tuple[list[Any], list[Any]]:
    with store.engine.connect() as conn:
        r = [tuple(x) for x in conn.execute(sa.select(receipts).order_by(receipts.c.key, receipts.c.channel))]
        cols = [c for c in receipt_events.c if c.name != "id"]
        e = [tuple(x) for x in conn.execute(sa.select(*cols).order_by(receipt_events.c.id))]
    return r, e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """Two fresh databases of one kind: one store fed one by one, the other in a batch."""
    if request.param == "sqlite":
        engines = (make_engine(sqlite_url(tmp_path / "one.db")), make_engine(sqlite_url(tmp_path / "many.db")))
        yield engines
        for e in engines:
            e.dispose()
        return
    pg: LocalPostgres = request.getfixturevalue("postgres_server")
    with fresh_database(pg, "receipts") as one, fresh_database(pg, "receipts") as many:
        yield one, many


def test_a_batch_is_stored_as_one_by_one_would_store_it_in_one_transaction(two_engines: tuple[sa.Engine, sa.Engine]) -> None:
    one, many = (ReceiptStore(e) for e in two_engines)
    for store in (one, many):  # before the batch: an SMS the provider already reported on the phone
        store.record(Receipt("A1/k0", "A1", "p1", "sms", DeliveryStatus.DELIVERED, 1, 1_000, "ref-0", contact_name="李"))
        store.report("sms", "ref-0", ReceiptStage.DELIVERED, 1_500)
    batch = [
        Receipt("A1/k1", "A1", "p1", "console", DeliveryStatus.DELIVERED, 1, 2_000, contact_name="李"),
        Receipt("A1/k1", "A1", "p1", "voice", DeliveryStatus.NO_CHANNEL, 0, 2_000, error="no voice channel configured", contact_name="李"),
        Receipt("A1/k1", "A1", "p1", "sms", DeliveryStatus.RATE_LIMITED, 0, 2_000, error="rate limit", contact_name="李"),
        Receipt("A1/k0", "A1", "p1", "sms", DeliveryStatus.DELIVERED, 2, 2_100, "ref-0b", contact_name="李"),  # a redelivery: delivered kept
        Receipt("A1/k1", "A1", "p1", "sms", DeliveryStatus.DELIVERED, 1, 2_200, "ref-1", contact_name="李"),  # the same row again, in the batch
        Receipt("A1/k1", "A1", "p1", "sms", DeliveryStatus.FAILED, 3, 2_300, error="MK:0001", contact_name="李"),
        Receipt("A1/k1", "A1", "p1", "sms", DeliveryStatus.FAILED, 3, 2_400, error="MK:0001", contact_name="李"),  # no news
    ]
    expected = [one.record(r) for r in batch]
    commits = Commits(many.engine)
    changes = many.record_many(batch)
    assert commits.n == 1
    assert changes == expected
    assert [c.stage if c else None for c in changes] == [ReceiptStage.DELIVERED, ReceiptStage.NO_CHANNEL, ReceiptStage.RATE_LIMITED, None,
                                                         ReceiptStage.SENT, ReceiptStage.FAILED, None]
    assert rows(many) == rows(one)
    assert many.stages_of("A1/k0") == {"sms": ReceiptStage.DELIVERED}
    assert many.record_many([]) == []


async def test_a_notices_console_copy_and_its_unsent_channels_are_one_transaction_published_after_it(engine: sa.Engine) -> None:
    """A notice on app, SMS, voice and WeCom where only the app is configured: the console's receipt and the three
    'not sent (no channel configured)' are one commit (four before), the app's outcome another; each published once
    its commit is done, the console's first."""
    store = ReceiptStore(engine)
    stream = CentreStream()
    heard: list[tuple[str, str, bool]] = []

    async def listen(events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, ReceiptRecorded):
                heard.append((e.channel, e.status, e.channel in store.stages_of(e.key)))  # stored when heard?

    stream.subscribe(listen, name="test-receipts")

    async def record(r: Receipt) -> None:
        await asyncio.to_thread(store.record, r)

    async def record_many(rs: list[Receipt]) -> None:
        await asyncio.to_thread(store.record_many, rs)

    app = RecordingChannel("app", outside=False)
    d = Dispatcher({"app": app}, stream, VirtualClock(THU_0900), record=record, record_many=record_many)
    commits = Commits(engine)
    out = await d.deliver(Message(key="A1/gw/mfs-0/0", alarm_id="A1", contact=WANG, channels=("app", "sms", "voice", "wecom"), text="报警"))
    assert commits.n == 2, f"{commits.n} commits for one notice's five receipts"
    assert [(r.channel, r.status) for r in out] == [("console", DeliveryStatus.DELIVERED), ("app", DeliveryStatus.DELIVERED),
                                                    ("sms", DeliveryStatus.NO_CHANNEL), ("voice", DeliveryStatus.NO_CHANNEL),
                                                    ("wecom", DeliveryStatus.NO_CHANNEL)]
    assert heard == [("console", "delivered", True), ("sms", "no_channel", True), ("voice", "no_channel", True), ("wecom", "no_channel", True),
                     ("app", "sent", True)]
    assert len(app.sent) == 1


async def test_the_notices_of_one_round_share_their_receipt_and_outbox_transactions(engine: sa.Engine, sample_site: SiteDirectory) -> None:
    """A fire pages 8 people (the grid worker on the app and SMS, 7 on the fire station's shift on the app, SMS and
    voice); only the app is configured here. Each notice's receipts were a commit each and its outbox row one more:
    41 commits with the ladder's start and the claim. Delivered together through the runtime's wiring, they share
    them: 8 here (start, claim, and two writes each of the console groups, the app's outcomes and the done marks:
    the first notice's alone, then the other seven's together)."""
    published: list[str] = []

    async def publish(topic: str, payload: bytes, qos: int = 1) -> None:
        published.append(topic)

    clock = VirtualClock(THU_0900)
    async with EscalationRuntime(EscalationSettings(), engine, sample_site, clock, publish=publish) as runtime:
        commits = Commits(engine)
        await runtime.service.start(fire(roster=runtime.roster))

        def settled() -> bool:
            return runtime.store.outbox_counts() == {"done": 8}

        await until(settled, what="the round's 8 notices done")
        got = runtime.receipts.for_alarm("A1")
        assert len(got) == 8 * 4 - 1
        assert {r.status for r in got if r.channel in ("sms", "voice")} == {DeliveryStatus.NO_CHANNEL}
        assert {r.status for r in got if r.channel in ("console", "app")} == {DeliveryStatus.DELIVERED}
        assert len(published) == 8
        assert commits.n <= 10, f"{commits.n} commits for one round of 8 notices"


async def test_callers_arriving_during_a_write_go_together_in_the_next() -> None:
    written: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> None:
        written.append(items)
        if len(written) == 1:
            await gate.wait()

    group: GroupCommit[int] = GroupCommit(write)
    first = asyncio.create_task(group([0]))
    await until(lambda: written, what="the first write")
    rest = [asyncio.create_task(group([i, -i])) for i in range(1, 6)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in rest)
    gate.set()
    await asyncio.gather(first, *rest)
    assert written == [[0], [1, -1, 2, -2, 3, -3, 4, -4, 5, -5]]
    assert group.writes == 2


async def test_a_failed_write_fails_its_callers_and_the_next_write_goes_on() -> None:
    gate = asyncio.Event()
    written: list[list[str]] = []

    async def write(items: list[str]) -> None:
        if items[0].startswith("d"):
            raise RuntimeError("disk full")
        written.append(items)
        if items == ["first"]:
            await gate.wait()

    group: GroupCommit[str] = GroupCommit(write)
    first = asyncio.create_task(group(["first"]))
    await until(lambda: written, what="the first write")
    doomed = [asyncio.create_task(group([f"d{i}"])) for i in range(3)]
    await asyncio.sleep(0)
    gate.set()
    await first
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await group(["after"])
    assert written == [["first"], ["after"]]


async def test_one_callers_bad_items_fail_only_that_caller() -> None:
    """A notice whose receipt the database refuses fails its own delivery only, as before receipts were grouped."""
    gate = asyncio.Event()
    written: list[list[str]] = []

    async def write(items: list[str]) -> None:
        if "bad" in items:
            raise ValueError("refused")
        written.append(items)
        if items == ["first"]:
            await gate.wait()

    group: GroupCommit[str] = GroupCommit(write)
    first = asyncio.create_task(group(["first"]))
    await until(lambda: written, what="the first write")
    callers = [asyncio.create_task(group(items)) for items in (["ok1"], ["bad"], ["ok2", "ok3"])]
    await asyncio.sleep(0)
    gate.set()
    await first
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], ValueError)
    assert results[2] is None
    assert written == [["first"], ["ok1"], ["ok2", "ok3"]]


async def test_a_leader_cancelled_while_writing_hands_on_the_lead() -> None:
    gate = asyncio.Event()
    written: list[list[str]] = []

    async def write(items: list[str]) -> None:
        written.append(items)
        if items == ["leader"]:
            await gate.wait()

    group: GroupCommit[str] = GroupCommit(write)
    leader = asyncio.create_task(group(["leader"]))
    await until(lambda: written, what="the leader's write")
    waiting = [asyncio.create_task(group([f"w{i}"])) for i in range(3)]
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
    assert written == [["leader"], ["w0", "w1", "w2"]]
    await group(["later"])
    assert written[-1] == ["later"]
