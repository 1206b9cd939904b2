"""The generated production Mosquitto configuration, enforced by a real Mosquitto.

A gateway publishes only under its own prefix and reads only its own commands; anonymous clients and
wrong passwords are refused. Every check pairs a forbidden action with an allowed one from the same client
(MQTT delivers one client's messages in order), so "nothing arrived" cannot pass by being too quick.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from broker.embedded import free_port
from broker.mosquitto import MosquittoLayout, TlsFiles, render_acl, write_layout
from broker.process import MosquittoProcess
from broker.topics import PREFIX, command_filter, command_topic, event_topic, gateway_status_topic, telemetry_topic, uplink_filters

pytestmark = pytest.mark.mosquitto

CREDS = {"shouwang-backend": "backend-secret", "gw-a": "secret-a", "gw-b": "secret-b"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[MosquittoProcess]:
    layout = MosquittoLayout(tmp_path / "conf", port=free_port(), run_as="root" if os.geteuid() == 0 else None)
    write_layout(layout, CREDS, ["gw-a", "gw-b"], "shouwang-backend")
    proc = MosquittoProcess(tmp_path / "run", port=layout.port, config=layout.conf_path.read_text())
    proc.start()
    yield proc
    proc.stop()


def client(m: MosquittoProcess, user: str | None, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(m.host, m.port, username=user, password=password if password is not None else CREDS.get(user or ""))


async def next_topics(c: aiomqtt.Client, count: int) -> list[str]:
    out: list[str] = []
    async with asyncio.timeout(10):
        async for msg in c.messages:
            out.append(str(msg.topic))
            if len(out) == count:
                return out
    return out


async def test_a_gateway_cannot_publish_as_another(secured: MosquittoProcess) -> None:
    async with client(secured, "shouwang-backend") as backend, client(secured, "gw-a") as gw_a:
        for f in uplink_filters().values():
            await backend.subscribe(str(f), qos=1)
        await gw_a.publish(event_topic("gw-b", "dev-of-b"), b"forged", qos=1)  # forbidden
        await gw_a.publish(gateway_status_topic("gw-b"), b"forged", qos=1)  # forbidden
        await gw_a.publish(event_topic("gw-a", "dev-of-a"), b"genuine", qos=1)  # allowed, sent last
        received = await next_topics(backend, 1)
    assert received == [event_topic("gw-a", "dev-of-a")]


async def test_a_gateway_cannot_read_another_gateways_commands(secured: MosquittoProcess) -> None:
    async with client(secured, "shouwang-backend") as backend, client(secured, "gw-a") as gw_a:
        await gw_a.subscribe(str(command_filter("+")), qos=1)  # asks for everyone's commands
        await backend.publish(command_topic("gw-b", "patrol"), b"for b", qos=1)
        await backend.publish(command_topic("gw-a", "patrol"), b"for a", qos=1)
        received = await next_topics(gw_a, 1)
    assert received == [command_topic("gw-a", "patrol")]


async def test_a_gateway_cannot_send_commands_or_read_uplink(secured: MosquittoProcess) -> None:
    async with client(secured, "gw-b") as gw_b, client(secured, "gw-a") as gw_a:
        await gw_b.subscribe(f"{PREFIX}/#", qos=1)
        await gw_a.publish(command_topic("gw-b", "sounder"), b"fake command", qos=1)  # commands only come from the centre
        await gw_a.publish(telemetry_topic("gw-a", "d1"), b"gw-b must not read this", qos=1)
        await gw_b.publish(command_topic("gw-a", "x"), b"nor this", qos=1)
        # Only gw-b's own command topic is readable; the centre sends one to prove the subscription is live.
        async with client(secured, "shouwang-backend") as backend:
            await backend.publish(command_topic("gw-b", "patrol"), b"real", qos=1)
        received = await next_topics(gw_b, 1)
    assert received == [command_topic("gw-b", "patrol")]


@pytest.mark.parametrize(("user", "password"), [(None, None), ("gw-a", "wrong"), ("nobody", "x")])
async def test_anonymous_and_wrong_passwords_are_refused(secured: MosquittoProcess, user: str | None, password: str | None) -> None:
    with pytest.raises(aiomqtt.MqttCodeError) as info:
        async with client(secured, user, password):
            pass
    assert "not authori" in str(info.value).lower() or info.value.rc in (4, 5, 134, 135)


def test_acl_text_is_per_gateway_and_never_lets_a_gateway_write_commands() -> None:
    acl = render_acl(["gw-a"])
    block = acl.split("user gw-a", 1)[1]
    assert f"topic write {PREFIX}/gw-a/dev/#" in block
    assert f"topic read {PREFIX}/gw-a/cmd/#" in block
    assert "cmd" not in "\n".join(line for line in block.splitlines() if line.startswith("topic write"))


def _make_tls_files(d: Path) -> tuple[Path, Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = d / "ca.key", d / "ca.pem", d / "server.key", d / "server.csr", d / "server.pem"

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=shouwang-test-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", "2",
        "-copy_extensions", "copy")
    return ca, cert, key


async def test_the_tls_listener_serves_and_the_plain_one_can_be_turned_off(tmp_path: Path) -> None:
    ca, cert, key = _make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    layout = MosquittoLayout(tmp_path / "conf", port=free_port(), tls=TlsFiles(ca, cert, key, tls_port), allow_plain_listener=False,
                             run_as="root" if os.geteuid() == 0 else None)
    write_layout(layout, CREDS, ["gw-a"], "shouwang-backend")
    proc = MosquittoProcess(tmp_path / "run", port=tls_port, config=layout.conf_path.read_text())
    proc.start()
    try:
        context = ssl.create_default_context(cafile=str(ca))
        async with aiomqtt.Client("127.0.0.1", tls_port, username="gw-a", password=CREDS["gw-a"], tls_context=context) as c:
            await c.publish(gateway_status_topic("gw-a"), b"online", qos=1)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", layout.port), timeout=1).close()
    finally:
        proc.stop()
