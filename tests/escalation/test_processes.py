"""Escalation workers as real processes on a real PostgreSQL: kill -9 and restart, and two at once.

These are the only escalation tests that wait on the wall clock: the point is real processes, real crashes
and a real database. Margins are generous; the assertions are the issue's (within 1 s of the deadline, or
at once when it passed while the process was down; every step exactly once).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.ladder import AlarmFacts, start
from alerting.model import Severity
from backend.escalation import EscalationStore, load_policies
from backend.escalation.store import StepOutcome, escalations, outbox
from backend.sites.loader import load_site_directory
from backend.sites.roster import SiteRoster
from backend.store.pg_local import LocalPostgres
from tests.escalation.procs import TINY_SITE, Worker, fresh_database, policy_yaml, spawn_worker
from tests.processes import SmsReceiver, start_receiver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def open_escalations(db: str, site: Path, policy: Path, ids: list[str]) -> tuple[sa.Engine, EscalationStore]:
    engine = sa.create_engine(db)
    policies = load_policies(policy)
    store = EscalationStore(engine, policies)
    roster = SiteRoster(load_site_directory(site))
    for alarm_id in ids:
        t = now_ms()
        facts = AlarmFacts(alarm_id, "smoke", Severity.CRITICAL, t, roster.where(building="c01-b01"), "烟感报警")
        state, actions = start(facts, policies, roster, t)
        assert store.create(StepOutcome(state, actions, []), "test", t)
    return engine, store


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    site = tmp_path / "site.yaml"
    site.write_text(TINY_SITE, encoding="utf-8")
    return site, tmp_path / "policy.yaml"


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def _fired(w: Worker, kind: str) -> list[dict[str, object]]:
    return [f for s in w.steps() for f in s["fired"] if f["kind"] == kind]


def test_kill_9_mid_escalation_then_restart_fires_the_next_step_within_1s(
    postgres_server: LocalPostgres, files: tuple[Path, Path], workers: list[Worker],
) -> None:
    site, policy = files
    policy.write_text(policy_yaml(repeat_s=1.0, gw_ack_s=9.0, next_ack_s=60.0), encoding="utf-8")
    db = fresh_database(postgres_server)
    a = spawn_worker("a", db, site, policy)
    workers.append(a)
    a.wait_for(lambda ln: ln["event"] == "ready", 60)
    engine, store = open_escalations(db, site, policy, ["A1"])
    # worker a fires the repeat at 1 s: the escalation is under way
    a.wait_for(lambda ln: ln["event"] == "step" and any(f["kind"] == "repeated" for f in ln["fired"]), 10)
    a.kill()  # kill -9
    due = store.next_due_ms()
    assert due is not None
    b = spawn_worker("b", db, site, policy)
    workers.append(b)
    ready = b.wait_for(lambda ln: ln["event"] == "ready", 60)
    line = b.wait_for(lambda ln: ln["event"] == "step" and any(f["kind"] == "deadline_missed" for f in ln["fired"]), 30)
    fired = next(f for f in line["fired"] if f["kind"] == "deadline_missed")
    assert fired["due_ms"] == due
    late_ms = int(fired["at_ms"]) - due
    if ready["ms"] < due:
        print(f"restarted before the deadline; fired {late_ms} ms after it")
        assert 0 <= late_ms < 1000
    else:  # the restart took longer than the time left: it must fire at once, before reporting ready
        print(f"deadline passed while down; fired {int(fired['at_ms']) - ready['ms']} ms before ready")
        assert int(fired["at_ms"]) <= ready["ms"]
    assert not _fired(a, "deadline_missed"), "the killed worker never got to the deadline"
    engine.dispose()


def test_deadline_passed_while_down_fires_at_once_on_restart(
    postgres_server: LocalPostgres, files: tuple[Path, Path], workers: list[Worker],
) -> None:
    site, policy = files
    policy.write_text(policy_yaml(repeat_s=0.5, gw_ack_s=2.0, next_ack_s=60.0), encoding="utf-8")
    db = fresh_database(postgres_server)
    a = spawn_worker("a", db, site, policy)
    workers.append(a)
    a.wait_for(lambda ln: ln["event"] == "ready", 60)
    engine, store = open_escalations(db, site, policy, ["A1"])
    a.wait_for(lambda ln: ln["event"] == "step", 10)
    a.kill()
    due = store.next_due_ms()
    assert due is not None
    while now_ms() < due + 1500:  # stay down until well past the deadline
        time.sleep(0.1)
    b = spawn_worker("b", db, site, policy)
    workers.append(b)
    ready = b.wait_for(lambda ln: ln["event"] == "ready", 60)
    line = b.wait_for(lambda ln: ln["event"] == "step" and any(f["kind"] == "deadline_missed" for f in ln["fired"]), 10)
    fired = next(f for f in line["fired"] if f["kind"] == "deadline_missed")
    assert int(fired["at_ms"]) <= ready["ms"], "a passed deadline fires during start-up, before the worker reports ready"
    assert int(fired["at_ms"]) >= due + 1500
    assert "bl1" in "".join(line["notices"])  # the building leader was paged in that same step
    engine.dispose()


def test_two_workers_on_one_postgres_fire_every_step_exactly_once(
    postgres_server: LocalPostgres, files: tuple[Path, Path], workers: list[Worker],
) -> None:
    site, policy = files
    policy.write_text(policy_yaml(repeat_s=0.5, gw_ack_s=1.0, next_ack_s=1.0), encoding="utf-8")
    db = fresh_database(postgres_server)
    server, url = start_receiver()
    try:
        pair = [spawn_worker(n, db, site, policy, webhook=url) for n in ("w1", "w2")]
        workers.extend(pair)
        for w in pair:
            w.wait_for(lambda ln: ln["event"] == "ready", 60)
        ids = [f"A{i:02d}" for i in range(30)]
        engine, _store = open_escalations(db, site, policy, ids)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                busy = conn.execute(sa.select(sa.func.count()).select_from(escalations).where(escalations.c.due_ms.is_not(None))).scalar()
                pending = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status != "done")).scalar()
            if busy == 0 and pending == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"escalations still running: {busy} due, {pending} notices pending")
        for w in pair:
            w.stop()
        committed = Counter((s["alarm"], step) for w in pair for s in w.steps() for step in s["steps"])
        assert committed, "the workers committed steps"
        assert max(committed.values()) == 1, f"a step was committed twice: {[k for k, n in committed.items() if n > 1][:5]}"
        # every alarm went repeat -> gw miss -> bl miss -> duty miss: steps 2..5, each by exactly one worker
        assert set(committed) == {(a, s) for a in ids for s in (2, 3, 4, 5)}
        split = Counter(w.name for w in pair for s in w.steps() for _ in s["steps"])
        print(f"steps per worker: {dict(split)}")
        with engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.c.key, outbox.c.deliveries)).all()
        assert rows
        assert all(d == 1 for _, d in rows), "every notice was claimed for delivery once"
        assert set(SmsReceiver.keys) == {f"{k}/sms" for k, _ in rows if not k.endswith("/console")}  # the console is in-process
        assert max(SmsReceiver.keys.values()) == 1, "the gateway received each notice once"
        engine.dispose()
    finally:
        server.shutdown()
        server.server_close()
