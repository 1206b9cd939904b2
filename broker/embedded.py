"""The embedded MQTT broker (amqtt), so the system runs with nothing installed.

How this works: amqtt is pure Python and slow next to Mosquitto (~2.6 k QoS 1 msg/s, see MEASURED.md), which
is plenty for one community; it must not share the backend's event loop, so it runs as its own process:
`python -m broker.embedded --host H --port P`. The child prints one line `READY <host>:<port>` once its
listener accepts connections; `EmbeddedBroker` (an async context manager) starts the child, waits for that
line as its readiness signal, and stops it on exit. Production runs Mosquitto (see broker.mosquitto).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from types import TracebackType
from typing import Any, Self

__all__ = ["BrokerStartError", "EmbeddedBroker", "free_port", "main"]


class BrokerStartError(RuntimeError):
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


def _amqtt_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 10000}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def _serve(host: str, port: int) -> None:
    from amqtt.broker import Broker  # imported here: only the child process needs amqtt

    broker = Broker(_amqtt_config(host, port))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {host}:{port}", flush=True)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.embedded", description="Run the embedded MQTT broker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s embedded-broker %(levelname)s %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    asyncio.run(_serve(args.host, args.port))


class EmbeddedBroker:
    """Starts the embedded broker as a child process; ready when entered, stopped on exit."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 20.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "broker.embedded", "--host", self.host, "--port", str(self.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
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
                        raise BrokerStartError(f"process exited with {await self._proc.wait()}", "".join(seen))
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
