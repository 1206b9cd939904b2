"""One reconnecting MQTT client for everything of ours that speaks MQTT, and the only door into aiomqtt's and paho's insides.

How this works: `ReconnectingClient` keeps one aiomqtt connection (aiomqtt wraps paho) up for as long as it runs.
Each turn of its loop: await `before_connect` (a simulated cable cut keeps a link away), connect (TCP_NODELAY
through aiomqtt's public socket options, the Last Will, a clean or persistent session), subscribe again to every
filter, await `on_connect` (the uplink's retained "online"), set `ready`, then run the caller's `session` beside a
watch on the connection. The session returning ends the client (the simulator's farewell). The connection
dropping, or the session raising one of `retry_on`, ends this connection, clears `ready` and, after a jittered
exponential backoff (`Backoff`: its numbers come from backend/settings.py or edge/config.py), the loop connects
again; any other error leaves through `run()`. A connection that came up resets the backoff.

Readiness is the `ready` event (and `wait_ready`), never a sleep. Shutdown, in order: the owner stops its intake,
drains, then leaves the context (or cancels `run()`): the session is cancelled, a DISCONNECT is sent (so the broker
does not publish the Last Will: a crash, which sends none, does) and the connection is closed.

Manual acknowledgement (`manual_ack=True`): paho then sends no PUBACK of its own, and the owner calls `ack(mids)`
once the message is safe (journaled, committed to the outbox): kill -9 in between loses nothing, the broker
redelivers. All mids of one call go out as one write, for the connection (`generation`) they arrived on only.
The fast path for the ingest (`on_message` + `read_burst`) bypasses aiomqtt's message queue and reads packets in
bursts (measured: benchmarks/ingest.py).

Private use (every touch is here, each commented; tests/broker/test_connection_versions.py pins the versions this
was written against and checks each attribute, naming it when an upgrade moves it): aiomqtt's `Client._client`
(the paho client: no other way to reach its manual ack or its socket) and `Client._disconnected` (the only signal
of a dropped connection when nobody iterates `messages`); paho's `Client._packet_queue` (one write for many
PUBACKs), `_sock_recv`, `_packet_read` and `_loop_rc_handle` (the burst reader).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker.errors import BrokerError

__all__ = ["PRIVATE_USE", "WRITTEN_AGAINST", "Backoff", "BrokerUnreachable", "Link", "NotConnected", "RawHandler", "ReconnectingClient", "Session"]

log = logging.getLogger(__name__)

# The versions every private touch below was read against; tests/broker/test_connection_versions.py fails when the
# installed ones differ, so an upgrade is a conscious act: re-read the attributes in PRIVATE_USE, then bump these.
WRITTEN_AGAINST: Final = {"aiomqtt": "2.5.1", "paho-mqtt": "2.2.0"}
# (module, class, attribute) of every private attribute this module touches; the version test checks each exists.
PRIVATE_USE: Final = (
    ("aiomqtt", "Client", "_client"),
    ("aiomqtt", "Client", "_disconnected"),
    ("paho.mqtt.client", "Client", "_packet_queue"),
    ("paho.mqtt.client", "Client", "_sock_recv"),
    ("paho.mqtt.client", "Client", "_packet_read"),
    ("paho.mqtt.client", "Client", "_loop_rc_handle"),
    ("paho.mqtt.client", "Client", "_in_packet"),
)

_PUBACK: Final = struct.Struct("!BBH")  # type 0x40, remaining length 2, packet id: the same bytes in MQTT 3.1.1 and 5
_GENERATIONS: Final = 0x8000  # generation numbers wrap in 15 bits, so (generation << 16 | mid) fits 31 bits
_READ_BUFFER: Final = 262_144  # one recv() of up to 256 KiB feeds many packets
HOLD_POLL_S: Final = 0.002  # a held reader looks again this often whether its hold has lifted
HOLD_MAX_S: Final = 1.0  # a reader held this long then reads as if not held for HOLD_FREE_S (keep-alive replies, and
HOLD_FREE_S: Final = 0.25  # what it carries is not starved by a flood of alarms that never ends: ≥ 20 % of the time)

# (topic, payload, qos, mid), on the event loop thread; True: "urgent" (a life-safety message), the burst reader
# stops its burst there so the loop runs what the message set going before the next packet is parsed
RawHandler = Callable[[str, bytes, int, int], bool | None]
Session = Callable[["Link"], Awaitable[None]]


class NotConnected(BrokerError, aiomqtt.MqttError):
    """There is no connection to publish on now (also an aiomqtt.MqttError, which callers already catch)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name}: not connected to the broker")


