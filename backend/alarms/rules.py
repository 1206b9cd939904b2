"""Reading rule files: the packaged defaults merged with a deployment's file (same shape, any subset).

How this works: `deployment_rules(settings)` is what a running system uses: the defaults, the deployment's
file named by `alerting.rules_file` (if any) deep-merged over them, and the clock check's numbers from the
settings. Every problem in the file stops the start as `RulesFileError`, `file:line: what to fix`: the YAML
is composed once more to find the line of the key the parser names (`RuleConfigError.where` is a dotted path
into the merged mapping; the deepest part of it that the file spells is the line shown).
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from alerting.config import DEFAULTS_RESOURCE, RuleConfig, RuleConfigError, merge, parse_rules
from backend.errors import BackendError

if TYPE_CHECKING:
    from backend.settings import Settings

__all__ = ["RulesFileError", "default_rules_data", "deployment_rules", "load_rules"]


class RulesFileError(BackendError, RuleConfigError):
    """A deployment's rules file is wrong: `file:line: what to fix`."""

    def __init__(self, file: Path, line: int, why: str) -> None:
        self.file, self.line, self.why = file, line, why
        self.where = f"{file}:{line}"
        ValueError.__init__(self, f"{file}:{line}: {why}")


def default_rules_data() -> dict[str, Any]:
    data = yaml.safe_load(resources.files("alerting").joinpath(DEFAULTS_RESOURCE).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _line_of(node: yaml.Node | None, path: str) -> int | None:
    """Line (1-based) of the deepest key of dotted `path` that the composed YAML `node` spells (keys may hold dots)."""
    if not isinstance(node, yaml.MappingNode) or not path:
        return None
    for key_node, value_node in sorted(node.value, key=lambda kv: -len(str(kv[0].value))):
        key = str(key_node.value)
        if path == key or path.startswith(key + "."):
            deeper = _line_of(value_node, path[len(key) + 1:])
            return deeper if deeper is not None else key_node.start_mark.line + 1
    return None


def _read(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(path, 0, f"cannot read the rules file: {exc.strerror or exc}; fix alerting.rules_file") from exc
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RulesFileError(path, line, f"not valid YAML: {exc.problem or exc}") from exc
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise RulesFileError(path, 1, "a rules file holds a mapping at the top (events:, thresholds:, overrides: ...)")
    return data, node


def load_rules(path: Path | None = None, **extra: Any) -> RuleConfig:
    """Defaults, then the file at `path`, then `extra` (a mapping of the same shape, e.g. from tests)."""
    data = default_rules_data()
    node: yaml.Node | None = None
    if path is not None:
        over, node = _read(path)
        data = merge(data, over)
    if extra:
        data = merge(data, extra)
    try:
        return parse_rules(data)
    except RuleConfigError as exc:
        if path is None:
            raise
        where = exc.where.removeprefix("rules.")
        line = _line_of(node, where)
        if line is None:  # a problem of the defaults or of `extra`, not of this file
            raise
        raise RulesFileError(path, line, str(exc).removeprefix("rules: ")) from exc


def deployment_rules(settings: Settings) -> RuleConfig:
    """The rules a running system uses: defaults + `alerting.rules_file`, the clock check from the settings."""
    rules = load_rules(settings.alerting.rules_file)
    return dataclasses.replace(rules, clock_skew_max_s=settings.alerting.clock_skew_max_s,
                               clock_skew_confirm_s=settings.alerting.clock_skew_confirm_s)
