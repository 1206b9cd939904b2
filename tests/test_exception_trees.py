"""One exception tree per package: every exception a package defines derives from that package's root.

Imports every module of backend/, edge/, broker/ and alerting/ (walking the files, so folders without an
__init__.py count too) and checks each exception class it defines. A new unrelated root fails here: derive it
from the package's root (keeping a builtin second base if callers catch it by that) and draw it in the root's
module docstring. Not imported: the Alembic migration folders (`*migrations/`: their scripts run only inside
Alembic and define no exceptions) and `__main__` modules (entry points).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from alerting.errors import AlertingError
from backend.errors import BackendError
from broker.errors import BrokerError
from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parents[1]
TREES: dict[str, type[Exception]] = {"backend": BackendError, "edge": EdgeError, "broker": BrokerError, "alerting": AlertingError}


def _modules(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if any(folder.endswith("migrations") for folder in rel.parts[:-1]) or rel.name == "__main__":
            continue
        out.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return out


def _exceptions(module: str) -> list[type[BaseException]]:
    m = importlib.import_module(module)
    return [c for c in vars(m).values() if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == module]


@pytest.mark.parametrize("package", sorted(TREES))
def test_every_exception_derives_from_the_package_root(package: str) -> None:
    root = TREES[package]
    found = [c for module in _modules(package) for c in _exceptions(module)]
    assert root in found, f"{root.__qualname__} is not defined in {package}/"
    strays = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, root)]
    assert not strays, f"exceptions outside {package}'s tree (derive them from {root.__qualname__}): {strays}"
