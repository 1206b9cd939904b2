"""The private aiomqtt/paho API that broker/connection.py relies on is still there, in the versions it was read against.

broker/connection.py is the one module that touches aiomqtt's and paho's private attributes (tests/test_import_rules.py
keeps it so). An upgrade of either package can move them without a word; these tests make it loud instead: a version
other than the one the module names in WRITTEN_AGAINST, or an attribute of PRIVATE_USE gone or reshaped, fails here
naming the attribute and the module to re-read.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect

import aiomqtt
import pytest

from broker import connection
from broker.connection import PRIVATE_USE, WRITTEN_AGAINST

MODULE = "broker/connection.py"


@pytest.mark.parametrize("distribution", sorted(WRITTEN_AGAINST))
def test_the_installed_version_is_the_one_the_module_was_written_against(distribution: str) -> None:
    installed = importlib.metadata.version(distribution)
    attrs = ", ".join(f"{m}.{c}.{a}" for m, c, a in PRIVATE_USE)
    assert installed == WRITTEN_AGAINST[distribution], (
        f"{distribution} is {installed}, but {MODULE} was written against {WRITTEN_AGAINST[distribution]}: re-read its private "
        f"use ({attrs}) in the new version, then update WRITTEN_AGAINST"
    )


@pytest.mark.parametrize(("module", "cls", "attr"), PRIVATE_USE, ids=[f"{c}.{a}" for _, c, a in PRIVATE_USE])
async def test_each_private_attribute_the_module_touches_exists(module: str, cls: str, attr: str) -> None:
    """On a real (unconnected) client: instance attributes such as aiomqtt's `_client` exist only on instances."""
    client = aiomqtt.Client("127.0.0.1", 1)
    instances = {"aiomqtt": client, "paho.mqtt.client": getattr(client, "_client")}  # noqa: B009 (the name under test)
    obj = instances[module]
    assert type(obj) is getattr(importlib.import_module(module), cls)
    assert hasattr(obj, attr), f"{module}.{cls}.{attr} is gone: {MODULE} relies on it; re-read its use there"


async def test_the_private_calls_keep_the_shape_the_module_calls_them_with() -> None:
    client = aiomqtt.Client("127.0.0.1", 1)
    paho = getattr(client, "_client")  # noqa: B009
    expected = {"_packet_queue": ["command", "packet", "mid", "qos"], "_sock_recv": ["bufsize"], "_packet_read": [], "_loop_rc_handle": ["rc"]}
    for name, params in expected.items():
        got = list(inspect.signature(getattr(paho, name)).parameters)[: len(params) or None]
        assert got[: len(params)] == params, f"paho's {name}{inspect.signature(getattr(paho, name))} changed: {MODULE} calls it as {name}({', '.join(params)})"
    disconnected = getattr(client, "_disconnected")  # noqa: B009
    assert isinstance(disconnected, __import__("asyncio").Future), f"aiomqtt's Client._disconnected is no longer a Future: {MODULE} waits on it"


def test_the_module_names_every_private_attribute_it_touches() -> None:
    """PRIVATE_USE is the list the other tests check: every `._name` of aiomqtt/paho used in the module is on it."""
    source = inspect.getsource(connection)
    for attr in ("_packet_queue", "_sock_recv", "_packet_read", "_loop_rc_handle", "_disconnected", "_client"):
        if f".{attr}" in source:
            assert attr in {a for _, _, a in PRIVATE_USE}, f"{MODULE} touches {attr} but PRIVATE_USE does not name it"
