"""The edge agent of one gateway: LAN devices in, through the adapters and the outbox, out to the centre.

How this works (one asyncio.TaskGroup owned by `EdgeAgent`, every task named):

    lan-intake      reads the building's broker (a broker.connection.ReconnectingClient: jittered backoff from
                    `lan.reconnect_*`) on a persistent session (clean_session false) with QoS 1
                    and *manual* acknowledgement: a batch of messages is adapted, committed to the outbox in
                    one transaction, and only then acknowledged to the LAN broker. kill -9 at any instant
                    loses nothing: what was committed is in the outbox, what was not is redelivered.
    uplink          drains the outbox to the central broker (see edge/uplink.py): alarms first, rows
                    deleted only after PUBACK, Last Will = gateway offline.
    patrol          a PatrolHeartbeat every patrol.period_s on the injected clock (not stored: a stale
                    heartbeat is worth nothing), and at once when the centre sends a `patrol` command.
    liveness        every check_every_s, silent devices past interval × misses become OFFLINE messages.
    status-file     a JSON snapshot for `shouwang edge status`.

Retained is the last state, not a new sample: a message the LAN broker delivers with the retain flag set is a
replay of a device's last publish (on our (re)subscribe: MQTT sets the flag only then, never on live traffic).
Its events and availability still count (latches make an already-known state a no-op, and a detector that
began alarming while the agent was away still raises), but its readings are withheld and it does not make the
device "heard": an old 312.5 mA reading replayed at a restart must not become a fresh sample for a two-sample
rule, nor a dead device alive. Counted as `retained_readings_withheld`.

Local autonomy: a life-safety event accepted while the uplink is down also publishes the configured local
action (a sounder or relay topic) on the LAN broker, so the building is warned with no centre.
Shutdown in order: stop intake, drain the outbox (shutdown_drain_s), publish the retained offline status,
disconnect. Readiness is explicit: `lan_ready` and `uplink.connected` are events, not sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from itertools import count
from types import TracebackType
from typing import Any, Self

import aiomqtt

from broker.clock import Clock, SystemClock
from broker.connection import Link, ReconnectingClient
from broker.ids import DeviceId
from broker.kinds import LIFE_SAFETY_EVENTS
from broker.schemas import DeviceAvailability, DeviceEvent, GatewayCommand, PatrolHeartbeat, Telemetry, encode, priority_of
from broker.topics import availability_topic, event_topic, patrol_topic, telemetry_topic
from edge.adapters import Context, Mapped, Outcome, RejectCode, Rejected, Router, build_adapters
from edge.config import EdgeConfig, device_interval_s, device_misses
from edge.liveness import Expectation, Liveness, Transition
from edge.outbox import Outbox, OutboxError, PendingRow
from edge.status import Ledger, write_status
from edge.uplink import Uplink

__all__ = ["EdgeAgent", "MessageIds"]

log = logging.getLogger("edge.agent")


class MessageIds:
    """Message ids unique across restarts: gateway, a random boot id, a counter ("gw-b01:5f0c9a3e21b4:1a")."""

    def __init__(self, gateway: str) -> None:
        self._prefix = f"{gateway[:40]}:{secrets.token_hex(6)}:"
        self._n = count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._n):x}"


class EdgeAgent:
    def __init__(self, config: EdgeConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.ids = MessageIds(config.gateway)
        self.outbox = Outbox(
            config.outbox.path,
            max_telemetry_rows=config.outbox.max_telemetry_rows,
            max_bytes=config.outbox.max_bytes,
            synchronous=config.outbox.synchronous,
        )
        self.adapters = build_adapters(config)
        self.router = Router(self.adapters)
        self.ledger = Ledger()
        self.uplink = Uplink(config, self.outbox, now_ms=self.clock.now_ms, new_id=self.ids.new, on_command=self._command)
        self.lan_ready = asyncio.Event()
        self.started_ms = self.clock.now_ms()
        self.liveness = Liveness(self._expectations(), self.started_ms)
        self.lan_connects = 0
        self.outbox_failures = 0  # batches the outbox could not commit (LAN ones left unacknowledged on the LAN broker)
        self.local_actions_total = 0
        self.patrols_sent = 0
        self.patrols_skipped = 0
        self.availability_suppressed = 0
        self.retained_readings_withheld = 0
        self._patrol_seq = 0
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def _expectations(self) -> list[Expectation]:
        out = []
        live = self.config.liveness
        for a in self.config.adapters:
            for d in a.devices.values():
                out.append(Expectation(DeviceId(d.id), device_interval_s(live, d), device_misses(live, d)))
                out.extend(
                    Expectation(DeviceId(e.device), live.interval_for(e.kind), live.misses_for(e.kind))
                    for e in d.entities.values()
                    if e.device is not None and e.kind is not None
                )
        return out

    # -- lifecycle

    def open_state(self) -> None:
        """Open the outbox and take back what the agent kept across a restart: the patrol sequence, and the
        latches that were raised (a detector alarming when the agent stopped must still send its clear)."""
        self.outbox.open()
        self._patrol_seq = self.outbox.counter("patrol_seq")
        raised = self.outbox.raised_latches()
        for adapter in self.adapters:
            adapter.latches.restore(raised.get(adapter.name, ()))

    async def __aenter__(self) -> Self:
        self.open_state()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for name, coro in (
            ("lan-intake", self._lan()),
            ("uplink", self.uplink.run()),
            ("patrol", self._patrol()),
            ("liveness", self._liveness()),
            ("status-file", self._status_loop()),
        ):
            self._tasks[name] = self._tg.create_task(coro, name=f"edge-{name}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._tg is not None
        try:
            self._tasks["lan-intake"].cancel()  # stop intake: unacknowledged LAN messages stay with the LAN broker
            with contextlib.suppress(asyncio.CancelledError):
                await self._tasks["lan-intake"]
            if exc_type is None:
                await self.uplink.drain(self.config.uplink.shutdown_drain_s)
                await self.uplink.say_offline()
            for name, task in self._tasks.items():
                if name != "lan-intake":
                    task.cancel()
            await self._tg.__aexit__(None, None, None)
        finally:
            with contextlib.suppress(OSError):
                write_status(self.config.status_path, self.status())
            self.outbox.close()

    async def run_forever(self) -> None:
        await asyncio.Event().wait()

    # -- LAN intake

    def _lan_connection(self) -> ReconnectingClient:
        cfg = self.config.lan
        return ReconnectingClient(
            cfg.host, cfg.port, identifier=self.config.lan_client_id(), backoff=cfg.backoff(), name="edge-lan",
            username=cfg.username, password=cfg.password,
            clean_session=False,  # a persistent session: what we have not acknowledged is redelivered
            keepalive_s=cfg.keepalive_s, tls_ca_file=cfg.tls_ca_file, logger=logging.getLogger("edge.lan.mqtt"),
            manual_ack=True, subscriptions=[(f, 1) for f in self.router.filters()], session=self._lan_session,
            retry_on=(OutboxError,), on_lost=self._lan_lost,
        )

    async def _lan(self) -> None:
        await self._lan_connection().run()

    def _lan_lost(self, errors: Sequence[BaseException]) -> None:
        for exc in errors:
            if isinstance(exc, OutboxError):
                # Nothing of the batch was acknowledged: leaving the session keeps it on the LAN broker, which delivers
                # it again when we are back (a persistent session), by when the disk may take it.
                self.outbox_failures += 1
                log.error("%s; the batch stays unacknowledged on the LAN broker, reconnecting", exc)
            else:
                log.warning("LAN broker %s:%d lost or refused: %s", self.config.lan.host, self.config.lan.port, exc)

    async def _lan_session(self, link: Link) -> None:
        self.lan_connects += 1
        self.lan_ready.set()
        log.info("LAN broker %s:%d: subscribed to %d prefixes", self.config.lan.host, self.config.lan.port, len(self.router.filters()))
        try:
            await self._intake(link)
        finally:
            self.lan_ready.clear()

    async def _intake(self, link: Link) -> None:
        messages = link.messages
        batch_max = self.config.lan.batch_max
        while True:
            batch = [await anext(messages)]
            while len(batch) < batch_max and len(messages) > 0:
                batch.append(await anext(messages))
            actions = self.accept_lan(batch)
            link.ack([m.mid for m in batch if m.qos > 0])  # after the commit, in arrival order (MQTT wants PUBACKs in order)
            for topic, payload in actions:
                await self._local_action(link, topic, payload)

    def _route(self, topic: str, payload: bytes, retained: bool, ctx: Context) -> Outcome:
        """The router's outcome; an adapter that fails on a message (a bug, whatever the input) costs that message
        only: it is rejected, counted and logged with its traceback, and the messages around it go on."""
        try:
            return self.router.route(topic, payload, retained, ctx)
        except Exception as exc:
            owner = self.router.owner(topic)
            log.exception("adapter %s failed on a message on %s (%d bytes); rejected", owner.name if owner else "router", topic, len(payload))
            return Rejected(owner.name if owner else "router", RejectCode.ADAPTER_ERROR, f"{type(exc).__name__}: {exc}"[:300], topic=topic)

    def accept_lan(self, batch: list[aiomqtt.Message]) -> list[tuple[str, bytes]]:
        """Adapt a batch and commit what it produces; return the local actions to publish on the LAN."""
        now = self.clock.now_ms()
        ctx = Context(now, self.ids.new)
        rows: list[PendingRow] = []
        life_safety: list[tuple[DeviceId, DeviceEvent]] = []
        with self.liveness.staged():
            for m in batch:
                payload = m.payload if isinstance(m.payload, bytes | bytearray) else str(m.payload if m.payload is not None else "").encode()
                replayed = bool(m.retain)
                outcome = self._route(str(m.topic), bytes(payload), replayed, ctx)
                self.ledger.record(outcome)
                if not isinstance(outcome, Mapped):
                    continue
                for dev in outcome.rearmed:
                    self.liveness.rearm(dev, now)
                for routed in outcome.messages:
                    msg = routed.message
                    if replayed and isinstance(msg, Telemetry):
                        self.retained_readings_withheld += 1  # the last state, not a new sample (see the module docstring)
                        continue
                    if isinstance(msg, DeviceAvailability) and not self.liveness.observe(routed.device, msg.state, now):
                        self.availability_suppressed += 1
                        continue
                    if isinstance(msg, DeviceEvent) and msg.event in LIFE_SAFETY_EVENTS:
                        life_safety.append((routed.device, msg))
                    rows.append(self._row(routed.device, msg))
                for dev in () if replayed else outcome.heard:
                    t = self.liveness.heard(dev, now)
                    if t is not None:
                        rows.append(self._row(dev, self._availability(t, now)))
            latches = {a.name: changed for a in self.adapters if (changed := a.latches.drain())}
            try:
                self._commit(rows, now, latches)
            except OutboxError:
                # Not stored: the edges these messages made must be edges again when they are redelivered, or a detector
                # that keeps reporting smoke would be taken for a repeat and its alarm never sent (liveness is undone
                # by its `staged` block the same way, so a device's "reporting again" is not lost either).
                for a in self.adapters:
                    a.latches.revert(latches.get(a.name, {}))
                raise
        return self._local_actions(life_safety)

    def _row(self, device: DeviceId, msg: Telemetry | DeviceEvent | DeviceAvailability) -> PendingRow:
        gw = self.config.gateway
        if isinstance(msg, Telemetry):
            topic = telemetry_topic(gw, device)
        elif isinstance(msg, DeviceEvent):
            topic = event_topic(gw, device)
        else:
            topic = availability_topic(gw, device)
        return PendingRow(priority_of(msg), topic, encode(msg), msg.msg_id, retain=isinstance(msg, DeviceAvailability))

    def _availability(self, t: Transition, now: int) -> DeviceAvailability:
        return DeviceAvailability(msg_id=self.ids.new(), source_ts_ms=now, received_ts_ms=now, state=t.state, reason=t.reason)

    def _commit(self, rows: list[PendingRow], now: int, latches: dict[str, dict[tuple[str, str], bool]] | None = None) -> None:
        if not rows and not latches:
            return
        evicted = self.outbox.accept(rows, now, latches)
        if evicted:
            log.warning("outbox over its bound: evicted the %d oldest telemetry messages (%d in all)", evicted, self.outbox.stats().evicted_total)
        self.uplink.notify({r.priority for r in rows})

    # -- local autonomy

    def _local_actions(self, events: list[tuple[DeviceId, DeviceEvent]]) -> list[tuple[str, bytes]]:
        action = self.config.local_action
        if action is None or not events or self.uplink.connected.is_set():
            return []
        return [
            (action.topic, action.payload.replace("{device}", str(dev)).replace("{event}", ev.event.value).encode())
            for dev, ev in events
            if ev.event in action.events
        ]

    async def _local_action(self, link: Link, topic: str, payload: bytes) -> None:
        action = self.config.local_action
        assert action is not None
        try:
            await link.publish(topic, payload, qos=action.qos, retain=action.retain)
            self.local_actions_total += 1
            log.warning("uplink down: local action published to %s", topic)
        except aiomqtt.MqttError:
            log.exception("local action to %s failed", topic)

    # -- patrol, liveness, status

    async def _patrol(self) -> None:
        while True:
            await self.clock.sleep_ms(round(self.config.patrol.period_s * 1000))
            await self.send_patrol()

    async def send_patrol(self, patrol_id: str | None = None) -> bool:
        now = self.clock.now_ms()
        self._patrol_seq += 1
        self.outbox.set_counter("patrol_seq", self._patrol_seq)
        beat = PatrolHeartbeat(
            msg_id=self.ids.new(),
            source_ts_ms=now,
            received_ts_ms=now,
            seq=self._patrol_seq,
            period_s=self.config.patrol.period_s,
            outbox_depth=self.outbox.depth(),
            rejected_total=self.ledger.rejected_total,
            patrol_id=patrol_id,
        )
        sent = await self.uplink.publish_direct(patrol_topic(self.config.gateway), encode(beat))
        if sent:
            self.patrols_sent += 1
        else:
            self.patrols_skipped += 1
        return sent

    async def _command(self, name: str, command: GatewayCommand) -> None:
        if name == "patrol":
            await self.send_patrol(patrol_id=command.cmd_id)
        else:
            log.info("command %r (%s) is not handled by this edge agent", name, command.cmd_id)

    async def _liveness(self) -> None:
        while True:
            await self.clock.sleep_ms(round(self.config.liveness.check_every_s * 1000))
            try:
                self.check_liveness()
            except OutboxError as exc:
                self.outbox_failures += 1
                log.error("%s; the offline transitions are undone and found again at the next check", exc)  # noqa: TRY400 (the reason is enough)

    def check_liveness(self) -> list[Transition]:
        now = self.clock.now_ms()
        with self.liveness.staged():
            transitions = self.liveness.check(now)
            self._commit([self._row(t.device, self._availability(t, now)) for t in transitions], now)
        for t in transitions:
            log.warning("device %s offline: %s", t.device, t.reason)
        return transitions

    async def _status_loop(self) -> None:
        while True:
            try:
                write_status(self.config.status_path, self.status())
            except OSError as exc:
                log.warning("cannot write the status file %s: %s", self.config.status_path, exc)
            await self.clock.sleep_ms(round(self.config.status.every_s * 1000))

    def status(self) -> dict[str, Any]:
        ob = self.outbox.stats()
        return {
            "gateway": self.config.gateway,
            "written_ms": self.clock.now_ms(),
            "started_ms": self.started_ms,
            "lan": {"connected": self.lan_ready.is_set(), "connects": self.lan_connects, "outbox_failures": self.outbox_failures,
                    "host": self.config.lan.host, "port": self.config.lan.port},
            "uplink": {
                "connected": self.uplink.connected.is_set(),
                "connects": self.uplink.connects,
                "forwarded_total": self.uplink.forwarded_total,
                "last_error": self.uplink.last_error,
                "host": self.config.uplink.host,
                "port": self.config.uplink.port,
            },
            "outbox": {
                "depth": {p.name.lower(): n for p, n in ob.depth.items()},
                "stored_bytes": ob.stored_bytes,
                "in_flight": ob.in_flight,
                "accepted_total": ob.accepted_total,
                "acked_total": ob.acked_total,
                "evicted_total": ob.evicted_total,
                "over_bound": ob.over_bound,
            },
            "intake": {
                "lan_messages": self.ledger.lan_messages,
                "mapped": self.ledger.mapped,
                "nothing_to_forward": self.ledger.silent,
                "rejected_total": self.ledger.rejected_total,
                "rejected_by_adapter": self.ledger.by_adapter(),
                "availability_repeats_suppressed": self.availability_suppressed,
                "retained_readings_withheld": self.retained_readings_withheld,
            },
            "rejections": self.ledger.rejections()[:100],
            "liveness": self.liveness.summary(),
            "patrol": {
                "seq": self._patrol_seq,
                "sent": self.patrols_sent,
                "skipped_uplink_down": self.patrols_skipped,
                "period_s": self.config.patrol.period_s,
            },
            "local_actions_total": self.local_actions_total,
        }
