"""Reading rule files: the packaged defaults merged with a deployment's file (same shape, any subset)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from alerting.config import DEFAULTS_RESOURCE, RuleConfig, RuleConfigError, merge, parse_rules

__all__ = ["default_rules_data", "load_rules"]


def default_rules_data() -> dict[str, Any]:
    data = yaml.safe_load(resources.files("alerting").joinpath(DEFAULTS_RESOURCE).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_rules(path: Path | None = None, **extra: Any) -> RuleConfig:
    """Defaults, then the file at `path`, then `extra` (a mapping of the same shape, e.g. from tests)."""
    data = default_rules_data()
    if path is not None:
        over = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(over, dict):
            raise RuleConfigError(str(path), "a rules file holds a mapping at the top")
        data = merge(data, over)
    if extra:
        data = merge(data, extra)
    return parse_rules(data)
