from __future__ import annotations

from pydantic import BaseModel

from backend.settings import Settings
from backend.settings_doc import render
from tests.conftest import REPO


def test_every_setting_is_documented_and_the_doc_is_current() -> None:
    on_disk = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert on_disk == render(), "docs/configuration.md is stale: run `.venv/bin/python -m backend.settings_doc > docs/configuration.md`"
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for key, f in model.model_fields.items():
            assert f.description, f"[{section}] {key} has no description"
            assert f"`SHOUWANG_{section.upper()}__{key.upper()}`" in on_disk
