"""The measured figures the docs rely on are in the repository (docs/measured.md), each with how to re-measure it,
and nothing points at a file outside it any more."""

from __future__ import annotations

from tests.conftest import REPO

SHARED = REPO.parent / "shared" / "MEASURED.md"


def _rows(text: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return {r[0]: r for r in rows[1:]} if rows else {}


def test_no_reference_to_a_measured_file_outside_the_repository() -> None:
    stale = [str(p.relative_to(REPO)) for pattern in ("*.md", "*.py") for p in REPO.rglob(pattern)
             if ".venv" not in p.parts and p.name != "measured.md" and p.name != "test_measured.py"
             and "MEASURED.md" in p.read_text(encoding="utf-8", errors="replace")]
    assert stale == []


def test_every_figure_has_a_way_to_re_measure_it_and_matches_the_shared_notes() -> None:
    ours = _rows((REPO / "docs" / "measured.md").read_text(encoding="utf-8"))
    assert len(ours) >= 13
    assert all(len(r) == 4 and r[3] for r in ours.values()), "every row says how to re-measure it"
    if SHARED.exists():  # the session notes beside the checkout; a fresh clone does without them
        for what, row in _rows(SHARED.read_text(encoding="utf-8")).items():
            assert what in ours, f"docs/measured.md lacks: {what}"
            assert ours[what][1] == row[1], f"docs/measured.md differs from the shared notes on: {what}"
