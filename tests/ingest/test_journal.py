"""The journal on its own: what is committed survives a reopen; done work is pruned, pending work never."""

from __future__ import annotations

from pathlib import Path

from backend.ingest.journal import Journal


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
