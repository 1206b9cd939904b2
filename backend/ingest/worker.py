"""The ingest worker: subscribe to every uplink topic and hand each message on, acknowledging it only when told.

How this works: one aiomqtt connection subscribes (QoS 1) to everything a gateway may publish (broker.topics) — through
an MQTT 5 shared subscription when a share group is configured, so several workers split the stream (the
embedded amqtt broker speaks 3.1.1 only: a plain subscription then). The worker is an async context
manager: on entry it is connected and subscribed (ready), on exit it stops intake and disconnects. A lost
connection is retried with back-off for ever; the session is persistent (clean_session false / a session
expiry on MQTT 5) so QoS 1 messages published while the worker was away are delivered when it returns. With a
login, the client id carries a tag derived from the password (broker.mosquitto.login_bound_client_id): stable
across restarts, so the session carries on, and unknown to every gateway, so none can take the session over.

Acknowledgements: the sink is an `Intake` (backend.pipeline.Pipeline, entered as a context manager), and
  paho runs in its manual acknowledgement mode. paho normally sends PUBACK as soon as its on_message callback returns, i.e. before
  anything is durable; here the raw callback hands (topic, payload, token) to the intake and returns, and
  the intake later calls `ack(tokens)` once the message is journaled. A token is (connection generation
  << 16 | packet id): an acknowledgement meant for a connection that is gone is dropped, because the broker
  redelivers those messages on the new connection anyway (and the intake recognises them as duplicates).
  aiomqtt's own message queue and Message objects are bypassed: that is most of its per-message cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.ingest.stats import IngestStats
from broker.mosquitto import login_bound_client_id
from broker.topics import SharedSubscription, gateway_publish_filters

__all__ = ["IngestWorker", "Intake"]

log = logging.getLogger(__name__)
_PUBACK = struct.Struct("!BBH")

_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0  # a restarted broker is back in seconds; do not wait longer than that to notice


@runtime_checkable
class Intake(Protocol):
    """A sink that takes raw messages synchronously and acknowledges them itself, later, by token."""

    running: bool
    stats: IngestStats

    def accept(self, topic: str, payload: bytes, token: int) -> None: ...

    def bind(self, acker: Any) -> None: ...  # Callable[[Sequence[int]], None]


class IngestWorker:
    def __init__(
        self,
        intake: Intake,
        host: str,
        port: int,
        *,
        client_id: str = "shouwang-ingest",
        share_group: str | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout_s: float = 30.0,
        read_burst: int = 64,
    ) -> None:
        if not intake.running:
            raise RuntimeError("enter the intake (the pipeline) before the worker: it must be ready to journal")
        self._intake = intake
        self.stats = intake.stats
        self._generation = 0
        self._paho: mqtt.Client | None = None
        self._host, self._port = host, port
        self._client_id = login_bound_client_id(client_id, password)  # not guessable by a gateway: see broker.mosquitto
        self._share_group = share_group
        self._username, self._password = username, password
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._connect_timeout_s = connect_timeout_s
        self.last_error = ""
        self._read_burst = read_burst

    @property
    def connected(self) -> bool:
        return self._connected

    def _make_client(self) -> aiomqtt.Client:
        v5 = self._share_group is not None
        properties = None
        if v5:
            # Keep the session (subscriptions and queued QoS 1 messages) for a day across reconnects.
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 86_400
        client = aiomqtt.Client(
            self._host, self._port, identifier=self._client_id, username=self._username, password=self._password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False, clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties, max_queued_incoming_messages=0,
        )
        paho = client._client  # aiomqtt has no manual-ack API: reach the paho client underneath
        paho.manual_ack_set(True)
        paho.on_message = self._on_raw_message
        return client

    def _on_raw_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """paho's callback, on the event loop thread: hand the message on; the intake acknowledges it later."""
        token = (self._generation << 16) | message.mid if message.qos > 0 else -1
        try:
            self._intake.accept(message.topic, bytes(message.payload), token)
        except Exception:  # never let an intake bug stop paho's read loop
            log.exception("intake failed on %s", message.topic)

    def ack(self, tokens: Sequence[int]) -> None:
        """Send PUBACK for these tokens, if they belong to the current connection.

        All of them go as one write: paho's ack() queues one packet per call, each with a wake-up syscall
        and a send() of 4 bytes. A PUBACK with reason "success" and no properties is the same 4 bytes in
        MQTT 3.1.1 and 5 (0x40, 2, packet id), so the concatenation is what paho would have sent."""
        paho, gen = self._paho, self._generation
        if paho is None:
            return
        blob = b"".join(_PUBACK.pack(0x40, 2, t & 0xFFFF) for t in tokens if t >> 16 == gen)
        if blob:
            paho._packet_queue(mqtt.PUBACK, blob, 0, 0)

    async def __aenter__(self) -> Self:
        self._ready = asyncio.Event()
        self._intake.bind(self.ack)
        self._task = asyncio.create_task(self._run(), name=f"ingest-{self._client_id}")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._ready.wait()
        except TimeoutError as exc:
            await self.__aexit__(None, None, None)
            raise ConnectionError(f"ingest could not reach the broker at {self._host}:{self._port}: {self.last_error}") from exc
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """Connect, subscribe, consume; on a lost connection, reconnect with back-off, for ever."""
        backoff = _BACKOFF_MIN_S
        while True:
            try:
                client = self._make_client()
                self._generation = (self._generation + 1) & 0x7FFF
                async with client:
                    self._paho = client._client
                    _nodelay(client)
                    _fast_reader(client, self._read_burst)
                    for topic_filter in gateway_publish_filters():
                        sub = str(SharedSubscription(self._share_group, topic_filter)) if self._share_group else str(topic_filter)
                        await client.subscribe(sub, qos=1)
                    self._connected = True
                    self._ready.set()
                    backoff = _BACKOFF_MIN_S
                    async for _ in client.messages:  # never yields (messages bypass the queue); raises when the connection drops
                        pass
            except aiomqtt.MqttError as exc:
                self._connected = False
                self._paho = None
                self.last_error = str(exc)
                self.stats.reconnects += 1
                log.warning("ingest lost the broker (%s); reconnecting in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)


def _fast_reader(client: aiomqtt.Client, burst: int) -> None:
    """Read up to `burst` packets per wake-up through a 256 KiB buffer (measured: benchmarks/ingest.py).

    paho reads a packet in at least three recv() calls (type byte, length bytes, body) and aiomqtt's reader
    callback handles one packet per event-loop iteration: at 10 k msg/s that is 40 k syscalls and 10 k
    loop turns a second. Here one recv() fills a buffer that paho's reads are served from, and the reader
    keeps parsing packets until the socket is dry, yielding to the loop every `burst` packets so the
    life-safety lane never waits long. Reaches into paho (`_sock_recv`, `_packet_read`, `_loop_rc_handle`):
    pinned versions, covered by the ingest tests."""
    paho = client._client
    sock = paho.socket()
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return  # TLS keeps paho's own reader (SSLSocket.pending() semantics)
    loop = asyncio.get_running_loop()
    buf = bytearray()

    def recv(bufsize: int) -> bytes:
        if not buf:
            data = sock.recv(262_144)  # BlockingIOError propagates: paho reads it as "no data yet"
            if not data:
                return b""
            buf.extend(data)
        out = bytes(buf[:bufsize])
        del buf[:bufsize]
        return out

    def on_readable() -> None:
        try:
            for _ in range(burst):
                rc = paho._packet_read()
                if rc == mqtt.MQTT_ERR_AGAIN:
                    if buf:
                        break  # paho stopped mid-packet with data still buffered: go on next turn
                    return
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    paho._loop_rc_handle(rc)
                    return
            loop.call_soon(on_readable)  # more may be buffered: let other tasks run first, then go on
        except Exception as exc:
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

    paho._sock_recv = recv  # type: ignore[method-assign]
    loop.remove_reader(sock.fileno())
    loop.add_reader(sock.fileno(), on_readable)


def _nodelay(client: aiomqtt.Client) -> None:
    """Turn off Nagle on the alarm path: docs/measured.md shows it costs ~9 ms p50 on small messages."""
    sock = client._client.socket()  # paho exposes the socket only on its own client
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