class BrokerUnreachable(BrokerError, ConnectionError):
    """The broker did not accept a connection within the time the owner would wait."""

    def __init__(self, host: str, port: int, why: str) -> None:
        self.host, self.port, self.why = host, port, why
        super().__init__(f"cannot reach the broker at {host}:{port}: {why or 'timed out'}")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait before connecting again: `initial_s` doubling up to `maximum_s`, each wait shortened by a random part of
    up to `jitter` of itself, so a hundred gateways that lost a restarted broker together do not return together."""

    initial_s: float = 0.1
    maximum_s: float = 5.0  # a restarted broker is back in seconds: do not wait much longer than that to notice
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.maximum_s:
            raise ValueError(f"reconnect backoff needs 0 < initial ({self.initial_s}) <= maximum ({self.maximum_s})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"reconnect jitter must be a fraction in [0, 1), not {self.jitter}")

    def delay_s(self, attempt: int, draw: float) -> float:
        """The wait before attempt `attempt` (0 = right after a loss); `draw` is uniform in [0, 1)."""
        base = min(self.initial_s * 2.0 ** min(attempt, 62), self.maximum_s)
        return base * (1.0 - self.jitter * draw)


def _paho(client: aiomqtt.Client) -> mqtt.Client:
    # PRIVATE: aiomqtt keeps its paho client in `_client` and offers no manual ack, raw callback or socket access.
    paho: mqtt.Client = client._client
    return paho


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


class Link:
    """One connection of a ReconnectingClient, handed to its `session` and `on_connect`; dead once it drops."""

    def __init__(self, owner: ReconnectingClient, client: aiomqtt.Client, generation: int) -> None:
        self._owner, self._client, self.generation = owner, client, generation

    @property
    def messages(self) -> aiomqtt.client.MessagesIterator:
        """Messages of the subscriptions; iterating raises aiomqtt.MqttError when the connection drops."""
        return self._client.messages

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout_s: float | None = None) -> None:
        if timeout_s is None:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        else:
            await self._client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout_s)

    def ack(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages of this connection (manual_ack): one write for all of them."""
        self._owner.ack(mids, generation=self.generation)


