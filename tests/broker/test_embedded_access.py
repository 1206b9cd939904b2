"""Who the embedded broker admits, and the backend's client ids (issue 22): pure checks, no broker.

The end-to-end attacks (a client taking ingest's id, an anonymous subscriber, kill -9 of `shouwang run`) are in
tests/faults/test_broker_embedded.py; the generated Mosquitto configuration in test_generated_config.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.ingest.stats import IngestStats
from backend.ingest.worker import IngestWorker
from backend.settings import BrokerSettings
from broker.embedded import ACCESS_FILE, SERVICE_USER, gateway_may, install_suffix, load_access
from broker.mosquitto import login_bound_client_id


def test_the_access_file_is_private_made_once_and_grows_with_the_site_directory(tmp_path: Path) -> None:
    first = load_access(tmp_path, ["gw-a"])
    assert (tmp_path / ACCESS_FILE).stat().st_mode & 0o777 == 0o600
    assert first.service_user == SERVICE_USER
    assert len(first.service_password) >= 24
    again = load_access(tmp_path, ["gw-a", "gw-b"])
    assert again.service_password == first.service_password  # generated at first start, then kept
    assert again.gateways["gw-a"] == first.gateways["gw-a"]
    assert set(again.gateways) == {"gw-a", "gw-b"}
    assert len({again.service_password, *again.gateways.values()}) == 3  # every login its own secret
    assert json.loads((tmp_path / ACCESS_FILE).read_text())["gateways"]["gw-b"] == again.gateways["gw-b"]
    assert (tmp_path / ACCESS_FILE).stat().st_mode & 0o777 == 0o600


def test_a_gateway_login_has_the_production_acl() -> None:
    assert gateway_may("gw-a", "publish", "sw/v1/gw/gw-a/dev/d1/event")
    assert gateway_may("gw-a", "publish", "sw/v1/gw/gw-a/status")
    assert not gateway_may("gw-a", "publish", "sw/v1/gw/gw-b/dev/d1/event")  # another gateway's device
    assert not gateway_may("gw-a", "publish", "sw/v1/gw/gw-a/cmd/patrol")  # commands come from the centre only
    assert not gateway_may("gw-a", "publish", "sw/v1/notify/responder/r1")
    assert gateway_may("gw-a", "subscribe", "sw/v1/gw/gw-a/cmd/#")
    assert gateway_may("gw-a", "receive", "sw/v1/gw/gw-a/cmd/patrol")
    for snoop in ("#", "sw/v1/#", "sw/v1/gw/+/cmd/#", "sw/v1/notify/responder/+", "sw/v1/gw/gw-b/cmd/#", "sw/v1/gw/gw-a/dev/#"):
        assert not gateway_may("gw-a", "subscribe", snoop), snoop


def test_the_embedded_broker_port_is_fixed_by_default() -> None:
    assert BrokerSettings().embedded_port == 1883  # gateways' configurations survive a restart


def test_backend_client_ids_are_stable_per_install_and_unguessable(tmp_path: Path) -> None:
    suffix = install_suffix(tmp_path)
    assert install_suffix(tmp_path) == suffix
    assert install_suffix(tmp_path / "other") != suffix
    bound = login_bound_client_id("shouwang-ingest", "backend-secret")
    assert bound.startswith("shouwang-ingest-")
    assert bound != "shouwang-ingest"
    assert login_bound_client_id("shouwang-ingest", "backend-secret") == bound  # a restart keeps the persistent session
    assert login_bound_client_id("shouwang-ingest", "another-secret") != bound
    assert login_bound_client_id("shouwang-ingest", None) == "shouwang-ingest"


class _Intake:
    running = True
    stats = IngestStats()

    def accept(self, topic: str, payload: bytes, token: int, *, events_copy: bool = False) -> None:
        pass

    def bind(self, acker: Any) -> None:
        pass


def test_ingest_with_a_login_does_not_use_the_fixed_client_id() -> None:
    worker = IngestWorker(_Intake(), "127.0.0.1", 1883, client_id="shouwang-ingest", username="shouwang-backend", password="backend-secret")
    assert worker._client_id == login_bound_client_id("shouwang-ingest", "backend-secret")
