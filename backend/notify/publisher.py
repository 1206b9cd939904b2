"""The backend's outbound MQTT connection: notices to responder apps and buildings, commands to gateways.

How this works: `MqttPublisher` is an async context manager owning one named task that keeps an aiomqtt
connection up, reconnecting with back-off. `publish()` sends QoS 1 on the current connection and raises
`aiomqtt.MqttError` when there is none, so callers with their own retry (the notification dispatcher, the
patrol scheduler) see the failure instead of a message vanishing. TCP_NODELAY is set: notices are small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import TracebackType
from typing import Self

import aiomqtt

from broker.mosquitto import login_bound_client_id

__all__ = ["MqttPublisher"]

log = logging.getLogger(__name__)


class MqttPublisher:
    def __init__(self, host: str, port: int, *, client_id: str, username: str | None = None, password: str | None = None,
                 connect_timeout_s: float = 30.0) -> None:
        self._host, self._port = host, port
        # a gateway must not be able to guess the id and kick the publisher off (issue 22): see broker.mosquitto
        self._client_id, self._username, self._password = login_bound_client_id(client_id, password), username, password
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connect_timeout_s = connect_timeout_s

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-publisher-{self._client_id}")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._connected.wait()
        except TimeoutError as exc:
            await self.__aexit__(None, None, None)
            raise ConnectionError(f"cannot reach the broker at {self._host}:{self._port} to publish") from exc
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with aiomqtt.Client(self._host, self._port, identifier=self._client_id, username=self._username,
                                          password=self._password) as client:
                    sock = client._client.socket()  # paho exposes the socket only on its own client
                    if isinstance(sock, socket.socket):
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._client = client
                    self._connected.set()
                    backoff = 0.1
                    async for _ in client.messages:  # nothing is subscribed: this only ends by raising when the connection drops
                        pass
            except aiomqtt.MqttError as exc:
                log.warning("publisher lost the broker (%s); reconnecting in %.1f s", exc, backoff)
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is up now (readiness, backend/ops/checks.py)."""
        return self._connected.is_set()

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        await client.publish(topic, payload, qos=qos)
