"""One declaration per device: `shouwang edge config` writes a gateway's edge configuration from the site directory;
the file passes `edge check`, and a real agent running it forwards a device's LAN messages under the directory's id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
import yaml

from broker.process import MosquittoProcess
from edge import EdgeAgent
from edge.config import load_config
from shouwang.cli import main
from tests.edge.conftest import collecting
from tests.waiting import until

SITES = """\
street: "测试街道"
communities:
  - {id: c9, name: 测试社区}
grids:
  - {id: c9-g1, name: 第1网格, community: c9}
buildings:
  - {id: c9-b1, name: 1号楼, grid: c9-g1, floors: 6, units: 1, x: 10, y: 10}
gateways:
  - {id: c9-gw-b1, building: c9-b1, community: c9}
  - {id: c9-gw-b2, building: c9-b1, community: c9}
devices:
  - {id: c9-b1-kitchen-smoke, kind: smoke, gateway: c9-gw-b1, building: c9-b1, unit: 1, dialect: zigbee2mqtt, lan_name: 厨房烟感}
  - {id: c9-b1-panel, kind: electrical, gateway: c9-gw-b1, building: c9-b1, dialect: esphome, lan_name: panel-1,
     entities: {sensor/leak: {metric: residual_current_ma}, sensor/cable: {metric: cable_temp_c}}}
  - {id: c9-b1-box, kind: electrical, gateway: c9-gw-b1, building: c9-b1, dialect: esphome, lan_name: box-1,
     entities: {sensor/cable: {metric: cable_temp_c}}}
  - {id: c9-b1-cam, kind: camera, gateway: c9-gw-b2, building: c9-b1, dialect: frigate}
"""


def _write(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    sites = tmp_path / "sites.yaml"
    sites.write_text(SITES, encoding="utf-8")
    out = tmp_path / "edge" / "c9-gw-b1.yaml"
    assert main(["edge", "config", "--sites", str(sites), "--gateway", "c9-gw-b1", "--config", str(out), *extra]) == 0
    return sites, out


def test_the_written_configuration_holds_exactly_the_gateways_devices_and_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _write(tmp_path, "--uplink", "mqtt://10.1.2.3:8883")
    config = load_config(out)
    assert config.uplink.host == "10.1.2.3"
    assert config.uplink.port == 8883
    assert config.uplink.username == "c9-gw-b1"
    by_dialect = {a.dialect: {k: d.id for k, d in a.devices.items()} for a in config.adapters}
    assert by_dialect == {"esphome": {"box-1": "c9-b1-box", "panel-1": "c9-b1-panel"}, "zigbee2mqtt": {"厨房烟感": "c9-b1-kitchen-smoke"}}
    capsys.readouterr()
    assert main(["edge", "check", "--config", str(out)]) == 0
    err = capsys.readouterr().err
    assert "c9-b1-box" in err, "a device mapping only metrics no rule watches is warned about"
    assert "cable_temp_c" in err
    assert "c9-b1-panel" not in err, "residual_current_ma is watched for electrical devices"


def test_unknown_gateway_is_refused_with_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text(SITES, encoding="utf-8")
    assert main(["edge", "config", "--sites", str(sites), "--gateway", "c9-gw-bl"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" in err
    assert "c9-gw-b1" in err


@pytest.mark.mosquitto
async def test_a_real_agent_on_the_written_file_forwards_under_the_directory_id(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    lan = mosquitto_factory("lan")
    central = mosquitto_factory("central")
    _, out = _write(tmp_path, "--uplink", central.url, "--lan", lan.url)
    data = yaml.safe_load(out.read_text(encoding="utf-8"))
    data["uplink"].pop("username")  # the test broker is anonymous
    data["outbox"]["path"] = str(tmp_path / "outbox.sqlite3")
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    async with collecting(central.host, central.port, "c9-gw-b1") as centre, EdgeAgent(load_config(out)) as agent:
        await until(agent.lan_ready.is_set, 20, "the LAN subscription")
        async with aiomqtt.Client(lan.host, lan.port, identifier="z2m") as z2m:
            await z2m.publish("zigbee2mqtt/厨房烟感", b'{"smoke": false}', qos=1)
            await z2m.publish("zigbee2mqtt/厨房烟感", b'{"smoke": true}', qos=1)
        await until(lambda: any(m.payload.get("event") == "smoke_alarm" for m in centre.of("/event")), 20, "the smoke alarm at the centre")
        event = next(m for m in centre.of("/event") if m.payload.get("event") == "smoke_alarm")
        assert event.topic.endswith("/dev/c9-b1-kitchen-smoke/event")
