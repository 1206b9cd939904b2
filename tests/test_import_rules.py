"""The house's arrows point one way (docs/architecture.md): checked on the code's own imports.

Every `import` and `from ... import` in a package, at any depth (inside functions too), is read with `ast`;
a package may import only from the packages its rule allows. A new arrow that runs back up the house fails here
with the file and line that drew it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

OURS = ("alerting", "broker", "edge", "backend", "simulators", "shouwang")
# package -> the packages of ours it must never import
FORBIDDEN = {
    "alerting": ("backend", "edge", "shouwang", "simulators"),
    "broker": ("alerting", "backend", "edge", "shouwang", "simulators"),
    "edge": ("alerting", "backend", "shouwang", "simulators"),
    "backend": ("shouwang", "simulators", "edge"),
    "simulators": ("shouwang",),  # the drill's embedded system is handed in (simulators/drill/target.py: SystemFactory)
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up_the_house(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {module}")
    assert not bad, f"{package}/ must not import {', '.join(FORBIDDEN[package])}:\n" + "\n".join(bad)


# Rooms inside the backend: folder -> the modules (and everything under them) it must never import
ROOMS_FORBIDDEN = {
    "backend/store": ("backend.ingest", "backend.api", "backend.escalation"),  # the stores sit below who writes and reads them
    "backend/feed": ("backend.api",),  # the feed is its own room; the API serves it, never the other way
    "backend/alarms": ("backend.api", "backend.feed", "backend.escalation"),  # the one writer of alarm state knows no reader
}


@pytest.mark.parametrize("room", sorted(ROOMS_FORBIDDEN))
def test_no_room_imports_the_rooms_above_it(room: str) -> None:
    forbidden = ROOMS_FORBIDDEN[room]
    bad = []
    for path in sorted((REPO / room).rglob("*.py")):
        for line, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {module}")
    assert not bad, f"{room}/ must not import {', '.join(forbidden)}:\n" + "\n".join(bad)


def test_the_gateway_runs_without_the_centre() -> None:
    """`python -m edge` (what a gateway runs) loads neither the backend, uvicorn, FastAPI nor the simulators."""
    centre = "{'backend','shouwang','simulators','alerting','uvicorn','fastapi','sqlalchemy','matplotlib','psycopg'}"
    probe = f"import sys, edge.__main__, edge.cli, edge.agent; print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & {centre})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"importing the edge agent loaded: {out.stdout.strip()}"


def test_the_site_directory_loads_no_other_room_of_the_backend() -> None:
    """Simulators, tools and the gateway's config command read the site directory without starting the backend's rooms."""
    probe = "import sys, backend.sites; print(','.join(sorted(m for m in sys.modules if m.startswith('backend.') and not m.startswith('backend.sites'))))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert set(filter(None, out.stdout.strip().split(","))) <= {"backend.errors"}, f"importing backend.sites loaded: {out.stdout.strip()}"
    heavy = "import sys, backend.sites; print(','.join(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy','fastapi','uvicorn','psycopg'})))"
    out = subprocess.run([sys.executable, "-c", heavy], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"importing backend.sites loaded: {out.stdout.strip()}"


def test_the_rules_cover_every_package_of_ours() -> None:
    assert set(FORBIDDEN) | {"shouwang", "simulators"} == set(OURS)
    assert all((REPO / p).is_dir() for p in OURS)
