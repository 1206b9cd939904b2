"""Issue 19: a storm's ladder starts are stored together, one transaction per batch, on SQLite and PostgreSQL; an
alarm that already has a ladder is skipped (its ladder kept, not an error); a batch the database refuses is started
one by one, so one bad alarm stops no other's ladder. Its due steps (the repeats, falling due together) are written
one transaction per round too, each exactly once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.ladder import EscalationState, advance
from alerting.model import Persist, Place, Severity, Signal, SignalKind
from backend.escalation import EscalationService, EscalationStore, load_policies
from backend.escalation.bridge import START_BATCH
from backend.escalation.service import STEP_BATCH
from backend.escalation.store import StepOutcome
from backend.notify import Dispatcher, RateLimiter, Receipt, ReceiptStore
from backend.sites import SiteDirectory
from backend.sites.roster import SiteRoster
from backend.store.db import make_engine, sqlite_url
from backend.stream import CentreStream, Event, LadderStep
from broker.clock import VirtualClock
from tests.escalation.centre import BUILDING, centre
from tests.escalation.helpers import THU_0900, RecordingChannel, fire


class Commits:
    """Transactions committed on an engine (SQLAlchemy's `commit` event), counted while `on` is true."""

    def __init__(self, engine: sa.Engine) -> None:
        self.n = 0
        self.on = False
        sa.event.listen(engine, "commit", self._heard)

    def _heard(self, _conn: sa.Connection) -> None:
        self.n += int(self.on)


def ladder(engine: sa.Engine, site: SiteDirectory, clock: VirtualClock) -> tuple[EscalationService, CentreStream]:
    policies = load_policies()
    receipts = ReceiptStore(engine)

    async def record(r: Receipt) -> None:
        receipts.record(r)

    async def no_sleep(_: float) -> None:
        return None

    console = CentreStream()
    dispatcher = Dispatcher({"sms": RecordingChannel("sms")}, console, clock, sleep=no_sleep, limiter=RateLimiter(100_000, 60), record=record)
    service = EscalationService(EscalationStore(engine, policies), policies, SiteRoster(site), dispatcher, clock, place_name=lambda w: f"{w.building}")
    return service, console


async def test_a_batch_of_ladder_starts_is_one_transaction(db: sa.Engine, sample_site: SiteDirectory) -> None:
    """32 fire alarms' ladders: one commit (it was 32), each stored with its log and its notices, and each start's
    first steps published on the stream after it, in the order of the batch."""
    clock = VirtualClock(THU_0900)
    service, console = ladder(db, sample_site, clock)
    steps: list[str] = []

    async def heard(events: Sequence[Event]) -> None:
        steps.extend(e.alarm_id for e in events if isinstance(e, LadderStep))

    console.subscribe(heard, name="test-steps")
    roster = SiteRoster(sample_site)
    ids = [f"S{i:02d}" for i in range(START_BATCH)]
    commits = Commits(db)
    commits.on = True
    states = await service.start_many([fire(a, roster=roster) for a in ids])
    commits.on = False
    assert commits.n == 1, f"{commits.n} commits for a batch of {len(ids)} ladder starts"
    assert [s.alarm_id for s in states] == ids
    for alarm_id, state in zip(ids, states, strict=True):
        assert {e.rung for e in state.engagements} == {"grid_worker", "fire_station"}
        assert service.store.get(alarm_id) == state
        assert [e.kind for e in service.store.log(alarm_id)].count("notify") == 8  # grid worker + 7 on the fire station's shift
    assert service.store.outbox_counts() == {"pending": 8 * len(ids)}
    assert list(dict.fromkeys(steps)) == ids, "each ladder's first steps on the stream, in the batch's order"


async def test_an_alarm_that_already_has_a_ladder_is_skipped_and_keeps_it(db: sa.Engine, sample_site: SiteDirectory) -> None:
    """A start that comes again (a restart's reconcile, another process) changes nothing: no error, no second page."""
    clock = VirtualClock(THU_0900)
    service, _ = ladder(db, sample_site, clock)
    roster = SiteRoster(sample_site)
    first = await service.start(fire("A1", roster=roster))
    clock.advance(5.0)
    states = await service.start_many([fire("A2", roster=roster), fire("A1", roster=roster), fire("A3", roster=roster), fire("A2", roster=roster)])
    assert [s.alarm_id for s in states] == ["A2", "A1", "A3", "A2"]
    assert states[1] == first, "A1's ladder is the one it had (started 5 s earlier), read back"
    assert states[1].started_ms == THU_0900
    assert states[0] == states[3] == service.store.get("A2")
    assert states[0].started_ms == THU_0900 + 5_000
    for alarm_id in ("A1", "A2", "A3"):
        assert [e.kind for e in service.store.log(alarm_id)].count("notify") == 8, f"{alarm_id} paged once"
    assert service.store.outbox_counts() == {"pending": 8 * 3}
    assert service.store.create_many([], "w", clock.now_ms()) == []


async def test_a_storms_ladders_are_stored_in_a_few_transactions(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """100 smoke alarms committed together: their ladders and notify moves take one commit per batch of starts each
    (8), not one per ladder (104 before), and every ladder starts once."""
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    async with centre(engine, sample_site, rate_limit=100_000) as c:
        assert c.alarms is not None
        assert c.bridge is not None
        now = c.clock.now_ms()
        sigs = [Signal(SignalKind.RAISE, "smoke", f"device:storm-{i}", now, Severity.CRITICAL, True, False, "烟感报警",
                       Place(f"storm-{i}", None, BUILDING)) for i in range(100)]
        commits = Commits(engine)
        raised = await c.alarms.in_core(lambda book, at: [a for s in sigs for a in book.signal(s, at)], lambda conn: None)
        commits.on = True
        await c.settle()
        commits.on = False
        ids = [a.alarm.id for a in raised if isinstance(a, Persist)]
        assert c.bridge.started == len(ids) == 100
        assert c.bridge.failures == 0
        batches = -(-100 // START_BATCH)
        assert commits.n <= 2 * batches, f"{commits.n} commits for 100 ladder starts and their notify moves"
        for alarm_id in ids:
            assert len([e for e in c.log(alarm_id) if e.kind == "notify"]) >= 1, "its ladder paged someone"
    engine.dispose()


async def test_a_batch_the_database_refuses_is_started_one_by_one(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """One alarm the database will not take (a trigger refuses its row) fails the batch's transaction: the others'
    ladders are still started, each once, and their alarms notified; only the refused one is counted a failure."""
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    async with centre(engine, sample_site, rate_limit=100_000) as c:
        assert c.alarms is not None
        assert c.bridge is not None
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON escalations WHEN instr(NEW.state, 'refuse-me') > 0 "
                                 "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        now = c.clock.now_ms()
        sigs = [Signal(SignalKind.RAISE, "smoke", f"device:storm-{i}", now, Severity.CRITICAL, True, False, "refuse-me" if i == 3 else "烟感报警",
                       Place(f"storm-{i}", None, BUILDING)) for i in range(10)]
        raised = await c.alarms.in_core(lambda book, at: [a for s in sigs for a in book.signal(s, at)], lambda conn: None)
        await c.settle()
        ids = [a.alarm.id for a in raised if isinstance(a, Persist)]
        assert len(ids) == 10
        assert c.bridge.failures == 1
        assert c.bridge.started == 9
        assert c.escalation is not None
        for k, alarm_id in enumerate(ids):
            if k == 3:
                assert c.escalation.store.get(alarm_id) is None
                assert [e.move for e in c.alarms.store.audit(alarm_id)] == ["raise"]
            else:
                assert c.escalation.store.get(alarm_id) is not None
                assert [e.move for e in c.alarms.store.audit(alarm_id)] == ["raise", "notify"]
    engine.dispose()


async def test_a_start_the_database_refuses_for_another_reason_says_why_and_is_not_taken_as_started(db: sa.Engine,
                                                                                                   sample_site: SiteDirectory) -> None:
    """Only "this alarm already has a ladder" makes a start a no-op. A notice key already queued (a row left behind)
    is another refusal: raised as the database's error, nothing stored, and the ladder not taken as existing."""
    clock = VirtualClock(THU_0900)
    service, _ = ladder(db, sample_site, clock)
    roster = SiteRoster(sample_site)
    await service.start(fire("P1", roster=roster))  # the keys a start writes, learnt from a first alarm
    with db.begin() as conn:  # a notice of P2's first page already in the outbox
        row = conn.execute(sa.text("SELECT key FROM notify_outbox WHERE alarm_id = 'P1' ORDER BY key LIMIT 1")).scalar_one()
        conn.execute(sa.text("INSERT INTO notify_outbox (key, alarm_id, step, message, status, created_ms, deliveries, priority) "
                             "VALUES (:k, 'P2', 1, '{}', 'done', 0, 0, 1)"), {"k": row.replace("P1", "P2", 1)})
    with pytest.raises(sa.exc.IntegrityError):
        await service.start(fire("P2", roster=roster))
    assert service.store.get("P2") is None, "nothing of the refused start was stored"


async def test_a_round_of_due_steps_is_one_transaction_and_each_steps_once(db: sa.Engine, sample_site: SiteDirectory) -> None:
    """A storm's repeats fall due together: the timer loop writes them in one transaction per STEP_BATCH (it was one each,
    ~50 steps a second), each escalation stepped once, its log and its notices written with it."""
    clock = VirtualClock(THU_0900)
    service, _ = ladder(db, sample_site, clock)
    roster = SiteRoster(sample_site)
    ids = [f"R{i:02d}" for i in range(STEP_BATCH)]  # one round
    await service.start_many([fire(a, roster=roster) for a in ids])
    before = {a: service.store.get(a) for a in ids}
    notices = service.store.outbox_counts()["pending"]
    clock.advance(25.0)  # the fire station's repeat (every 20 s) is due for every one of them
    commits = Commits(db)
    commits.on = True
    assert await service.run_due() == STEP_BATCH
    commits.on = False
    assert commits.n == 1, f"{commits.n} commits for a round of {STEP_BATCH} due steps"
    for a in ids:
        was, now = before[a], service.store.get(a)
        assert was is not None
        assert now is not None
        assert now.step == was.step + 1, f"{a} stepped {now.step - was.step} times"
        assert [e.kind for e in service.store.log(a)].count("repeated") == 1
    assert service.store.outbox_counts()["pending"] > notices
    assert await service.run_due() == 0, "nothing is due twice"


async def test_a_step_that_moved_meanwhile_is_not_written_twice_and_the_rest_of_its_round_still_steps(db: sa.Engine, sample_site: SiteDirectory) -> None:
    """Between the round's read and its write another writer steps one of its escalations (another process; here a
    second connection, from inside the ladder's work): SQLite's guard (`WHERE step = <read>`) rolls the round back and
    each is stepped alone; PostgreSQL's lock on the round's rows makes the other writer pass it over. Either way every
    escalation is stepped exactly once and nothing of the round is written twice."""
    clock = VirtualClock(THU_0900)
    service, _ = ladder(db, sample_site, clock)
    roster = SiteRoster(sample_site)
    ids = ["M1", "M2", "M3"]
    await service.start_many([fire(a, roster=roster) for a in ids])
    clock.advance(25.0)
    now = clock.now_ms()
    store = service.store
    other = EscalationStore(db, store.policies)

    def advance_(s: EscalationState) -> StepOutcome:
        new, actions = advance(s, store.policies, SiteRoster(sample_site), now)
        return StepOutcome(new, actions, [])

    interfered: list[StepOutcome | None] = []

    def step(s: EscalationState) -> StepOutcome:
        if s.alarm_id == "M2" and not interfered:
            interfered.append(other.step_due("M2", advance_, "other", now))  # the other writer, before this round writes
        return advance_(s)

    before = {a: store.get(a) for a in ids}
    outcomes = store.step_due_many(ids, step, "me", now)
    for a in ids:
        was, after = before[a], store.get(a)
        assert was is not None
        assert after is not None
        assert after.step == was.step + 1, f"{a} stepped {after.step - was.step} times"
        assert [e.kind for e in store.log(a)].count("repeated") == 1, f"{a}'s repeat logged once"
    if db.dialect.name == "postgresql":
        assert interfered == [None], "the other writer passes over a row the round holds"
        assert all(o is not None for o in outcomes)
    else:
        assert interfered[0] is not None, "the other writer stepped M2 first"
        assert outcomes[0] is not None
        assert outcomes[1] is None, "M2 was no longer due when the round was stepped alone"
        assert outcomes[2] is not None
    assert store.step_due_many([], step, "me", now) == []
