"""The embedded MQTT broker (amqtt), so the system runs with nothing installed, admitting only whom it should.

How this works: amqtt is pure Python and slow next to Mosquitto (~2.6 k QoS 1 msg/s, see docs/measured.md), which
is plenty for one community; it must not share the backend's event loop, so it runs as its own process:
`python -m broker.embedded --host H --port P --access-file F`. The child prints one line `READY <host>:<port>`
once its listener accepts connections; `EmbeddedBroker` (an async context manager) starts the child, waits for
that line as its readiness signal, and stops it on exit. Production runs Mosquitto (see broker.mosquitto).

Who gets in (issue 22): the access file (`broker-access.json` in the data folder, mode 0600, made at first
start by `load_access`) names one service login used by every local component (ingest, publisher, patrol
scheduler, simulator) and one login per gateway. Anonymous clients and wrong passwords are refused. A gateway
login may use only client ids that start with its own gateway id (the edge agent's `{gw}-edge-uplink`), may
publish only under `sw/v1/gw/{gw}/` (never `cmd/`) and read only its own `cmd/`: the rules of the production
ACL (broker.mosquitto). amqtt 0.12.1 performs a client-id takeover (and, for a clean session, deletes the
old session's subscriptions) *before* it looks at the authentication result, so a refused client could still
make ingest deaf; the connect guard authenticates first and touches no session for a refused CONNECT. Gateway
logins are refused until ingest (a service login) has subscribed to the devices' uplink, so nothing a gateway
kept through an outage is acknowledged by a restarted broker before anyone reads it.

Dying with the parent: started with `--parent-pid`, the child asks Linux for SIGTERM when its parent dies
(PR_SET_PDEATHSIG) and also watches its parent pid, so a kill -9 of `shouwang run` takes the broker with it:
devices then find no broker and keep their messages in the gateway outbox until the centre is back, instead
of handing them to a broker nobody reads. The child writes its pid to `embedded-broker.pid` in the state
folder; a port already taken at start is explained in one line naming the holder's pid.

Errors:

    BrokerStartError      the child did not start (`why` is one line for a person); a broker.errors.BrokerError
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from broker.errors import BrokerError

__all__ = [
    "ACCESS_FILE",
    "PID_FILE",
    "SERVICE_USER",
    "BrokerAccess",
    "BrokerStartError",
    "EmbeddedBroker",
    "free_port",
    "install_suffix",
    "load_access",
    "main",
]

ACCESS_FILE = "broker-access.json"
PID_FILE = "embedded-broker.pid"
SERVICE_USER = "shouwang-local"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PARENT_CHECK_S = 0.5  # how soon the broker notices its parent is gone when the death signal was missed


class BrokerStartError(BrokerError, RuntimeError):
    def __init__(self, why: str, output: str = "") -> None:
        self.why = why
        self.output = output
        super().__init__(f"embedded broker did not start: {why}\n{output}".rstrip())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS reports free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# --- who may connect -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """The embedded broker's logins, as stored in the access file."""

    path: Path
    service_password: str
    gateways: dict[str, str] = field(default_factory=dict)

    @property
    def service_user(self) -> str:
        return SERVICE_USER

    def gateway_password(self, gateway: str) -> str:
        return self.gateways[gateway]


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only (0600) from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load_access(folder: Path, gateways: Iterable[str] = ()) -> BrokerAccess:
    """The access file in `folder`, created at first start, with a password added for each gateway not yet in it."""
    path = folder / ACCESS_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise BrokerStartError(f"the broker access file {path} cannot be read ({exc}): move it aside to generate a new one") from exc
    changed = not data
    data.setdefault("service", {"username": SERVICE_USER, "password": secrets.token_urlsafe(24)})
    gws: dict[str, str] = data.setdefault("gateways", {})
    for gw in gateways:
        if gw not in gws:
            gws[gw] = secrets.token_urlsafe(18)
            changed = True
    if changed:
        folder.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return BrokerAccess(path, str(data["service"]["password"]), dict(gws))


def install_suffix(folder: Path) -> str:
    """A random suffix made once per data folder (`mqtt-client-suffix`), appended to the backend's MQTT client ids.

    Stable across restarts, so ingest's persistent session on a production broker carries on; unknown to the
    gateways, so no gateway can guess the ingest client id and take its session over on Mosquitto (whose ACL
    cannot tie client ids to logins)."""
    path = folder / "mqtt-client-suffix"
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    folder.mkdir(parents=True, exist_ok=True)
    suffix = secrets.token_hex(5)
    _write_private(path, suffix + "\n")
    return suffix


