"""The private Mosquitto of `shouwang run --ingest-workers N --backends M` admits only logins (issue 22): the
machine's own processes share the service login of broker-access.json, each gateway of the site directory has
its own under the production ACL, anonymous clients are refused. Before, it was started with allow_anonymous."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from backend.settings import load_settings
from backend.sites import SiteDirectory
from broker.embedded import SERVICE_USER, free_port
from broker.process import MosquittoProcess, open_config
from broker.topics import event_topic
from shouwang.cluster import LocalCluster

pytestmark = pytest.mark.mosquitto


async def test_the_private_broker_of_a_local_cluster_admits_logins_only(tmp_path: Path, sample_site: SiteDirectory) -> None:
    settings = load_settings(None, storage={"data_dir": tmp_path / "var"})
    cluster = LocalCluster(settings, sample_site, ingest_workers=1, backends=1)  # not entered: only its broker files
    folder = tmp_path / "var" / "mosquitto"
    access = cluster._write_private_broker_files(folder)
    assert (folder / "passwords").stat().st_mode & 0o777 == 0o600
    port = free_port()
    config = open_config(port, persistence_dir=folder / "data", password_file=folder / "passwords", acl_file=folder / "acl")
    with MosquittoProcess(tmp_path / "run", port=port, config=config) as broker:
        with pytest.raises(aiomqtt.MqttCodeError):
            async with aiomqtt.Client(broker.host, port, identifier="anonymous"):
                pass
        a, b = sorted(sample_site.gateways)[:2]
        device_of_a = next(d.id for d in sample_site.devices.values() if d.gateway == a)
        async with (
            aiomqtt.Client(broker.host, port, identifier="ingest", username=SERVICE_USER, password=access.service_password) as ingest,
            aiomqtt.Client(broker.host, port, identifier=f"{b}-edge-uplink", username=b, password=access.gateways[b]) as gw_b,
            aiomqtt.Client(broker.host, port, identifier="sim", username=SERVICE_USER, password=access.service_password) as sim,
        ):
            await ingest.subscribe("sw/v1/gw/#", qos=1)
            await gw_b.publish(str(event_topic(a, device_of_a)), b"forged by b", qos=1)  # refused by the ACL
            await sim.publish(str(event_topic(a, device_of_a)), b"simulated gateway a", qos=1)  # the simulator runs every gateway
            async with asyncio.timeout(10):
                async for m in ingest.messages:
                    assert m.payload == b"simulated gateway a"
                    break
