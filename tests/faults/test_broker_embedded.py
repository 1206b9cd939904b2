"""The embedded broker under attack and under kill -9 (issue 22, findings 4, 5 and 7; issue 21's stable port).

`shouwang run --no-simulate` is a real subprocess with its embedded broker on an explicit free port, as an
installer's `shouwang run` is on 1883:

- a client reusing ingest's client id every 0.3 s (anonymously, with a gateway's login, with the old fixed id
  and with the real one read from the data folder, clean session or not) does not stop ingest: every smoke
  alarm a gateway sends meanwhile is raised; an anonymous subscriber to `#` is refused;
- kill -9 of `shouwang run` takes the broker child with it (no broker left to acknowledge what nobody reads:
  the gateway keeps its messages), and `shouwang run` starts again cleanly on the same port;
- a broker left over from an earlier run, or another program on the port, is explained in one line naming
  the pid, with no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker.embedded import ACCESS_FILE, SERVICE_USER, free_port
from broker.kinds import EventKind
from broker.mosquitto import login_bound_client_id
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from tests.conftest import REPO
from tests.faults.helpers import GATEWAY, smoke_id, write_fixture_files
from tests.waiting import until

ADMIN_PASSWORD = "fault-pass"


@dataclass
class RunProcess:
    """`shouwang run --no-simulate` with its embedded broker on `broker_port`; the banner's console URL when started."""

    data_dir: Path
    site: Path
    broker_port: int
    env: dict[str, str] = field(default_factory=dict)  # e.g. a configured broker: SHOUWANG_BROKER__URL, __USERNAME, __PASSWORD
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    url: str = ""

    def start(self, timeout_s: float = 60.0) -> RunProcess:
        env = {**os.environ, "SHOUWANG_BROKER__EMBEDDED_PORT": str(self.broker_port), "SHOUWANG_API__ADMIN_PASSWORD": ADMIN_PASSWORD}
        env.pop("SHOUWANG_BROKER__URL", None)
        env.update(self.env)
        self.output = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shouwang.cli", "run", "--no-simulate", "--port", "0", "--data-dir", str(self.data_dir), "--sites", str(self.site)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        banner = threading.Event()

        def read(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line.rstrip())
                if "console:" in line:
                    self.url = line.split("console:", 1)[1].strip().rstrip("/")
                if "Ctrl-C stops it" in line:
                    banner.set()

        self._reader = threading.Thread(target=read, args=(self.proc,), name="run-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not banner.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(5)
                return self
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and bool(self.url)

    def exit_output(self, timeout_s: float = 30.0) -> tuple[int, str]:
        assert self.proc is not None
        code = self.proc.wait(timeout_s)
        self._close()
        return code, "\n".join(self.output)

    def _close(self) -> None:
        assert self.proc is not None
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self._close()

    def access(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.data_dir / ACCESS_FILE).read_text())
        return data

    async def alarmed_devices(self) -> set[str]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            token = (await http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})).json()["token"]
            rows = (await http.get("/api/alarms", params={"limit": 500}, headers={"Authorization": f"Bearer {token}"})).json()["alarms"]
            return {r["device_id"] for r in rows}


