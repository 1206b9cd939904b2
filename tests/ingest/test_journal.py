"""The journal on its own: what is committed survives a reopen; done work is pruned, pending work never."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.ingest.journal import Journal, JournalError


def rows(first: int, last: int) -> list[tuple[int, str, str, bytes, int]]:
    return [(s, f"gw1/m{s}", "sw/v1/gw/gw1/dev/d1/telemetry", b"{}", 1000 + s) for s in range(first, last + 1)]


def test_committed_entries_and_the_watermark_survive_a_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "t.journal")
    j.append(rows(1, 10))
    j.mark_done_through(4)
    j.close()
    j = Journal(tmp_path / "t.journal")
    assert (j.last_seq, j.done_through) == (10, 4)
    assert [e.seq for e in j.pending()] == [5, 6, 7, 8, 9, 10]
    assert [e.seq for e in j.pending(after_seq=7, limit=2)] == [8, 9]


def test_rows_marked_done_one_by_one_are_not_pending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "u.journal")
    j.append(rows(1, 5))
    j.mark_done([2, 4])
    assert [e.seq for e in j.pending()] == [1, 3, 5]


def test_prune_keeps_the_dedupe_window_and_everything_pending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "t.journal", keep=3)
    j.append(rows(1, 10))
    j.mark_done_through(6)
    j.prune()
    assert [e.seq for e in j.pending()] == [7, 8, 9, 10]  # never dropped though older than the window
    assert j.keys() == [f"gw1/m{s}" for s in range(7, 11)]
    assert j.recent_keys() == ["gw1/m8", "gw1/m9", "gw1/m10"]


def test_commits_on_the_loop_never_checkpoint_and_the_journals_thread_does(tmp_path: Path) -> None:
    """The uplink journal commits on the event loop thread: SQLite's automatic checkpoint (copy the WAL into the
    database file and fsync it, inside the commit that crosses 1,000 pages) must not run there. With
    auto_checkpoint off the WAL grows past those 1,000 pages until `checkpoint()` copies it, on its own
    connection; what was committed is readable all along, and after a reopen."""
    path = tmp_path / "u.journal"
    wal = tmp_path / "u.journal-wal"
    j = Journal(path, auto_checkpoint=False)
    payload = b"x" * 2000
    seq = 0
    for _ in range(40):  # ~8 MB of WAL: twice what the automatic checkpoint lets the WAL reach
        j.append([(seq + k, f"gw1/m{seq + k}", "sw/v1/gw/gw1/dev/d1/event", payload, 1) for k in range(1, 101)])
        seq += 100
    assert wal.stat().st_size > 6 * 1024 * 1024, "a commit checkpointed: the WAL was reset at ~1,000 pages"
    copied = j.checkpoint()
    assert copied > 1000
    assert j.count() == seq
    j.close()
    assert Journal(path).count() == seq


def test_a_journal_with_automatic_checkpoints_keeps_its_wal_near_1000_pages(tmp_path: Path) -> None:
    """The telemetry journal commits in its own thread and keeps SQLite's automatic checkpoint."""
    j = Journal(tmp_path / "t.journal")
    seq = 0
    for _ in range(40):
        j.append([(seq + k, f"gw1/m{seq + k}", "sw/v1/gw/gw1/dev/d1/telemetry", b"x" * 2000, 1) for k in range(1, 101)])
        seq += 100
    assert (tmp_path / "t.journal-wal").stat().st_size < 5 * 1024 * 1024


def test_a_small_commit_is_one_statement_and_all_or_nothing(tmp_path: Path) -> None:
    """The uplink lane commits a smoke alarm on the event loop thread; each call into SQLite releases the GIL, which
    the store writer's thread may then hold for a switch interval (5 ms): a small commit is one INSERT (issue 19).
    It stays all or nothing: a batch with one bad row leaves none of its rows."""
    j = Journal(tmp_path / "s.journal")
    statements: list[str] = []
    j._db.set_trace_callback(statements.append)
    j.append(rows(1, 1))
    j.append(rows(2, 5))
    j._db.set_trace_callback(None)
    assert len(statements) == 2, f"a commit of a few rows took {statements}"
    with pytest.raises(JournalError):
        j.append([*rows(6, 7), rows(3, 3)[0]])  # seq 3 is taken
    j.append(rows(6, 40))  # a telemetry group: one transaction of many rows
    j.close()
    j = Journal(tmp_path / "s.journal")
    assert [e.seq for e in j.pending()] == list(range(1, 41))