def _read_logins(path: str) -> tuple[str, dict[str, str]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return str(data["service"]["password"]), {str(k): str(v) for k, v in data.get("gateways", {}).items()}


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def gateway_may(gateway: str, action: str, topic: str) -> bool:
    """The production ACL's gateway rules (broker.mosquitto.render_acl) for one topic or filter."""
    from broker.topics import PREFIX

    own = f"{PREFIX}/{gateway}/"
    if not topic.startswith(own):
        return False
    rest = topic[len(own):]
    if action == "publish":
        return rest in ("status", "patrol") or (rest.startswith("dev/") and "+" not in rest and "#" not in rest)
    return rest == "cmd/#" or rest.startswith("cmd/")  # subscribe / receive: its own commands only


# Set (in the broker process) once a service login subscribes to the devices' uplink, i.e. ingest is reading.
# Until then gateway logins are refused: a gateway reconnecting faster than a restarted centre's ingest would
# otherwise hand its kept messages to a broker that acknowledges them to nobody.
_CONSUMER = {"subscribed": False}


def _covers_device_uplink(topic_filter: str) -> bool:
    from broker.errors import InvalidTopic
    from broker.topics import TopicFilter, event_topic

    try:
        return TopicFilter(topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else topic_filter).matches(event_topic("gw", "dev"))
    except (InvalidTopic, IndexError):
        return False


def _plugins() -> tuple[type[Any], type[Any]]:
    """The amqtt plugins, built on first use: only the child process imports amqtt."""
    from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

    class LoginPlugin(BaseAuthPlugin):  # type: ignore[misc]
        """Service login or a gateway login with a client id of its own; nobody else."""

        @dataclass
        class Config:
            access_file: str = ""

        def __init__(self, context: Any) -> None:
            super().__init__(context)
            self._service, self._gateways = _read_logins(self.config.access_file)

        async def authenticate(self, *, session: Any) -> bool | None:
            user, password = _as_text(session.username), _as_text(session.password)
            client_id = _as_text(session.client_id)
            if not user:
                return False
            if user == SERVICE_USER:
                return hmac.compare_digest(password.encode(), self._service.encode())
            expected = self._gateways.get(user)
            if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
                return False
            if not (client_id == user or client_id.startswith(user + "-")):
                return False
            if not _CONSUMER["subscribed"]:  # nobody reads the uplink yet: the gateway keeps its messages, retrying
                self.context.logger.warning("refused gateway %s: the centre's ingest has not subscribed yet", user)
                return False
            return True

    class GatewayTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
        """A gateway login publishes under its own prefix and reads its own commands; the service login anything."""

        @dataclass
        class Config:
            pass

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Any = None) -> bool | None:
            user = _as_text(getattr(session, "username", None))
            if user == SERVICE_USER:
                if str(action) == "subscribe" and topic is not None and _covers_device_uplink(topic):
                    _CONSUMER["subscribed"] = True  # ingest is reading: gateways may now hand messages over
                return True
            if not user or topic is None:
                return False
            return gateway_may(user, str(action), topic)

    return LoginPlugin, GatewayTopicPlugin


def _amqtt_config(host: str, port: int, access_file: str | None) -> dict[str, Any]:
    plugins: dict[str, Any]
    if access_file is None:  # library use only (tests of other parts); `shouwang run` always passes an access file
        plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    else:
        plugins = {"broker.embedded.LoginPlugin": {"access_file": access_file}, "broker.embedded.GatewayTopicPlugin": {}}
    return {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 10000}}, "plugins": plugins}


def __getattr__(name: str) -> Any:  # amqtt loads plugins by dotted path: broker.embedded.LoginPlugin
    if name in ("LoginPlugin", "GatewayTopicPlugin"):
        login, topic = _plugins()
        return login if name == "LoginPlugin" else topic
    raise AttributeError(name)


def _install_connect_guard() -> None:
    """Make amqtt authenticate a CONNECT before it takes over or deletes the session of that client id.

    amqtt.broker looks `BrokerProtocolHandler` up as a module global when a client connects; this child process
    replaces it once with a subclass whose `init_from_connect` refuses (CONNACK "not authorised", connection
    closed) a client that the login plugin refuses, so the broker never reaches its session handling for it."""
    import amqtt.broker
    from amqtt.errors import MQTTError
    from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    class _CheckedHandler(BrokerProtocolHandler):  # type: ignore[misc]
        @classmethod
        async def init_from_connect(cls, reader: Any, writer: Any, plugins_manager: Any, loop: Any = None) -> Any:
            handler, session = await super().init_from_connect(reader, writer, plugins_manager)
            results = [r for r in (await plugins_manager.map_plugin_auth(session=session)).values() if r is not None]
            if not results or not all(results):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
                raise MQTTError(f"refused {_as_text(session.username) or 'an anonymous client'} as {_as_text(session.client_id)!r}")
            return handler, session

    amqtt.broker.BrokerProtocolHandler = _CheckedHandler


