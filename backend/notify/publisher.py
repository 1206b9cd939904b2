"""The backend's outbound MQTT connection: notices to responder apps and buildings, commands to gateways.

How this works: `MqttPublisher` is an async context manager around one `broker.connection.ReconnectingClient`
(TCP_NODELAY, jittered backoff from `[broker]` settings). Entering waits for the connection (BrokerUnreachable,
a ConnectionError, after connect_timeout_s). `publish()` sends QoS 1 on the current connection and raises
`aiomqtt.MqttError` (broker.connection.NotConnected) when there is none, so callers with their own retry (the
notification dispatcher, the patrol scheduler) see the failure instead of a message vanishing.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from broker.connection import Backoff, ReconnectingClient
from broker.mosquitto import login_bound_client_id

__all__ = ["PENDING_CALLS_WARN", "MqttPublisher"]

# Publishes awaiting their PUBACK above which aiomqtt logs a warning, one line per publish (its default is 10). The
# outbox delivers a round of up to `escalation.batch` notices at once, each on up to three MQTT channels (app,
# sounder, display): a 2,000-alarm storm logged ~7,400 such lines (issue 19). Hundreds in flight are normal here.
PENDING_CALLS_WARN = 1_000


class MqttPublisher:
    def __init__(self, host: str, port: int, *, client_id: str, username: str | None = None, password: str | None = None,
                 connect_timeout_s: float = 30.0, backoff: Backoff | None = None, pending_calls_threshold: int = PENDING_CALLS_WARN) -> None:
        # a gateway must not be able to guess the id and kick the publisher off (issue 22): see broker.mosquitto
        self._client_id = login_bound_client_id(client_id, password)
        self._mqtt = ReconnectingClient(host, port, identifier=self._client_id, username=username, password=password,
                                        backoff=backoff or Backoff(), name=f"mqtt-publisher-{self._client_id}",
                                        pending_calls_threshold=pending_calls_threshold)
        self._connect_timeout_s = connect_timeout_s

    async def __aenter__(self) -> Self:
        await self._mqtt.__aenter__()
        try:
            await self._mqtt.wait_ready(self._connect_timeout_s)
        except BaseException:
            await self._mqtt.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._mqtt.close()

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is up now (readiness, backend/ops/checks.py)."""
        return self._mqtt.connected

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        await self._mqtt.publish(topic, payload, qos=qos)