class ReconnectingClient:
    """See the module docstring. Use `async with` (owns its task) or await `run()` in a task of your own."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        identifier: str,
        backoff: Backoff,
        name: str = "mqtt",
        username: str | None = None,
        password: str | None = None,
        will: aiomqtt.Will | Callable[[], aiomqtt.Will] | None = None,
        keepalive_s: int = 60,
        clean_session: bool | None = None,
        clean_start: bool | Literal[3] = mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        session_expiry_s: int | None = None,
        tls_ca_file: str | None = None,
        timeout_s: float | None = None,
        max_inflight_messages: int | None = None,
        pending_calls_threshold: int | None = None,
        tcp_nodelay: bool = True,
        subscriptions: Sequence[tuple[str, int]] = (),
        manual_ack: bool = False,
        on_message: RawHandler | None = None,
        read_burst: int | None = None,
        hold: Callable[[], bool] | None = None,
        on_connect: Session | None = None,
        session: Session | None = None,
        before_connect: Callable[[], Awaitable[None]] | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        on_lost: Callable[[Sequence[BaseException]], None] | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.host, self.port, self.identifier, self.name = host, port, identifier, name
        self.backoff = backoff
        self._username, self._password, self._will, self._keepalive_s = username, password, will, keepalive_s
        # MQTT 5 is used when a session expiry is asked for (shared subscriptions need it too); else 3.1.1.
        self._v5 = session_expiry_s is not None
        self._clean_session, self._clean_start, self._session_expiry_s = clean_session, clean_start, session_expiry_s
        self._tls_ca_file, self._timeout_s = tls_ca_file, timeout_s
        self._max_inflight, self._pending_threshold = max_inflight_messages, pending_calls_threshold
        # TCP_NODELAY: Nagle would hold a small alarm back waiting for an ACK (~9 ms p50, docs/measured.md).
        self._socket_options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if tcp_nodelay else []
        self.subscriptions = list(subscriptions)
        self._manual_ack, self._on_message, self._read_burst, self._hold = manual_ack, on_message, read_burst, hold
        self._urgent = [False]  # set by the raw callback when the handler says so; the burst reader yields on it
        self._on_connect, self._session, self._before_connect = on_connect, session, before_connect
        self._retry_on: tuple[type[BaseException], ...] = (aiomqtt.MqttError, OSError, *retry_on)
        self._on_lost = on_lost
        self._logger = logger
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter, not a secret
        self.ready = asyncio.Event()
        self.connects = 0
        self.losses = 0
        self.generation = 0
        self.last_error = ""
        self.last_delay_s = 0.0
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the owner's side

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.run(), name=f"{self.name}-connection")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reconnecting, end the session, disconnect cleanly (no Last Will). Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until connected and subscribed; BrokerUnreachable after timeout_s (or if the loop ended)."""
        waiter = asyncio.ensure_future(self.ready.wait())
        watched: set[asyncio.Future[Any]] = {waiter}
        if self._task is not None:
            watched.add(self._task)
        try:
            done, _ = await asyncio.wait(watched, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if waiter not in done or not self.ready.is_set():
            if self._task is not None and self._task in done and not self._task.cancelled() and self._task.exception() is not None:
                raise BrokerUnreachable(self.host, self.port, str(self._task.exception())) from self._task.exception()
            raise BrokerUnreachable(self.host, self.port, self.last_error)

    @property
    def connected(self) -> bool:
        return self.ready.is_set()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout_s: float | None = None) -> None:
        """Publish on the current connection; NotConnected (an aiomqtt.MqttError) when there is none."""
        client = self._client
        if client is None or not self.ready.is_set():
            raise NotConnected(self.name)
        await Link(self, client, self.generation).publish(topic, payload, qos=qos, retain=retain, timeout_s=timeout_s)

    def ack(self, mids: Iterable[int], *, generation: int) -> None:
        """PUBACK these QoS 1 messages (manual_ack) if they came on the current connection; else drop them: the
        broker redelivers them on the new one. All go as one write: paho's own ack() queues one packet per call,
        each with a wake-up and a send() of 4 bytes; the concatenation is exactly what paho would have sent."""
        client = self._client
        if client is None or generation != self.generation:
            return
        blob = b"".join(_PUBACK.pack(0x40, 2, mid & 0xFFFF) for mid in mids)
        if blob:
            # PRIVATE: paho's `_packet_queue` is its one way to put bytes on the wire; the public ack() sends one each.
            _paho(client)._packet_queue(mqtt.PUBACK, blob, 0, 0)

    def abort(self) -> None:
        """Drop the connection without a DISCONNECT, as a pulled cable does: the broker publishes the Last Will."""
        client = self._client
        if client is None:
            return
        sock = _paho(client).socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- the loop

    async def run(self) -> None:
        """Connect, run the session, reconnect after a backoff; return when the session returns."""
        attempt = 0
        while True:
            if self._before_connect is not None:
                await self._before_connect()
            connects = self.connects
            try:
                if await self._connection():
                    return
            except Exception as exc:  # sorted below: only the retryable ones are kept
                errors = _leaves(exc)
                if not all(isinstance(e, self._retry_on) for e in errors):
                    raise
                self.losses += 1
                self.last_error = "; ".join(str(e) or type(e).__name__ for e in errors)[:300]
                if self._on_lost is not None:
                    self._on_lost(errors)
            if self.connects > connects:
                attempt = 0
            self.last_delay_s = self.backoff.delay_s(attempt, self._rng.random())
            attempt += 1
            # the owner's on_lost says what the loss means to it; without one, this is the only word of it
            log.log(logging.INFO if self._on_lost else logging.WARNING, "%s: broker %s:%d lost or refused (%s); again in %.2f s",
                    self.name, self.host, self.port, self.last_error, self.last_delay_s)
            await self._sleep(self.last_delay_s)  # real time: waiting for a broker to come back is I/O, not a timer

    def _make_client(self) -> aiomqtt.Client:
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s
        will = self._will() if callable(self._will) else self._will
        extra: dict[str, Any] = {}
        if self._timeout_s is not None:
            extra["timeout"] = self._timeout_s
        if self._max_inflight is not None:
            extra["max_inflight_messages"] = self._max_inflight
        if self._logger is not None:
            extra["logger"] = self._logger
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.identifier, username=self._username, password=self._password, will=will,
            keepalive=self._keepalive_s, socket_options=self._socket_options,
            protocol=aiomqtt.ProtocolVersion.V5 if self._v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if self._v5 else self._clean_session, properties=properties,
            # MQTT 5 spells a persistent session as clean_start false (plus the session expiry above)
            clean_start=False if self._v5 and self._clean_session is False else self._clean_start,
            tls_context=ssl.create_default_context(cafile=self._tls_ca_file) if self._tls_ca_file else None,
            max_queued_incoming_messages=0, **extra,
        )
        if self._pending_threshold is not None:
            client.pending_calls_threshold = self._pending_threshold
        paho = _paho(client)
        if self._manual_ack:
            paho.manual_ack_set(True)  # before connecting: a persistent session may deliver at once
        if self._on_message is not None:
            paho.on_message = self._raw_callback(self._on_message, self._urgent)  # bypass aiomqtt's queue and Message objects
        return client

    @staticmethod
    def _raw_callback(handler: RawHandler, urgent: list[bool]) -> Callable[[mqtt.Client, object, mqtt.MQTTMessage], None]:
        def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            if handler(message.topic, bytes(message.payload), message.qos, message.mid):
                urgent[0] = True

        return on_message

    async def _connection(self) -> bool:
        """One connection, from connect to loss. True when the session ended of itself (the client is done)."""
        client = self._make_client()
        # A new generation before connecting: a persistent session may deliver at once, and its acks must count.
        self.generation = self.generation % (_GENERATIONS - 1) + 1
        link = Link(self, client, self.generation)
        async with client:
            try:
                self._client = client
                if self._read_burst:
                    _burst_reader(client, self._read_burst, self._urgent, self._hold,
                                  publish=self._on_message if self._manual_ack else None, v5=self._v5)
                if self.subscriptions:
                    await client.subscribe(self.subscriptions)
                if self._on_connect is not None:
                    await self._on_connect(link)
                self.connects += 1
                self.ready.set()
                async with asyncio.TaskGroup() as tg:
                    watch = tg.create_task(_until_dropped(client), name=f"{self.name}-watch")
                    if self._session is not None:
                        await self._session(link)
                        watch.cancel()
                        return True
                # no session: the watch ends only by raising (the connection dropped), which leaves through the group
                return False
            finally:
                self.ready.clear()
                self._client = None


