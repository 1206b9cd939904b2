"""`shouwang broker config` as an installer runs it: the generated files start a real Mosquitto as written, and the
generated ACL carries every notice the backend sends (issue 22, finding 6).

Mosquitto started as root with `user mosquitto` drops to that user before it opens the password file, the ACL
and its persistence folder; the command must leave them readable by that user (or say which chown to run). The
folder is made under /tmp rather than pytest's tmp_path, whose parents are private to root: an installer's
/etc/mosquitto/... is traversable, and the test must not fail for a reason a deployment does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from backend.sites import SiteDirectory
from broker.embedded import free_port
from broker.mosquitto import NOTIFY_USER
from broker.notices import Notice, encode_notice
from broker.process import MosquittoProcess
from broker.topics import BUILDING_OUTPUTS, NOTIFY_PREFIX, building_notice_topic, command_topic, responder_notice_topic
from shouwang.commands import broker as broker_command
from tests.conftest import SAMPLE_SITE

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def out_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="shouwang-mosquitto-", dir="/tmp"))
    d.chmod(0o755)
    yield d / "conf"
    shutil.rmtree(d, ignore_errors=True)


def _generate(out: Path, port: int) -> str:
    """`shouwang broker config --sites ... -o OUT`, through the command's own parser and handler."""
    parser = argparse.ArgumentParser()
    broker_command.register(parser.add_subparsers())
    args = parser.parse_args(["broker", "config", "--sites", str(SAMPLE_SITE), "-o", str(out), "--port", str(port), "--bind", "127.0.0.1"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert args.handler(args) == 0
    return printed.getvalue()


def _notice(kind: str) -> bytes:
    return encode_notice(Notice(key=f"k-{kind}", alarm_id="a-1", title="烟感报警", text="3号楼502 烟感报警", severity="critical",
                                reason="page", issued_ts_ms=1, building="b1"))


async def test_the_generated_configuration_starts_as_written_and_carries_every_notice(
    out_dir: Path, tmp_path: Path, sample_site: SiteDirectory,
) -> None:
    port = free_port()
    printed = _generate(out_dir, port)
    conf = (out_dir / "mosquitto.conf").read_text()
    assert "user mosquitto" in conf  # the production shape: started as root, drops to mosquitto
    if os.geteuid() == 0:
        assert "Mosquitto can start as written" in printed, printed
        for name in ("passwords", "acl", "data"):
            assert (out_dir / name).owner() == "mosquitto", name
        assert oct((out_dir / "passwords").stat().st_mode & 0o777) == "0o600"
    else:
        assert "chown mosquitto:" in printed, printed  # cannot chown: says exactly what to run
    creds = json.loads((out_dir / "credentials.json").read_text())
    assert oct((out_dir / "credentials.json").stat().st_mode & 0o777) == "0o600"

    broker = MosquittoProcess(tmp_path / "run", port=port, config=conf)
    broker.start()  # before the fix: "Unable to open pwfile" and exit
    try:
        device = next(d for d in sample_site.devices.values() if d.kind == "smoke")
        gw, building = device.gateway, device.building
        responder = next(iter(sample_site.responders))
        sends = [(str(responder_notice_topic(responder)), _notice("app"))]
        sends += [(str(building_notice_topic(building, out)), _notice(out)) for out in BUILDING_OUTPUTS]
        sends.append((str(command_topic(gw, "patrol")), b'{"patrol": 1}'))
        expected_bridge = {t for t, _ in sends if t.startswith(NOTIFY_PREFIX)}
        expected_gateway = {t for t, _ in sends if not t.startswith(f"{NOTIFY_PREFIX}/responder/")}

        async def collect(c: aiomqtt.Client, want: set[str], got: set[str]) -> None:
            async for m in c.messages:
                got.add(str(m.topic))
                if got >= want:
                    return

        got_bridge: set[str] = set()
        got_gateway: set[str] = set()
        async with (
            aiomqtt.Client(broker.host, port, identifier="bridge", username=NOTIFY_USER, password=creds[NOTIFY_USER]) as bridge,
            aiomqtt.Client(broker.host, port, identifier=f"{gw}-edge-uplink", username=gw, password=creds[gw]) as gateway,
            aiomqtt.Client(broker.host, port, identifier="backend", username="shouwang-backend", password=creds["shouwang-backend"]) as backend,
        ):
            await bridge.subscribe(f"{NOTIFY_PREFIX}/#", qos=1)
            await gateway.subscribe(f"{NOTIFY_PREFIX}/#", qos=1)  # the ACL narrows it to its own buildings
            await gateway.subscribe(f"sw/v1/gw/{gw}/cmd/#", qos=1)
            for topic, payload in sends:
                await backend.publish(topic, payload, qos=1)
            async with asyncio.timeout(10):
                await asyncio.gather(collect(bridge, expected_bridge, got_bridge), collect(gateway, expected_gateway, got_gateway))
        assert got_bridge == expected_bridge
        assert got_gateway == expected_gateway  # its building's sounder and display, its patrol; never a responder's notice
    finally:
        broker.stop()


def test_without_root_the_command_prints_the_exact_chown(out_dir: Path) -> None:
    from broker.mosquitto import MosquittoLayout, ownership_commands

    layout = MosquittoLayout(out_dir, run_as="mosquitto")
    cmds = ownership_commands(layout)
    assert cmds[0] == f"chown mosquitto: {out_dir} {out_dir / 'data'} {out_dir / 'acl'} {out_dir / 'passwords'}"
    assert f"chmod 0600 {out_dir / 'acl'} {out_dir / 'passwords'}" in cmds