def _smoke(msg_id: str) -> bytes:
    now = time.time_ns() // 1_000_000
    return encode(DeviceEvent(msg_id=msg_id, source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is dead for our purpose
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


@pytest.fixture
def run_system(tmp_path: Path) -> Iterator[RunProcess]:
    site, _ = write_fixture_files(tmp_path, smokes=40)
    run = RunProcess(tmp_path / "var", site, free_port()).start()
    assert run.running, "\n".join(run.output[-40:])
    yield run
    run.stop()


async def _attack(host: str, port: int, ids: list[str], logins: list[tuple[str | None, str | None]], stop: asyncio.Event) -> int:
    """Connect with every id x login x clean-session combination, one every 0.3 s, until stopped; count the ones let in."""
    admitted = 0
    combos = [(cid, user, pw, clean) for cid in ids for user, pw in logins for clean in (True, False)]
    i = 0
    while not stop.is_set():
        cid, user, pw, clean = combos[i % len(combos)]
        i += 1
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port, identifier=cid, username=user, password=pw, clean_session=clean, timeout=2):
                admitted += 1
                await asyncio.sleep(0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.3)
    return admitted


async def test_a_client_taking_the_ingest_client_id_does_not_make_the_centre_deaf(run_system: RunProcess) -> None:
    run = run_system
    port = run.broker_port
    access_file = run.data_dir / ACCESS_FILE
    gateways: dict[str, str] = run.access()["gateways"] if access_file.exists() else {}  # type: ignore[assignment]
    gw_password = gateways.get(GATEWAY)
    ids = ["shouwang-ingest"]  # the fixed id of old
    suffix_file = run.data_dir / "mqtt-client-suffix"
    if suffix_file.exists():  # the real one, as if an attacker had learned it
        ids.append(login_bound_client_id(f"shouwang-{suffix_file.read_text().strip()}-ingest", str(run.access()["service"]["password"])))  # type: ignore[index]
    logins: list[tuple[str | None, str | None]] = [(None, None), (GATEWAY, gw_password), (SERVICE_USER, "guessed")]
    stop = asyncio.Event()
    devices = [smoke_id(i) for i in range(30)]
    async with asyncio.TaskGroup() as tg:
        attacker = tg.create_task(_attack("127.0.0.1", port, ids, logins, stop), name="takeover-attacker")
        await asyncio.sleep(1.0)  # the attack is under way before the first alarm
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"{GATEWAY}-edge-uplink", username=GATEWAY, password=gw_password) as gw:
            for i, device in enumerate(devices):
                await gw.publish(str(event_topic(GATEWAY, device)), _smoke(f"takeover-{i}"), qos=1)
                await asyncio.sleep(0.1)
        try:
            await until(lambda: _all_in(run, devices), 30, "every smoke alarm sent during the takeover attempts to be raised")
        finally:
            stop.set()
    assert attacker.result() == 0, "a client with someone else's id, or no login, was let in"
    # and ingest is alive afterwards: one more alarm is raised
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"{GATEWAY}-edge-uplink", username=GATEWAY, password=gw_password) as gw:
        await gw.publish(str(event_topic(GATEWAY, smoke_id(35))), _smoke("after-attack"), qos=1)
    await until(lambda: _all_in(run, [smoke_id(35)]), 15, "the alarm after the attack to be raised")


async def _all_in(run: RunProcess, devices: list[str]) -> bool:
    return set(devices) <= await run.alarmed_devices()


async def test_an_anonymous_subscriber_to_everything_is_refused_and_a_gateway_reads_only_its_own(run_system: RunProcess) -> None:
    port = run_system.broker_port
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with aiomqtt.Client("127.0.0.1", port, identifier="eavesdropper") as anon:
            await anon.subscribe("#", qos=1)
    assert refused.value.rc == 135  # CONNACK "not authorised" (MQTT 3.1.1 code 5, reported by paho as 135)
    gw_password = run_system.access()["gateways"][GATEWAY]  # type: ignore[index]
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"{GATEWAY}-spy", username=GATEWAY, password=gw_password) as spy:
        granted = await spy.subscribe("#", qos=1)
        mine = await spy.subscribe(f"sw/v1/gw/{GATEWAY}/cmd/#", qos=1)
    assert [_code(g) for g in granted] == [128]  # refused: a gateway does not read everyone's traffic
    assert [_code(g) for g in mine] == [1]
    with pytest.raises(aiomqtt.MqttCodeError):  # a gateway's login with another gateway's (or the centre's) client id
        async with aiomqtt.Client("127.0.0.1", port, identifier="other-gw-edge-uplink", username=GATEWAY, password=gw_password):
            pass
    mode = (run_system.data_dir / ACCESS_FILE).stat().st_mode & 0o777
    assert mode == 0o600


