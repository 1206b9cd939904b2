"""Locked installs: requirements/*.lock pin every package with its hashes, agree with pyproject.toml's pins and with
each other, the test environment is exactly the test lock, and a gateway's `pip install .[edge]` in a clean venv
brings edge/ without the centre's packages (FastAPI, uvicorn, matplotlib, psycopg)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from tests.conftest import REPO

LOCKS = REPO / "requirements"
CENTRE_ONLY = {"fastapi", "uvicorn", "matplotlib", "psycopg", "psycopg-binary", "sqlalchemy", "pydantic", "numpy", "alembic", "amqtt"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock(name: str) -> dict[str, tuple[str, str | None]]:
    """package -> (version, marker) of a lock file; every package must carry hashes."""
    text = (LOCKS / f"{name}.lock").read_text(encoding="utf-8")
    out: dict[str, tuple[str, str | None]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        spec, _, marker = head.partition(";")
        pkg, _, version = spec.strip().partition("==")
        assert version, f"{name}.lock: {head!r} is not pinned"
        assert "--hash=sha256:" in block, f"{name}.lock: {pkg} has no hash"
        out[_norm(pkg)] = (version, marker.strip() or None)
    return out


def pins() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"base": [Requirement(r) for r in project["dependencies"]]}
    for extra, reqs in project["optional-dependencies"].items():
        groups[extra] = [Requirement(r) for r in reqs if not r.startswith("shouwang")]
    return groups


def test_the_locks_hold_pyprojects_pins_and_agree_with_each_other() -> None:
    groups = pins()
    test, server, edge = lock("test"), lock("server"), lock("edge")
    for name, locked, wanted in (("edge", edge, ("base",)), ("server", server, ("base", "server")), ("test", test, ("base", "server", "test"))):
        for group in wanted:
            for req in groups[group]:
                assert _norm(req.name) in locked, f"{name}.lock lacks {req.name} (run bash scripts/lock.sh)"
                assert req.specifier.contains(locked[_norm(req.name)][0]), f"{name}.lock: {req.name} {locked[_norm(req.name)][0]} is not {req.specifier}"
    for pkg, (version, _) in server.items():
        assert test.get(pkg, (None,))[0] == version, f"server.lock and test.lock disagree on {pkg}"
    for pkg, (version, _) in edge.items():
        assert server[pkg][0] == version, f"edge.lock and server.lock disagree on {pkg}"
    assert not CENTRE_ONLY & set(edge), "a gateway installs none of the centre's packages"
    assert not {"pytest", "mypy", "playwright", "atheris", "ruff", "schemathesis", "hypothesis"} & set(server), "start.sh installs no test tools"


def test_the_test_environment_is_the_test_lock() -> None:
    wrong = {}
    for pkg, (version, marker) in lock("test").items():
        if marker is not None and not Marker(marker).evaluate():
            continue
        try:
            installed = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[pkg] = (installed, version)
    assert not wrong, f"installed vs locked (run bash scripts/bootstrap.sh): {wrong}"


@pytest.mark.slow
def test_a_gateway_install_brings_edge_without_the_centre(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / item, src / item)
    for package in ("alerting", "backend", "broker", "edge", "shouwang", "simulators"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "gateway-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", str(LOCKS / "edge.lock")], check=True, timeout=600)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{src}[edge]"], check=True, timeout=600)  # resolves: must need nothing more
    installed = {_norm(d.metadata["Name"]) for d in metadata.distributions(path=[str(p) for p in venv.glob("lib/python*/site-packages")])}
    assert not CENTRE_ONLY & installed, f"the gateway install pulled in {CENTRE_ONLY & installed}"
    probe = ("import sys, edge, edge.agent, edge.cli, edge.status; "
             "print(sorted(m for m in ('fastapi', 'uvicorn', 'matplotlib', 'psycopg', 'sqlalchemy', 'pydantic') if m in sys.modules))")
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout.strip()
    assert out == "[]"
    help_text = subprocess.run([str(venv / "bin" / "shouwang"), "edge", "--help"], check=True, capture_output=True, text=True, timeout=60).stdout
    assert "--config" in help_text
