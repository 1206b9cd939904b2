"""A store file that SQLite cannot read stops the start with one line naming the file and what to do, not a traceback.
The real command (`shouwang run`) as a process, for each of the centre's SQLite files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _run(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOUWANG_BROKER__EMBEDDED_PORT": "0"}
    return subprocess.run([sys.executable, "-m", "shouwang.cli", "run", "--data-dir", str(data_dir), "--no-simulate", "--port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize(("name", "what"), [
    ("alarms.db", "the alarm database"), ("timeseries.sqlite", "the time-series store"), ("ingest/uplink.journal", "the ingest journal"),
])
def test_a_corrupt_store_file_is_named_at_start(tmp_path: Path, name: str, what: str) -> None:
    data = tmp_path / "var"
    data.mkdir()
    broken = data / name
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"this is not an SQLite database, it is the wrong file copied in\n" * 100)
    done = _run(data)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {what} {broken} cannot be read (file is not a database)"), last
    assert "Traceback" not in done.stderr
    assert broken.read_bytes().startswith(b"this is not"), "the file is left as it was"
