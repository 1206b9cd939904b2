from __future__ import annotations

from broker.contract_doc import render
from tests.conftest import REPO


def test_contract_doc_is_generated_from_the_code() -> None:
    on_disk = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")
    assert on_disk == render(), "docs/contract.md is stale: run `.venv/bin/python -m broker.contract_doc > docs/contract.md`"
