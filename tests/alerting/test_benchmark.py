"""benchmarks/rules.py runs (--quick) and ends with one JSON line holding figures and targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_rules_benchmark_quick_runs() -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rules.py"), "--quick"], capture_output=True, text=True,
                         timeout=120, check=True, cwd=REPO)
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["benchmark"] == "rules"
    assert last["targets"] == {"full_path_per_s": 50000.0}
    assert last["figures"]["full_path_per_s"] > 0
    assert last["figures"]["actions"] > 0, "the faulty devices of the synthetic street must raise alarms"
