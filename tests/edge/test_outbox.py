"""The durable outbox: priority order, the eviction bound, acknowledgement, durability across reopen and kill -9."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from broker.kinds import Priority
from edge.errors import OutboxError
from edge.outbox import Outbox, PendingRow

P = Priority


def row(i: int, priority: Priority = P.TELEMETRY, size: int = 20) -> PendingRow:
    return PendingRow(priority, f"sw/v1/gw/g/dev/d{i}/telemetry", b"x" * size, f"m{i}")


def test_take_hands_out_life_safety_before_older_telemetry(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        ob.accept([row(i) for i in range(5)], 0)
        ob.accept([row(100, P.LIFE_SAFETY), row(101, P.STATUS)], 0)
        taken = ob.take([P.LIFE_SAFETY, P.STATUS, P.TELEMETRY], 3)
        assert [r.msg_id for r in taken] == ["m100", "m101", "m0"]
        # in-flight rows are not handed out twice
        assert [r.msg_id for r in ob.take([P.LIFE_SAFETY, P.STATUS, P.TELEMETRY], 10)] == ["m1", "m2", "m3", "m4"]
        assert ob.take([P.TELEMETRY], 10) == []


def test_a_row_leaves_only_when_acknowledged_and_returns_after_a_lost_connection(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        ob.accept([row(i) for i in range(4)], 0)
        first = ob.take([P.TELEMETRY], 2)
        ob.ack([first[0].seq])
        assert ob.depth() == 3
        ob.release_all()  # connection lost with m1 unacknowledged
        again = ob.take([P.TELEMETRY], 10)
        assert [r.msg_id for r in again] == ["m1", "m2", "m3"]
        assert ob.stats().acked_total == 1


def test_telemetry_is_evicted_oldest_first_and_counted_but_life_safety_never(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_telemetry_rows=10) as ob:
        ob.accept([row(i, P.LIFE_SAFETY) for i in range(1000, 1050)], 0)
        for start in range(0, 30, 5):
            ob.accept([row(i) for i in range(start, start + 5)], 0)
        stats = ob.stats()
        assert stats.depth[P.TELEMETRY] == 10
        assert stats.depth[P.LIFE_SAFETY] == 50
        assert stats.evicted_total == 20
        tel = ob.take([P.TELEMETRY], 100)
        assert [r.msg_id for r in tel] == [f"m{i}" for i in range(20, 30)]  # the newest survive
        assert len(ob.take([P.LIFE_SAFETY], 100)) == 50


def test_the_byte_bound_evicts_telemetry_only(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=20_000) as ob:
        ob.accept([row(i, P.TELEMETRY, size=1000) for i in range(100)], 0)
        assert ob.stats().stored_bytes <= 20_000
        assert ob.stats().evicted_total > 70
        ob.accept([row(i, P.LIFE_SAFETY, size=1000) for i in range(1000, 1030)], 0)
        stats = ob.stats()
        assert stats.depth[P.LIFE_SAFETY] == 30  # never evicted, even past the bound
        assert stats.depth[P.TELEMETRY] == 0
        assert stats.over_bound


def test_in_flight_telemetry_is_not_evicted_under_it(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_telemetry_rows=5) as ob:
        ob.accept([row(i) for i in range(5)], 0)
        flying = ob.take([P.TELEMETRY], 2)
        ob.accept([row(i) for i in range(5, 8)], 0)
        ob.ack([r.seq for r in flying])
        assert ob.stats().acked_total == 2  # the in-flight rows were still there to acknowledge


def test_rows_and_counters_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_telemetry_rows=3) as ob:
        ob.accept([row(i) for i in range(5)] + [row(9, P.LIFE_SAFETY)], 0)
        ob.take([P.LIFE_SAFETY, P.TELEMETRY], 10)  # in flight when we "crash": not acknowledged
        ob.set_counter("patrol_seq", 41)
    with Outbox(path, max_telemetry_rows=3) as ob:
        stats = ob.stats()
        assert stats.depth == {P.LIFE_SAFETY: 1, P.STATUS: 0, P.TELEMETRY: 3}
        assert stats.evicted_total == 2
        assert stats.accepted_total == 6
        assert ob.counter("patrol_seq") == 41
        assert [r.msg_id for r in ob.take([P.LIFE_SAFETY, P.TELEMETRY], 10)] == ["m9", "m2", "m3", "m4"]


def test_accepted_rows_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from broker.kinds import Priority
        from edge.outbox import Outbox, PendingRow
        ob = Outbox({str(path)!r}).open()
        for b in range(20):
            ob.accept([PendingRow(Priority.TELEMETRY, "t", b"p", f"m{{b}}-{{i}}") for i in range(50)], 0)
        print("accepted", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -9, proc.stderr
    assert "accepted" in proc.stdout
    with Outbox(path) as ob:
        assert ob.depth(P.TELEMETRY) == 1000


def test_an_unwritable_place_is_an_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(blocker / "o.db").open()


def test_deferred_checkpoints_keep_commits_from_checkpointing_and_wake_the_owner(tmp_path: Path) -> None:
    """The agent commits on its event loop: after defer_checkpoints no commit copies the WAL into the database file
    (SQLite's automatic checkpoint at 1,000 pages would, with an fsync, while a smoke alarm waits); the owner is
    woken every CHECKPOINT_EVERY rows written and checkpoints on its own connection. Nothing committed is lost."""
    from edge.outbox import CHECKPOINT_EVERY

    woken: list[int] = []
    wal = tmp_path / "o.sqlite3-wal"
    with Outbox(tmp_path / "o.sqlite3", max_telemetry_rows=1_000_000) as ob:
        ob.defer_checkpoints(lambda: woken.append(ob.stats().accepted_total))
        big = [PendingRow(Priority.TELEMETRY, "t", b"x" * 2000, f"m{i}") for i in range(100)]
        for k in range(40):  # ~8 MB of WAL: twice what the automatic checkpoint lets it reach
            ob.accept([PendingRow(r.priority, r.topic, r.payload, f"{r.msg_id}-{k}") for r in big], 0)
        assert wal.stat().st_size > 6 * 1024 * 1024, "a commit checkpointed: the WAL was reset at ~1,000 pages"
        assert woken == [CHECKPOINT_EVERY * n for n in range(1, 4000 // CHECKPOINT_EVERY + 1)]
        assert ob.checkpoint() > 1000
        rows = ob.take((Priority.TELEMETRY,), 5000)
        ob.ack([r.seq for r in rows])
        assert ob.depth() == 0
    with Outbox(tmp_path / "o.sqlite3") as ob:
        assert ob.stats().acked_total == 4000
