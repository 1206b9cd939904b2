"""`shouwang simulate` against a real Mosquitto, and the benchmark's quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from broker.process import MosquittoProcess
from shouwang.cli import main
from tests.conftest import REPO, SAMPLE_SITE


@pytest.mark.mosquitto
def test_simulate_publishes_a_site_for_a_simulated_duration(mosquitto: MosquittoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--sites", str(SAMPLE_SITE), "--broker", mosquitto.url, "--speed", "600", "--duration", "120", "--dialects", "mixed"])
    out = capsys.readouterr().out
    assert code == 0, out
    sent = int(out.rsplit("sent ", 1)[1].split(" ", 1)[0].replace(",", ""))
    assert sent > 2_000  # two simulated minutes of a community: ~17 msg/s plus 80 gateway statuses
    assert "electrical" in out
    assert "camera" in out


def test_simulate_refuses_a_bad_broker_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--sites", str(SAMPLE_SITE), "--broker", "http://x"]) == 2
    assert "mqtt://host:port" in capsys.readouterr().err


@pytest.mark.mosquitto
@pytest.mark.slow
def test_benchmark_quick_runs_and_ends_with_json(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "simulate.py"), "--quick"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "simulate"
    assert result["figures"]["generate_encode_msg_per_s"] > 0
    assert set(result["targets"]) == set(result["met"])