async def _until_dropped(client: aiomqtt.Client) -> None:
    # PRIVATE: aiomqtt resolves `_disconnected` when paho loses the connection; nothing public says so unless one
    # iterates `messages`, which the session may be doing itself. asyncio.wait does not cancel the future.
    disconnected: asyncio.Future[None] = client._disconnected
    await asyncio.wait({disconnected})
    raise aiomqtt.MqttError("the connection to the broker dropped") from disconnected.exception()


def _varint(buf: bytearray, i: int, limit: int) -> tuple[int, int] | None:
    """MQTT's variable byte integer at `buf[i]` (7 bits a byte, low first) as (value, index after it); None when it
    does not end before `limit`."""
    value = shift = 0
    while i < limit:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
    return None


def _take_publish(buf: bytearray, v5: bool) -> tuple[str, bytes, int, int] | None:
    """The PUBLISH packet at the head of `buf` as (topic, payload, qos, packet id), taken off the buffer; None, with
    the buffer untouched, when the head is anything else: another packet type, a QoS 2 publish, a topic alias (an
    empty topic), or a packet not all read yet. paho reads those as before.

    MQTT 3.1.1 §3.3 and 5.0 §3.3: fixed header (type 3, flags DUP/QoS/RETAIN), remaining length (1-4 bytes, 7 bits
    each), topic (2-byte length, UTF-8), packet id (2 bytes) for QoS 1, on MQTT 5 the properties (their length, then
    them: skipped), then the payload to the end. paho's parser took ~26 µs a message (MQTT 5: ~54 µs), this ~3 µs."""
    n = len(buf)
    if n < 2 or buf[0] >> 4 != 3:
        return None
    qos = (buf[0] >> 1) & 3
    if qos > 1:
        return None
    head = _varint(buf, 1, min(n, 5))  # the remaining length: at most 4 bytes
    if head is None:
        return None
    length, i = head
    end = i + length
    if end > n or length < 2:
        return None
    j = i + 2 + ((buf[i] << 8) | buf[i + 1])
    if j == i + 2 or j > end:
        return None
    topic = buf[i + 2:j].decode("utf-8", "replace")  # a broker refuses a topic that is not UTF-8; never stop the reader on one
    mid = 0
    if qos:
        if j + 2 > end:
            return None
        mid = (buf[j] << 8) | buf[j + 1]
        j += 2
    if v5:
        properties = _varint(buf, j, end)
        if properties is None:
            return None
        j = properties[1] + properties[0]
        if j > end:
            return None
    payload = bytes(buf[j:end])
    del buf[:end]  # a bytearray drops its head without moving the rest
    return topic, payload, qos, mid


