"""Render docs/configuration.md from the settings classes: `python -m backend.settings_doc`.

A test regenerates it and compares, so every configuration key is documented and none is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from backend.settings import Settings

__all__ = ["render"]


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, default=str, ensure_ascii=False)}`"


def render() -> str:
    out = [
        "# Configuration",
        "",
        "Generated from `backend/settings.py` by `python -m backend.settings_doc > docs/configuration.md`.",
        "",
        "Settings come from, later winning: the defaults below, a TOML file (`shouwang --config FILE ...`), and",
        "environment variables `SHOUWANG_<SECTION>__<KEY>` (for example `SHOUWANG_BROKER__URL=mqtt://10.0.0.5:1883`).",
        "Secrets (passwords, tokens) belong in the environment or in a file outside the repository.",
        "`shouwang config check` validates a configuration and says what is wrong.",
        "",
        "Example file:",
        "",
        "```toml",
        "[broker]",
        'url = "mqtt://127.0.0.1:1883"',
        "",
        "[api]",
        "port = 8080",
        "```",
    ]
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        out += ["", f"## [{section}]", "", (model.__doc__ or "").strip(), "", "| key | environment | default | meaning |", "| --- | --- | --- | --- |"]
        for key, f in model.model_fields.items():
            env = f"SHOUWANG_{section.upper()}__{key.upper()}"
            out.append(f"| `{key}` | `{env}` | {_default(f.default)} | {f.description or ''} |")
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
