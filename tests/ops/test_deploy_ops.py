"""The deployment files use the operations endpoints: compose puts Caddy (TLS, server-sent events unbuffered,
backends chosen by /readyz) in front, health-checks every Shouwang container on /readyz, sets TZ everywhere and
keeps every store on a volume; the systemd units are Type=notify with a watchdog. Validated with the real tools
(`docker-compose config`, `caddy adapt`); no container engine runs on these machines."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "deploy" / "compose"
SYSTEMD = REPO / "deploy" / "systemd"
SHOUWANG_SERVICES = ("backend-1", "backend-2", "ingest-1", "ingest-2", "ingest-3")


def tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is missing: the README's test command installs it (apt-get install {name})")
    return exe


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = tmp_path_factory.mktemp("compose") / ".env"
    env.write_text("POSTGRES_PASSWORD=p\nINFLUX_PASSWORD=i\nINFLUX_TOKEN=t\nBROKER_PASSWORD=b\nSHOUWANG_ADMIN_PASSWORD=a\n", encoding="utf-8")
    out = subprocess.run([tool("docker-compose"), "-f", str(COMPOSE / "compose.yaml"), "--env-file", str(env), "--profile", "monitoring", "config"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    resolved: dict[str, Any] = yaml.safe_load(out)
    return resolved


def test_only_the_reverse_proxy_and_the_broker_face_the_network(stack: dict[str, Any]) -> None:
    services = stack["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"caddy", "mosquitto", "grafana"}
    assert all(str(p).startswith("127.0.0.1:") or (isinstance(p, dict) and p.get("host_ip") == "127.0.0.1") for p in services["grafana"]["ports"])
    assert {int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1]) for p in services["caddy"]["ports"]} == {80, 443}


def test_every_shouwang_container_is_health_checked_on_readyz(stack: dict[str, Any]) -> None:
    for name in SHOUWANG_SERVICES:
        check = " ".join(stack["services"][name]["healthcheck"]["test"])
        port = "8080" if name.startswith("backend") else "9100"
        assert f"http://127.0.0.1:{port}/readyz" in check, name
    assert stack["services"]["ingest-1"]["environment"]["SHOUWANG_OPS__METRICS_PORT"] == "9100"


def test_every_service_has_a_time_zone_and_every_store_a_volume(stack: dict[str, Any]) -> None:
    for name, svc in stack["services"].items():
        assert svc["environment"].get("TZ") == "Asia/Shanghai", name
    mounts = {name: {target for source, target in map(_mount, svc.get("volumes", [])) if not source.startswith("/")}
              for name, svc in stack["services"].items()}
    assert "/var/lib/postgresql/data" in mounts["postgres"]
    assert "/var/lib/influxdb2" in mounts["influxdb"]
    assert "/var/lib/mosquitto" in mounts["mosquitto"]
    assert "/data" in mounts["caddy"], "Caddy's certificates survive a restart"
    for name in SHOUWANG_SERVICES:
        assert "/var/lib/shouwang" in mounts[name], f"{name}: secrets, journals and files on a volume"
    assert "/prometheus" in mounts["prometheus"]
    assert "/var/lib/grafana" in mounts["grafana"]


def _mount(volume: str | dict[str, str]) -> tuple[str, str]:
    """(source, target) of a volume as docker-compose prints it: `source:target[:mode]`, or the long form."""
    if isinstance(volume, dict):
        return volume.get("source", ""), volume["target"]
    source, target = volume.split(":")[:2]
    return source, target


def _handlers(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("handler") == "reverse_proxy":
            found.append(node)
        for v in node.values():
            found += _handlers(v)
    elif isinstance(node, list):
        for v in node:
            found += _handlers(v)
    return found


def test_caddy_serves_https_and_passes_server_sent_events_unbuffered() -> None:
    adapted = subprocess.run([tool("caddy"), "adapt", "--config", str(COMPOSE / "Caddyfile"), "--adapter", "caddyfile"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    config = json.loads(adapted)
    (proxy,) = _handlers(config)
    assert proxy["flush_interval"] == -1
    assert proxy["health_checks"]["active"]["uri"] == "/readyz"
    assert {u["dial"] for u in proxy["upstreams"]} == {"backend-1:8080", "backend-2:8080"}
    server = next(iter(config["apps"]["http"]["servers"].values()))
    assert server["listen"] == [":443"]
    assert config["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]["module"] == "internal"
    text = json.dumps(config)
    assert "/metrics" in text, "the probes and metrics are answered 404 at the door"


@pytest.mark.parametrize("unit", ["shouwang-backend@.service", "shouwang-ingest@.service"])
def test_units_notify_readiness_and_have_a_watchdog(unit: str) -> None:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read(SYSTEMD / unit, encoding="utf-8")
    service = cp["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) >= 10
    if "ingest" in unit:
        assert "--metrics-port 910%i" in service["ExecStart"]
