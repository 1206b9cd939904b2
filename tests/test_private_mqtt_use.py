"""Only broker/connection.py touches paho's or aiomqtt's private attributes, or imports paho at all.

Read with `ast` over every module of ours (benchmarks/ may keep a bare paho subscriber: it is the measured ceiling,
and tests/ may look at what they test). An offence is: an import of `paho` (aiomqtt's public API is enough outside
broker/connection.py), an import of an underscore name from aiomqtt, an attribute such as `client._client` or
`paho._out_packet` read on anything but `self`/`cls` (our own classes may name their fields as they like), or the same
name handed to getattr/setattr/hasattr. broker/connection.py lists its private use in PRIVATE_USE, and
tests/broker/test_connection_versions.py checks each entry against the installed versions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from broker.connection import PRIVATE_USE
from tests.conftest import REPO

PACKAGES = ("alerting", "backend", "broker", "edge", "shouwang", "simulators")
THE_ONE = Path("broker/connection.py")
# What broker/connection.py touches, and paho/aiomqtt internals one would reach for next (the socket, the packet queues).
PRIVATE = {a for _, _, a in PRIVATE_USE} | {"_out_packet", "_in_packet", "_sock", "_sockpairR", "_sockpairW", "_pending_publishes",
                                             "_pending_subscribes", "_pending_calls", "_queue", "_connected", "_misc_loop", "_outgoing_calls_sem"}


def offences(source: str, filename: str = "<module>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "paho"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top == "paho" or (top == "aiomqtt" and any(a.name.startswith("_") for a in node.names)):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            if not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}):
                found.append(f"{node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"getattr", "setattr", "hasattr"}
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in PRIVATE):
            found.append(f"{node.lineno}: {node.func.id}(…, {node.args[1].value!r})")
    return found


def test_only_broker_connection_touches_paho_or_aiomqtt_private_api() -> None:
    bad = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            if rel == THE_ONE:
                continue
            bad += [f"{rel}:{o}" for o in offences(path.read_text(encoding="utf-8"), str(rel))]
    assert not bad, f"private paho/aiomqtt use outside {THE_ONE} (move it there, with a comment and a PRIVATE_USE entry):\n" + "\n".join(bad)


@pytest.mark.parametrize(("source", "caught"), [
    ("paho = client._client\npaho.manual_ack_set(True)", True),
    ("paho = getattr(client, '_client', None)", True),
    ("import paho.mqtt.client as mqtt", True),
    ("from paho.mqtt.properties import Properties", True),
    ("sock = client._client.socket()", True),
    ("x._out_packet.clear()", True),
    ("self._client = InfluxDBClient(url)", False),
    ("import aiomqtt\nawait client.publish('t', b'', qos=1)", False),
])
def test_the_reader_knows_an_offence_when_it_sees_one(source: str, caught: bool) -> None:
    assert bool(offences(source)) is caught
