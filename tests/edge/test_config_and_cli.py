"""The configuration file (YAML and TOML, validated with clear errors) and the `shouwang edge` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import load_config, parse_config
from edge.errors import ConfigError
from edge.status import write_status
from shouwang.cli import main
from tests.edge.sample_config import sample_config

TOML = """
gateway = "gw-b07"

[uplink]
host = "centre.example"
port = 8883
inflight_window = 16

[patrol]
period_s = 300

[[adapters]]
dialect = "tasmota"
prefix = "tele"

[adapters.devices.pow1]
id = "tas-pow1"
kind = "electrical"
interval_s = 300
"""


def test_yaml_and_toml_files_load(tmp_path: Path) -> None:
    y = tmp_path / "edge.yaml"
    y.write_text(yaml.safe_dump(sample_config()))
    assert len(load_config(y).adapters) == 7
    t = tmp_path / "edge.toml"
    t.write_text(TOML)
    cfg = load_config(t)
    assert (cfg.gateway, cfg.uplink.port, cfg.uplink.inflight_window, cfg.patrol.period_s) == ("gw-b07", 8883, 16, 300.0)
    assert cfg.adapters[0].devices["pow1"].interval_s == 300


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateway": "bad/id"}, "gateway id"),
        ({"patrol": {"period_s": 7201}}, "2 h"),
        ({"uplink": {"port": "1883"}}, "$.uplink.port"),
        ({"uplnk": {}}, "uplnk"),  # a typo is an error, not a silently ignored key
        ({"adapters": [{"dialect": "zigbee2mqtt", "devices": {"a": {"id": "x", "kind": "smoke"}, "b": {"id": "x", "kind": "smoke"}}}]}, "already used"),
        ({"adapters": [{"dialect": "zigbee2mqtt"}, {"dialect": "zigbee2mqtt", "name": "second"}]}, "already owned"),
        ({"adapters": [{"dialect": "esphome", "devices": {"n": {"id": "n", "kind": "other", "entities": {"sensor/x": {"metric": "volts"}}}}}]}, "unit"),
        ({"adapters": [{"dialect": "lorawan"}]}, "dialect"),
        ({"adapters": [{"dialect": "tasmota", "devices": {"p": {"id": "p", "kind": "toaster"}}}]}, "kind"),
    ],
)
def test_invalid_configuration_says_where_and_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway": "gw-1", **change})
    assert message in str(info.value)


def test_unreadable_or_wrong_format_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "edge.yaml"
    bad.write_text("gateway: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    ini = tmp_path / "edge.ini"
    ini.write_text("x")
    with pytest.raises(ConfigError, match=r"\.toml"):
        load_config(ini)


def test_cli_check_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = sample_config()
    cfg["outbox"] = {"path": str(tmp_path / "outbox.sqlite3")}
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["edge", "check", "--config", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["edge", "status", "--config", str(path)]) == 1  # no agent has written a status yet
    assert "is the agent running" in capsys.readouterr().err
    status = {
        "gateway": "gw-samples",
        "lan": {"connected": True, "host": "h", "port": 1},
        "uplink": {"connected": False, "host": "c", "port": 2, "forwarded_total": 5},
        "outbox": {"depth": {"telemetry": 3}, "stored_bytes": 100, "evicted_total": 2, "over_bound": False},
        "intake": {"lan_messages": 9, "mapped": 7, "rejected_total": 2},
        "liveness": {"online": 3},
        "patrol": {"seq": 4, "skipped_uplink_down": 1},
        "rejections": [{"adapter": "tasmota:tele", "device": "-", "code": "unknown_device", "count": 2, "last_detail": "no device 'x'"}],
    }
    write_status(tmp_path / "status.json", status)
    assert main(["edge", "status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unknown_device" in out
    assert "DOWN" in out
    assert main(["edge", "status", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intake"]["rejected_total"] == 2


def test_cli_refuses_a_bad_file_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("gateway: gw-1\npatrol: {period_s: 0}\n")
    assert main(["edge", "--config", str(path)]) == 2
    assert "period_s" in capsys.readouterr().err