# --- the child process -----------------------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        sys.exit(0)


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once the parent is gone (the child is then re-parented), polling: Linux has no event for it."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - nothing to wait on but the clock
        await asyncio.sleep(_PARENT_CHECK_S)
    stop.set()


async def _serve(host: str, port: int, access_file: str | None, parent_pid: int | None, pid_file: Path | None) -> None:
    from amqtt.broker import Broker

    if access_file is not None:
        _install_connect_guard()
    broker = Broker(_amqtt_config(host, port, access_file))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if pid_file is not None:
        await asyncio.to_thread(pid_file.write_text, f"{os.getpid()}\n", "utf-8")
    print(f"READY {host}:{port}", flush=True)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop), name="embedded-broker-parent") if parent_pid else None
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        if pid_file is not None:
            await asyncio.to_thread(_remove_own_pid_file, pid_file)
        await broker.shutdown()


def _remove_own_pid_file(pid_file: Path) -> None:
    with contextlib.suppress(OSError):
        if pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.embedded", description="Run the embedded MQTT broker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--access-file", default=None, help="logins (broker-access.json); without it the broker is anonymous")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process dies")
    parser.add_argument("--pid-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid:
        _die_with_parent(args.parent_pid)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s embedded-broker %(levelname)s %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    asyncio.run(_serve(args.host, args.port, args.access_file, args.parent_pid, args.pid_file))


# --- the parent's side -----------------------------------------------------------------------------------------


def _listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port`, from /proc (Linux), if it can be seen."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return int(proc.name)
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def explain_taken_port(host: str, port: int, pid_file: Path | None) -> str:
    """One line saying who holds host:port and what to do."""
    pid = _listener_pid(port)
    if pid is None and pid_file is not None and pid_file.exists():
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
    if pid is not None and "broker.embedded" in _cmdline(pid):
        return (f"an embedded broker left over from an earlier run (pid {pid}) still holds {host}:{port}; "
                f"stop it with `kill {pid}` and start again")
    who = f"pid {pid} ({_cmdline(pid)[:60]})" if pid is not None else "another program"
    return (f"port {port} on {host} is taken by {who}; free it, or set broker.embedded_port "
            f"(SHOUWANG_BROKER__EMBEDDED_PORT) to another port, or to 0 for any free port")


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class EmbeddedBroker:
    """Starts the embedded broker as a child process; ready when entered, stopped on exit (or with its parent)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 20.0, *,
                 access: BrokerAccess | None = None, state_dir: Path | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.port = port or free_port(host)
        self.access = access
        self._pid_file = state_dir / PID_FILE if state_dir is not None else None
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> Self:
        if self.requested_port and _port_taken(self.host, self.port):
            raise BrokerStartError(explain_taken_port(self.host, self.port, self._pid_file))
        argv = [sys.executable, "-m", "broker.embedded", "--host", self.host, "--port", str(self.port), "--parent-pid", str(os.getpid())]
        if self.access is not None:
            argv += ["--access-file", str(self.access.path)]
        if self._pid_file is not None:
            argv += ["--pid-file", str(self._pid_file)]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C in the terminal must not stop the broker before the clients drain
        )
        assert self._proc.stdout is not None
        seen: list[str] = []
        try:
            async with asyncio.timeout(self._start_timeout_s):
                while True:
                    line = (await self._proc.stdout.readline()).decode(errors="replace")
                    if not line:
                        code = await self._proc.wait()
                        if any("address already in use" in s.lower() for s in seen):
                            raise BrokerStartError(explain_taken_port(self.host, self.port, self._pid_file), "".join(seen))
                        raise BrokerStartError(f"process exited with {code}", "".join(seen))
                    if line.startswith("READY "):
                        break
                    seen.append(line)
        except TimeoutError as exc:
            await self._stop()
            raise BrokerStartError(f"not ready within {self._start_timeout_s} s", "".join(seen)) from exc
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


if __name__ == "__main__":
    main()
