"""A subset of the bad input through the real system over MQTT: the backend subprocess on a real Mosquitto.

One of each kind of bad message (malformed JSON, wrong type, NaN, a 1 MB payload, a replayed message id, a
timestamp beyond int64, a malformed topic under a gateway's prefix) is published between good smoke events;
the backend keeps running, counts each under its reason (GET /api/ingest/stats), the replay as a duplicate,
and raises an alarm for every good smoke event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker.process import MosquittoProcess
from broker.topics import event_topic, telemetry_topic
from tests.faults.helpers import GATEWAY, BackendProcess, smoke_id, until, write_fixture_files

pytestmark = pytest.mark.mosquitto


def _event(mid: str, ts: int | None = None, **extra: Any) -> bytes:
    now = time.time_ns() // 1_000_000 if ts is None else ts
    return json.dumps({"msg_id": mid, "source_ts_ms": now, "received_ts_ms": now, "event": "smoke_alarm", **extra}).encode()


async def test_bad_messages_over_mqtt_are_counted_by_reason_and_good_ones_raise_alarms(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    central = mosquitto_factory("central")
    site, policy = write_fixture_files(tmp_path)
    backend = BackendProcess(tmp_path / "var", central.url, site, policy).start()
    smoke = str(event_topic(GATEWAY, smoke_id(0)))
    bad: list[tuple[str, bytes, str]] = [
        (smoke, b'{"msg_id": "m1", "source_ts_ms": ', "malformed_json"),
        (smoke, _event("m2").replace(b'"smoke_alarm"', b"17"), "schema"),
        (str(telemetry_topic(GATEWAY, "meter-1")), b'{"msg_id":"m3","source_ts_ms":1,"received_ts_ms":1,"readings":{"temperature_c":NaN}}', "malformed_json"),
        (str(telemetry_topic(GATEWAY, "meter-1")), b'{"msg_id":"m4","source_ts_ms":1,"received_ts_ms":1,"readings":{"temperature_c":1e999}}', "schema"),
        (smoke, _event("m5", detail="x" * 1_048_576), "too_large"),
        (smoke, _event("m6", ts=2**63), "schema"),
        (smoke.replace("/event", "/evnt"), _event("m7"), "bad_topic"),
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzz-gateway")
    client.connect(central.host, central.port)
    client.loop_start()
    try:
        infos = []
        goods = [_event(f"good-{i}") for i in range(4)]
        for i in range(4):
            infos.append(client.publish(str(event_topic(GATEWAY, smoke_id(i + 1))), goods[i], qos=1))
            for topic, payload, _ in bad:
                infos.append(client.publish(topic, payload, qos=1))
        # A replay is the same bytes again (at-least-once redelivery); the same msg_id with other content would be
        # kept and flagged as a reused id, not dropped as a duplicate (issue 22).
        infos.append(client.publish(str(event_topic(GATEWAY, smoke_id(1))), goods[0], qos=1))
        for info in infos:
            info.wait_for_publish(30)

        async def stats() -> dict[str, Any] | None:
            async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
                token = (await http.post("/api/login", json={"username": "admin", "password": "fault-pass"})).json()["token"]
                s: dict[str, Any] = (await http.get("/api/ingest/stats", headers={"Authorization": f"Bearer {token}"})).json()
            return s if s["rejected_total"] >= 4 * len(bad) and s["duplicates"] >= 1 else None

        s = await until(stats, 30, "every bad message to be counted")
        expected: dict[str, int] = {}
        for _, _, reason in bad:
            expected[reason] = expected.get(reason, 0) + 4
        assert s["rejected_by_reason"] == expected
        assert s["duplicates"] == 1
        assert all(r["reason"] and r["detail"] for r in s["recent_rejections"])
        rows = await until(lambda: _smokes(backend), 30, "an alarm for each good smoke event")
        assert rows == {smoke_id(i + 1) for i in range(4)}
    finally:
        client.loop_stop()
        client.disconnect()
        backend.stop()


async def _smokes(backend: BackendProcess) -> set[str] | None:
    rows = {r["device_id"] for r in await backend.alarms(open="true") if r["alarm_type"] == "smoke"}
    return rows if len(rows) >= 4 else None