def _code(granted: object) -> int:
    value = getattr(granted, "value", granted)
    assert isinstance(value, int)
    return value


def _embedded_broker_child(parent: int) -> int:
    """The pid of `parent`'s embedded broker child, from /proc."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
                if ppid == parent and b"broker.embedded" in (proc / "cmdline").read_bytes():
                    return int(proc.name)
    raise AssertionError(f"pid {parent} has no embedded broker child")


def _connect_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


async def test_kill9_of_shouwang_run_takes_the_broker_with_it_and_the_restart_is_clean(tmp_path: Path) -> None:
    site, _ = write_fixture_files(tmp_path, smokes=40)
    port = free_port()
    first = RunProcess(tmp_path / "var", site, port).start()
    gateway: mqtt.Client | None = None
    try:
        assert first.running, "\n".join(first.output[-40:])
        assert first.proc is not None
        broker_pid = _embedded_broker_child(first.proc.pid)
        gateway = _gateway_with_outbox(port, first)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        await until(lambda: not _pid_alive(broker_pid), 10, f"the embedded broker (pid {broker_pid}) to die with its parent")
        assert _connect_refused(port), "a broker still accepts devices' messages that nobody reads"
        # a smoke alarm while the centre is down: refused by nobody, kept by the gateway
        gateway.publish(str(event_topic(GATEWAY, smoke_id(2))), _smoke("during-outage"), qos=1)
    finally:
        first.stop()
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.kill(broker_pid, signal.SIGKILL)  # a broker the fix failed to take down must not outlive the test

    second = RunProcess(tmp_path / "var", site, port).start()
    try:
        assert second.running, "the restart failed:\n" + "\n".join(second.output[-40:])
        assert f"broker:   mqtt://127.0.0.1:{port} " in "\n".join(second.output)  # the same port, printed: gateways' configs still fit
        gw_password = second.access()["gateways"][GATEWAY]  # type: ignore[index]
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"{GATEWAY}-edge-now", username=GATEWAY, password=gw_password) as gw:
            await gw.publish(str(event_topic(GATEWAY, smoke_id(1))), _smoke("after-restart"), qos=1)
        await until(lambda: _all_in(second, [smoke_id(1), smoke_id(2)]), 30,
                    "the alarm after the restart, and the one the gateway kept through the outage")
    finally:
        second.stop()
        if gateway is not None:
            gateway.loop_stop()
            gateway.disconnect()


def _gateway_with_outbox(port: int, run: RunProcess) -> mqtt.Client:
    """A gateway as the edge agent behaves: QoS 1, unlimited offline queue, reconnecting by itself."""
    gw_password = str(run.access()["gateways"][GATEWAY])  # type: ignore[index]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{GATEWAY}-edge-uplink", clean_session=False)
    client.username_pw_set(GATEWAY, gw_password)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(1, 2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


@contextlib.contextmanager
def _leftover_broker(data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """An embedded broker started without a parent to die with, as one surviving an earlier run would be."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker.embedded", "--port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"READY"), "the leftover broker did not start"
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_leftover_broker_or_a_taken_port_is_explained_in_one_line(tmp_path: Path) -> None:
    site, _ = write_fixture_files(tmp_path, smokes=4)
    port = free_port()
    with _leftover_broker(tmp_path / "var", port) as leftover:
        run = RunProcess(tmp_path / "var", site, port).start()
        code, out = run.exit_output()
    assert code == 1, out
    assert "Traceback" not in out, out
    assert f"(pid {leftover.pid})" in out, out
    assert f"kill {leftover.pid}" in out, out

    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        run = RunProcess(tmp_path / "var", site, port).start()
        code, out = run.exit_output()
    assert code == 1, out
    assert "Traceback" not in out, out
    assert f"port {port} on 127.0.0.1 is taken by pid {os.getpid()}" in out, out
    assert "SHOUWANG_BROKER__EMBEDDED_PORT" in out

