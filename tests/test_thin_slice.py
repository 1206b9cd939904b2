"""The thin slice through the pipes: device event -> broker -> ingest -> alarm store -> API, in under a second."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from backend.settings import load_settings
from backend.sites import SiteDirectory
from broker.embedded import SERVICE_USER, load_access
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic, telemetry_topic
from shouwang.system import System
from tests.conftest import SAMPLE_SITE


def _smoke(device: str, msg_id: str, drill: bool = False) -> bytes:
    now = int(time.time() * 1000)
    return encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM, drill=drill))


async def _wait_for_alarm(client: httpx.AsyncClient, token: str, device: str, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = await client.get("/api/alarms", headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        for alarm in r.json()["alarms"]:
            if alarm["device_id"] == device:
                return dict(alarm)
        if time.monotonic() > deadline:
            raise AssertionError(f"no alarm for {device} within {timeout_s} s")
        await asyncio.sleep(0.02)


@pytest.fixture
def run_command(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`shouwang run` as a user starts it, on free ports, with its output parsed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shouwang.cli", "run", "--port", "0", "--data-dir", str(tmp_path / "var"), "--no-simulate"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    info: dict[str, str] = {}
    deadline = time.monotonic() + 60
    try:
        while "broker" not in info:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("shouwang run exited early:\n" + "".join(lines))
            lines.append(line)
            if m := re.search(r"console:\s+(http://\S+)/", line):
                info["url"] = m.group(1)
            if m := re.search(r"login:\s+(\S+)\s+password (\S+)", line):
                info["user"], info["password"] = m.group(1), m.group(2)
            if m := re.search(r"broker:\s+mqtt://([\d.]+):(\d+)", line):
                info["broker"] = f"{m.group(1)}:{m.group(2)}"
            assert time.monotonic() < deadline, "shouwang run did not print its banner within 60 s"
        info["broker_password"] = load_access(tmp_path / "var").service_password  # the embedded broker admits logins only
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()


async def test_run_command_shows_a_smoke_alarm_within_one_second(run_command: dict[str, str], sample_site: SiteDirectory) -> None:
    device = next(d for d in sample_site.devices.values() if d.kind == "smoke")
    host, port = run_command["broker"].split(":")
    async with httpx.AsyncClient(base_url=run_command["url"]) as http:
        login = await http.post("/api/login", json={"username": run_command["user"], "password": run_command["password"]})
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        async with aiomqtt.Client(host, int(port), username=SERVICE_USER, password=run_command["broker_password"]) as mqtt:
            published = time.monotonic()
            await mqtt.publish(event_topic(device.gateway, device.id), _smoke(device.id, "thin-1"), qos=1)
            alarm = await _wait_for_alarm(http, token, device.id, timeout_s=1.0)
        assert time.monotonic() - published < 1.0
        assert alarm["alarm_type"] == "smoke"
        assert alarm["severity"] == "critical"
        assert alarm["building_id"] == device.building
        assert alarm["drill"] is False
        page = await http.get("/")
        assert page.status_code == 200
        assert "守望" in page.text


async def test_api_refuses_without_login(run_command: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=run_command["url"]) as http:
        r = await http.get("/api/alarms")
        assert r.status_code == 401
        assert "请先登录" in r.json()["detail"]  # Chinese by default (backend/i18n.py)
        bad = await http.post("/api/login", json={"username": run_command["user"], "password": "wrong"})
        assert bad.status_code == 401


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    settings = load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, sample_site) as s:
        yield s


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("event", b"{not json", "malformed_json"),
        ("event", b'{"msg_id":"x1","source_ts_ms":1,"received_ts_ms":1,"event":"fire_maybe"}', "schema"),
        ("telemetry", b'{"msg_id":"x2","source_ts_ms":1,"received_ts_ms":1,"readings":{"temp":20}}', "schema"),
        ("telemetry", b'{"msg_id":"x3","source_ts_ms":"yesterday","received_ts_ms":1,"readings":{"temperature_c":20}}', "schema"),
        ("telemetry", b"x" * 70_000, "too_large"),
        ("bad-topic", b"{}", "bad_topic"),
    ],
)
async def test_malformed_message_is_rejected_counted_and_the_next_good_one_still_lands(
    system: System, sample_site: SiteDirectory, kind: str, payload: bytes, reason: str
) -> None:
    smoke = next(d for d in sample_site.devices.values() if d.kind == "smoke")
    topic = {"event": event_topic(smoke.gateway, smoke.id), "telemetry": telemetry_topic(smoke.gateway, smoke.id),
             "bad-topic": f"sw/v1/gw/{smoke.gateway}/dev/{smoke.id}/nonsense"}[kind]
    async with httpx.AsyncClient(base_url=system.backend.url) as http, aiomqtt.Client(
        system.broker_host, system.broker_port, username=system.broker_username, password=system.broker_password
    ) as mqtt:
        token = (await http.post("/api/login", json={"username": "admin", "password": "test-pass"})).json()["token"]
        await mqtt.publish(topic, payload, qos=1)
        await mqtt.publish(event_topic(smoke.gateway, smoke.id), _smoke(smoke.id, "good-after-bad"), qos=1)
        await _wait_for_alarm(http, token, smoke.id, timeout_s=5.0)
        stats = (await http.get("/api/ingest/stats", headers={"Authorization": f"Bearer {token}"})).json()
    assert stats["rejected_by_reason"] == {reason: 1}
    assert stats["recent_rejections"][-1]["reason"] == reason
    assert stats["recent_rejections"][-1]["detail"]  # a sentence a person can act on
    assert stats["accepted"] == 1


async def test_duplicate_delivery_counts_once(system: System, sample_site: SiteDirectory) -> None:
    smoke = next(d for d in sample_site.devices.values() if d.kind == "smoke")
    async with httpx.AsyncClient(base_url=system.backend.url) as http, aiomqtt.Client(
        system.broker_host, system.broker_port, username=system.broker_username, password=system.broker_password
    ) as mqtt:
        token = (await http.post("/api/login", json={"username": "admin", "password": "test-pass"})).json()["token"]
        second = _smoke(smoke.id, "dup-2")
        for payload in (_smoke(smoke.id, "dup-1"), _smoke(smoke.id, "dup-1"), second):
            await mqtt.publish(event_topic(smoke.gateway, smoke.id), payload, qos=1)
        deadline = time.monotonic() + 5
        while True:
            alarm = await _wait_for_alarm(http, token, smoke.id, timeout_s=5.0)
            if alarm["occurrences"] == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        stats = (await http.get("/api/ingest/stats", headers={"Authorization": f"Bearer {token}"})).json()
    assert alarm["occurrences"] == 2  # the replayed dup-1 is not a second occurrence
    assert stats["duplicates"] == 1