def _burst_reader(client: aiomqtt.Client, burst: int, urgent: list[bool] | None = None, hold: Callable[[], bool] | None = None, *,
                  publish: RawHandler | None = None, v5: bool = False) -> None:
    """Read up to `burst` packets per wake-up through a 256 KiB buffer (measured: benchmarks/ingest.py).

    paho reads a packet in at least three recv() calls (type byte, length bytes, body) and aiomqtt's reader callback
    handles one packet per event-loop turn: at 10 k msg/s that is 40 k syscalls and 10 k loop turns a second. Here one
    recv() fills a buffer that paho's reads are served from, and the reader keeps parsing packets until the socket is
    dry, yielding to the loop every `burst` packets so the life-safety lane never waits long, and at once after a
    packet the handler called urgent (`urgent[0]` set): a smoke alarm is not held behind the rest of the burst.

    `hold`: while it returns true the reader parses nothing: it stops watching the socket (what arrives waits in the
    kernel and the broker) and looks again every HOLD_POLL_S; after HOLD_MAX_S held it reads for HOLD_FREE_S as if
    not held.
    The ingest's main connection is held while life-safety messages are decided and committed (issue 19: in a storm,
    parsing the main connection's flood of telemetry and duplicate event copies took the GIL from the alarms' commit
    thread, and one commit of 258 alarms took 395 ms instead of ~30).

    `publish`: the raw handler of a connection that acknowledges by hand. A QoS 0 or 1 PUBLISH wholly in the buffer
    is then parsed here (`_take_publish`) and handed to it, without paho's parser and message object; every other
    packet (CONNACK, SUBACK, PINGRESP, a publish not all read yet) goes to paho as before, and a packet paho started
    reading is finished by paho. Issue 19: paho's parse was the largest cost of a storm's intake and of ingest's
    throughput after the store."""
    paho = _paho(client)
    sock = paho.socket()
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return  # TLS keeps paho's own reader (SSLSocket.pending() semantics)
    loop = asyncio.get_running_loop()
    buf = bytearray()
    # Between a burst and its continuation (call_soon) the reader is "parked": the socket's own wake-up (level-
    # triggered: it fires every turn while data waits) returns at once, so one connection gets one burst per turn of
    # the loop, not two, and other connections and tasks (the ingest's events connection, its uplink lane) their
    # turn sooner. After an urgent packet the continuation is scheduled at once: the loop runs what was scheduled
    # before it (the urgent message's lane) and nothing of this socket is parsed ahead of that.
    parked = [False]
    held_since: list[float | None] = [None]
    free_until = [0.0]  # after a hold of HOLD_MAX_S: not held again before this (loop time)
    fd = sock.fileno()

    def recv(bufsize: int) -> bytes:
        if not buf:
            data = sock.recv(_READ_BUFFER)  # BlockingIOError propagates: paho reads it as "no data yet"
            if not data:
                return b""
            buf.extend(data)
        out = bytes(buf[:bufsize])
        del buf[:bufsize]
        return out

    def resume() -> None:
        parked[0] = False
        read()

    def on_readable() -> None:
        if not parked[0]:
            read()

    def unhold() -> None:
        if client._disconnected.done() or sock.fileno() != fd:  # PRIVATE: see _until_dropped; the connection is gone
            return
        since = held_since[0]
        assert hold is not None
        assert since is not None
        now = loop.time()
        if hold() and now - since < HOLD_MAX_S:
            loop.call_later(HOLD_POLL_S, unhold)
            return
        if now - since >= HOLD_MAX_S:
            free_until[0] = now + HOLD_FREE_S
        held_since[0] = None
        loop.add_reader(fd, on_readable)
        parked[0] = False
        read()

    def read() -> None:
        if hold is not None and hold() and loop.time() >= free_until[0]:
            held_since[0] = loop.time()
            parked[0] = True
            loop.remove_reader(fd)
            loop.call_later(HOLD_POLL_S, unhold)
            return
        try:
            for _ in range(burst):
                # PRIVATE: paho's packet in progress; command 0: none, the buffer's head is a packet's first byte
                taken = _take_publish(buf, v5) if publish is not None and buf and paho._in_packet["command"] == 0 else None
                if taken is not None:
                    assert publish is not None
                    if publish(*taken) and urgent is not None:
                        break  # as below: the loop runs what the urgent message set going first
                    continue
                rc = paho._packet_read()  # PRIVATE: paho's packet parser, driven here instead of by loop_read()
                if rc == mqtt.MQTT_ERR_AGAIN:
                    if buf:
                        break  # paho stopped mid-packet with data still buffered: go on next turn
                    return
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    paho._loop_rc_handle(rc)  # PRIVATE: what loop_read() does on an error (closes, calls on_disconnect)
                    return
                if urgent is not None and urgent[0]:
                    urgent[0] = False
                    break  # the loop runs what the urgent message set going (its lane) before the next packet
            parked[0] = True
            loop.call_soon(resume)  # more may be buffered: let other tasks run first, then go on
        except Exception as exc:  # handed to aiomqtt as the reason the connection ended
            if not client._disconnected.done():  # PRIVATE: see _until_dropped
                client._disconnected.set_exception(exc)

    paho._sock_recv = recv  # type: ignore[method-assign]  # PRIVATE: paho's reads are served from our buffer
    loop.remove_reader(sock.fileno())
    loop.add_reader(sock.fileno(), on_readable)
