"""The deploy/ folder: the compose file is valid for a real compose implementation, the systemd units start
commands that exist, the building-bridge template forwards exactly the contract's topics, and
`shouwang config check` names what is wrong with a deployment's configuration."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from backend.settings import Settings, load_settings
from broker.process import MosquittoProcess
from broker.topics import command_filter, gateway_publish_filters
from shouwang.cli import build_parser
from shouwang.commands.config import check_settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (Debian package `docker-compose`; the test command installs it)")
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=p\nINFLUX_PASSWORD=i\nINFLUX_TOKEN=t\nBROKER_PASSWORD=b\nSHOUWANG_ADMIN_PASSWORD=a\n", encoding="utf-8")
    compose = DEPLOY / "compose" / "compose.yaml"
    ok = subprocess.run([exe, "-f", str(compose), "--env-file", str(env_file), "config", "-q"], check=False, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    services = subprocess.run([exe, "-f", str(compose), "--env-file", str(env_file), "config", "--services"],
                              check=False, capture_output=True, text=True, timeout=60).stdout.split()
    assert {"mosquitto", "postgres", "influxdb", "backend-1", "backend-2", "ingest-1", "ingest-2", "ingest-3"} <= set(services)
    # Secrets are never in the file: without them compose refuses the configuration.
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    bare = subprocess.run([exe, "-f", str(compose), "--env-file", str(empty), "config", "-q"],
                          check=False, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert bare.returncode != 0
    assert "POSTGRES_PASSWORD" in bare.stderr or "INFLUX" in bare.stderr or "BROKER_PASSWORD" in bare.stderr


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("shouwang-*.service")))
def test_systemd_units_start_real_commands(unit: str) -> None:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read(DEPLOY / "systemd" / unit, encoding="utf-8")
    assert cp["Service"]["Restart"] == "always"
    argv = shlex.split(cp["Service"]["ExecStart"].replace("%i", "1"))
    if argv[0].endswith("/mosquitto"):
        assert argv[1:] == ["-c", "/etc/mosquitto/shouwang/mosquitto.conf"]
        return
    assert argv[0].endswith("/shouwang")
    args = build_parser().parse_args(argv[1:])  # SystemExit (a failure) if the unit names a command or flag that does not exist
    assert args.command in ("backend", "ingest", "edge")


def test_building_bridge_forwards_exactly_the_gateway_topics() -> None:
    text = (DEPLOY / "mosquitto" / "building-bridge.conf").read_text(encoding="utf-8").replace("GATEWAY_ID", "c01-gw-b01")
    topics = [line.split()[1:] for line in text.splitlines() if line.startswith("topic ")]
    out = {t for t, direction, qos in topics if direction == "out" and qos == "1"}
    down = {t for t, direction, qos in topics if direction == "in" and qos == "1"}
    assert out == {str(f) for f in gateway_publish_filters("c01-gw-b01")}
    assert down == {str(command_filter("c01-gw-b01"))}
    assert "bridge_protocol_version mqttv50" in text
    assert "cleansession false" in text


def test_production_broker_config_has_tls_acl_and_persistence() -> None:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    for line in ("allow_anonymous false", "persistence true", "tls_version tlsv1.2", "listener 8883 0.0.0.0"):
        assert line in conf
    assert "acl_file" in conf
    assert "password_file" in conf


def test_no_secret_values_in_deploy_files() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if "PASSWORD" in line.upper() and "=" in line and not line.lstrip().startswith("#"):
                    value = line.split("=", 1)[1].strip()
                    assert value == "" or "${" in value or value == "CHANGE_ME", f"{path.name}: {line}"


def _codes(s: Settings, ingest_workers: int = 1, backends: int = 1) -> list[str]:
    return [f"{f.level}: {f.text}" for f in check_settings(s, ingest_workers=ingest_workers, backends=backends)]


def test_config_check_names_what_is_wrong_with_a_scaled_out_shape() -> None:
    embedded = load_settings(None, ingest={"share_group": "g"})
    assert any("embedded broker speaks MQTT 3.1.1" in t for t in _codes(embedded))
    sqlite = load_settings(None, broker={"url": "mqtt://10.0.0.1:1883"}, ingest={"share_group": "g"})
    assert any(t.startswith("error: storage.alarm_db_url is unset") for t in _codes(sqlite, backends=2))
    assert not [t for t in _codes(sqlite) if t.startswith("error")], "one process on SQLite is fine"
    no_group = load_settings(None, broker={"url": "mqtt://10.0.0.1:1883"}, storage={"alarm_db_url": "postgresql+psycopg://db/sw"})
    assert any("without ingest.share_group" in t for t in _codes(no_group, ingest_workers=3))
    good = load_settings(None, broker={"url": "mqtt://10.0.0.1:1883", "username": "shouwang-backend"}, storage={"alarm_db_url": "postgresql+psycopg://db/sw"},
                    ingest={"share_group": "g"},
                    timeseries={"backend": "influx", "influx_url": "http://influx:8086", "influx_token": "t"}, api={"host": "0.0.0.0"},
                    escalation={"link_base_url": "https://sw.example.org"})
    assert _codes(good, ingest_workers=3, backends=2) == []


def test_config_check_cli_exit_codes_and_secrets_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shouwang.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[api]\nadmin_password = "hunter2"\n[simulate]\nsite_file = "{REPO / "sites/sample-community.yaml"}"\n', encoding="utf-8")
    assert main(["--config", str(cfg), "config", "check"]) == 0
    assert "admin_password is in the settings file" in capsys.readouterr().out
    assert main(["--config", str(cfg), "config", "check", "--backends", "2"]) == 1
    assert "alarm_db_url" in capsys.readouterr().err
    load_settings(cfg)  # the file itself is valid


def test_config_check_connect_reports_an_unreachable_postgres(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from broker.embedded import free_port
    from shouwang.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[storage]\nalarm_db_url = "postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"\n'
                   f'[simulate]\nsite_file = "{REPO / "sites/sample-community.yaml"}"\n', encoding="utf-8")
    assert main(["--config", str(cfg), "config", "check", "--connect"]) == 1
    assert "cannot reach PostgreSQL" in capsys.readouterr().err


def test_config_check_warns_of_an_anonymous_broker_and_a_public_plain_http_api() -> None:
    """Issue 22: `config check` called an anonymous broker and an API on 0.0.0.0 "valid" without a word."""
    anonymous = load_settings(None, broker={"url": "mqtt://10.0.0.1:1883"})
    assert any(t.startswith("warning: broker.url is mqtt://10.0.0.1:1883 with no broker.username") for t in _codes(anonymous))
    with_login = load_settings(None, broker={"url": "mqtt://10.0.0.1:1883", "username": "shouwang-backend"})
    assert not [t for t in _codes(with_login) if "broker.username" in t]
    assert not [t for t in _codes(load_settings(None)) if "anonymous" in t]  # the embedded broker admits logins only
    for host in ("0.0.0.0", "192.168.1.20"):
        public = load_settings(None, api={"host": host})
        assert any(t.startswith(f"warning: api.host is {host}: the API and its logins listen on") for t in _codes(public)), host
    behind_tls = load_settings(None, api={"host": "0.0.0.0"}, escalation={"link_base_url": "https://sw.example.org"})
    assert not [t for t in _codes(behind_tls) if "api.host" in t]
    assert not [t for t in _codes(load_settings(None)) if "api.host" in t]  # loopback, the default


def test_config_check_connect_says_the_broker_admits_anonymous_clients(mosquitto: MosquittoProcess, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from shouwang.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[broker]\nurl = "{mosquitto.url}"\nusername = "shouwang-backend"\n'
                   f'[simulate]\nsite_file = "{REPO / "sites/sample-community.yaml"}"\n', encoding="utf-8")
    assert main(["--config", str(cfg), "config", "check", "--connect"]) == 0  # a warning, not an error
    assert f"the broker at {mosquitto.url} admits anonymous clients" in capsys.readouterr().out
