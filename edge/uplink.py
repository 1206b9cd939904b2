"""The uplink: one QoS 1 connection to the central broker that drains the outbox, alarms first.

How this works:
- On connect: the Last Will is GatewayStatus offline (retained), so the centre learns of a dead gateway at
  once; the first publish is GatewayStatus online (retained); then the gateway's command topic is read.
- Two lanes share the connection. The *alarm lane* takes LIFE_SAFETY rows the moment they are accepted and
  publishes them at once; it never waits for telemetry. The *bulk lane* sends STATUS then TELEMETRY rows
  through a sliding window of `inflight_window` unacknowledged messages, and starts nothing new while any
  life-safety row is waiting: after an outage every smoke/SOS event goes out before the telemetry backlog,
  and in normal running an alarm has at most `inflight_window` telemetry messages ahead of it on the wire.
- A row is deleted from the outbox only after its PUBACK. A lost connection (or a PUBACK not arriving
  within publish_timeout_s) ends the session; every unacknowledged row is sent again on the next one with
  its original bytes (msg_id, source_ts_ms), so the centre de-duplicates.
- TCP_NODELAY is set on the socket: Nagle must not hold a smoke event back waiting for an ACK.
- The connection is a broker.connection.ReconnectingClient: it reconnects with the jittered backoff of
  `uplink.reconnect_*`, subscribes to the command topic again, and runs `_session` while connected.
- The outbox's WAL checkpoints run in a thread beside the connection (`_checkpoints`), never inside a commit on
  the event loop (edge/outbox.py): an alarm accepted while the acker deletes a window of telemetry does not wait
  for a checkpoint's copy and fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt

from broker.connection import Link, ReconnectingClient
from broker.errors import ContractError
from broker.kinds import GatewayState, Priority
from broker.schemas import GatewayCommand, GatewayStatus, decode_message, encode
from broker.topics import TopicKind, command_filter, gateway_status_topic, parse_uplink
from edge.config import EdgeConfig
from edge.outbox import Outbox, OutboxError, OutboxRow

__all__ = ["CommandHandler", "Uplink"]

log = logging.getLogger("edge.uplink")

CommandHandler = Callable[[str, GatewayCommand], Awaitable[None]]
_P = Priority


class Uplink:
    def __init__(
        self, config: EdgeConfig, outbox: Outbox, *, now_ms: Callable[[], int], new_id: Callable[[], str], on_command: CommandHandler | None = None
    ) -> None:
        self.config = config
        self.cfg = config.uplink
        self.outbox = outbox
        self.now_ms = now_ms
        self.new_id = new_id
        self.on_command = on_command
        self.connected = asyncio.Event()
        self.connects = 0
        self.forwarded_total = 0
        self.last_error: str | None = None
        self._link: Link | None = None
        self._alarm_wake = asyncio.Event()
        self._bulk_wake = asyncio.Event()
        self._alarm_idle = asyncio.Event()
        self._ack_wake = asyncio.Event()
        self._acked: list[int] = []
        self._empty = asyncio.Event()
        self._closing = False
        self._checkpoint_due = asyncio.Event()
        outbox.defer_checkpoints(self._checkpoint_due.set)

    # -- called by the agent

    def notify(self, priorities: set[Priority]) -> None:
        """Rows of these priorities were just accepted."""
        if _P.LIFE_SAFETY in priorities:
            self._alarm_idle.clear()
            self._alarm_wake.set()
        if priorities - {_P.LIFE_SAFETY}:
            self._bulk_wake.set()

    async def publish_direct(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Publish outside the outbox (patrol heartbeats: a stale one is worth nothing). False if down."""
        link = self._link
        if link is None or not self.connected.is_set():
            return False
        try:
            await link.publish(topic, payload, qos=1, retain=retain, timeout_s=self.cfg.publish_timeout_s)
        except aiomqtt.MqttError as exc:
            log.info("direct publish to %s failed: %s", topic, exc)
            return False
        return True

    async def drain(self, timeout_s: float) -> bool:
        """Wait (real time: this is I/O) until the outbox is empty or the time is up."""
        if self.outbox.depth() > 0:
            self._empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout_s)
        return self.outbox.depth() == 0

    async def say_offline(self) -> None:
        """Clean shutdown: publish the retained offline status ourselves (a clean disconnect sends no Will)."""
        self._closing = True
        await self.publish_direct(gateway_status_topic(self.config.gateway), encode(self._status(GatewayState.OFFLINE)), retain=True)

    # -- the connection

    def _status(self, state: GatewayState) -> GatewayStatus:
        now = self.now_ms()
        return GatewayStatus(msg_id=self.new_id(), source_ts_ms=now, received_ts_ms=now, state=state, software=self.config.software)

    def _will(self) -> aiomqtt.Will:
        return aiomqtt.Will(gateway_status_topic(self.config.gateway), encode(self._status(GatewayState.OFFLINE)), qos=1, retain=True)

    def _connection(self) -> ReconnectingClient:
        cfg = self.cfg
        return ReconnectingClient(
            cfg.host, cfg.port, identifier=self.config.uplink_client_id(), backoff=cfg.backoff(), name="edge-uplink",
            username=cfg.username, password=cfg.password, will=self._will, clean_session=True, keepalive_s=cfg.keepalive_s,
            timeout_s=cfg.publish_timeout_s, max_inflight_messages=cfg.inflight_window + cfg.alarm_batch + 16,
            pending_calls_threshold=1 << 30,  # a full window is normal here, not worth a warning each time
            tcp_nodelay=cfg.tcp_nodelay, tls_ca_file=cfg.tls_ca_file, logger=logging.getLogger("edge.uplink.mqtt"),
            subscriptions=[(str(command_filter(self.config.gateway)), 1)], on_connect=self._say_online, session=self._session,
            before_connect=self._unless_closing, retry_on=(OutboxError,), on_lost=self._lost,
        )

    async def run(self) -> None:
        """Connect, drain, reconnect with backoff; forever (the agent cancels it). The outbox's checkpoints run beside."""
        async with asyncio.TaskGroup() as tg:
            checkpoints = tg.create_task(self._checkpoints(), name="uplink-outbox-checkpoints")
            await self._connection().run()
            checkpoints.cancel()

    async def _checkpoints(self) -> None:
        while True:
            await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            try:
                await asyncio.to_thread(self.outbox.checkpoint)
            except OutboxError as exc:  # commits go on (the WAL grows); the next one tries again
                log.warning("outbox checkpoint failed: %s", exc)

    async def _unless_closing(self) -> None:
        if self._closing:  # said offline on a clean stop: do not come back before the agent cancels us
            await asyncio.Event().wait()

    def _lost(self, errors: Sequence[BaseException]) -> None:
        self.last_error = "; ".join(str(e) or type(e).__name__ for e in errors)[:300]
        if any(isinstance(e, OutboxError) for e in errors):
            # The outbox cannot record what the centre acknowledged (a full or failing disk): the rows stay and go out
            # again after a reconnect; the centre drops the repeats by msg_id. Nothing is lost.
            log.error("uplink paused: %s; reconnecting", self.last_error)
        else:
            log.warning("uplink to %s:%d lost or refused: %s", self.cfg.host, self.cfg.port, self.last_error)

    async def _say_online(self, link: Link) -> None:
        await link.publish(gateway_status_topic(self.config.gateway), encode(self._status(GatewayState.ONLINE)), qos=1, retain=True)

    async def _session(self, link: Link) -> None:
        self.outbox.release_all()
        if self.outbox.pending(_P.LIFE_SAFETY):
            self._alarm_idle.clear()
        self._link = link
        self.connects += 1
        self.connected.set()
        log.info("uplink connected to %s:%d (%d messages waiting)", self.cfg.host, self.cfg.port, self.outbox.depth())
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._alarm_lane(link), name="uplink-alarm-lane")
                tg.create_task(self._bulk_lane(link), name="uplink-bulk-lane")
                tg.create_task(self._acker(), name="uplink-acker")
                tg.create_task(self._commands(link), name="uplink-commands")
        finally:
            self.connected.clear()
            self._link = None
            try:
                self._flush_acks()
            finally:
                self.outbox.release_all()

    async def _publish(self, link: Link, row: OutboxRow, slots: asyncio.Semaphore | None) -> None:
        try:
            await link.publish(row.topic, row.payload, qos=1, retain=row.retain, timeout_s=self.cfg.publish_timeout_s)
            self._acked.append(row.seq)
            self._ack_wake.set()
        finally:
            if slots is not None:
                slots.release()

    async def _alarm_lane(self, link: Link) -> None:
        while True:
            rows = self.outbox.take((_P.LIFE_SAFETY,), self.cfg.alarm_batch)
            if not rows:
                self._alarm_idle.set()
                self._alarm_wake.clear()
                await self._alarm_wake.wait()
                continue
            self._alarm_idle.clear()
            async with asyncio.TaskGroup() as tg:
                for row in rows:
                    tg.create_task(self._publish(link, row, None), name=f"uplink-alarm-{row.msg_id}")

    async def _bulk_lane(self, link: Link) -> None:
        slots = asyncio.Semaphore(self.cfg.inflight_window)
        async with asyncio.TaskGroup() as tg:
            while True:
                await self._alarm_idle.wait()
                rows = self.outbox.take((_P.STATUS, _P.TELEMETRY), self.cfg.inflight_window)
                if not rows:
                    self._bulk_wake.clear()
                    await self._bulk_wake.wait()
                    continue
                for row in rows:
                    await slots.acquire()
                    tg.create_task(self._publish(link, row, slots), name="uplink-bulk-publish")

    def _flush_acks(self) -> None:
        if self._acked:
            seqs, self._acked = self._acked, []
            try:
                self.outbox.ack(seqs)
            except OutboxError:
                self._acked = seqs + self._acked  # tried again at the next flush
                raise
            self.forwarded_total += len(seqs)
            if self.outbox.depth() == 0:
                self._empty.set()

    async def _acker(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            self._flush_acks()
            await asyncio.sleep(0.005)  # let acknowledgements gather: one DELETE transaction per few ms, not per message

    async def _commands(self, link: Link) -> None:
        async for message in link.messages:  # raises MqttError when the connection drops: ends the session
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else str(message.payload or "").encode()
            try:
                command = parse_uplink(topic).command or ""
                decoded = decode_message(TopicKind.COMMAND, bytes(payload), topic)
            except ContractError as exc:
                log.warning("ignored a command that does not meet the contract on %s: %s", topic, exc)
                continue
            assert isinstance(decoded, GatewayCommand)
            if self.on_command is not None:
                await self.on_command(command, decoded)
