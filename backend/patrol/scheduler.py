"""The patrol scheduler: sends each gateway its patrol command, hears the answers, alarms when one does not come back.

How this works: `PatrolScheduler` is an async context manager owning a TaskGroup with one named task,
`patrol-scheduler`. It publishes through the backend's publisher or, alone, its own reconnecting client
(broker.connection) to the central broker, and holds a `PatrolBook`
(backend/patrol/book.py). `step()` does everything due at the clock's `now`: expire patrols past their
deadline (each a `patrol_missed` alarm through the sink), then send the patrols due (GatewayCommand on
`command_topic(gateway, "patrol")`, QoS 1, `cmd_id` = patrol id). The task calls `step()` and sleeps on the
injected clock (broker.clock) until the book's next wake-up; tests drive `step()` themselves on a virtual clock.
The backend hands in its own clock: on a drill's scaled clock the scheduler sleeps drill time, `speed` times faster.

The answers come back through ingest like every uplink: whoever handles PatrolHeartbeats (the alarm service,
or `PatrolTap` wrapped around the ingest feed) calls `heartbeat(gateway, patrol_id, received_ms)`; a known
patrol id closes that patrol, and a gateway that had missed patrols gets its alarm cleared.

Errors:

    PatrolError
     └── PatrolBrokerUnreachable   the scheduler could not connect to the broker within connect_timeout_s
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self

import aiomqtt

from backend.errors import BackendError
from backend.ingest.handoff import AlertingFeed, BatchFeed, Reading
from backend.patrol.book import PatrolBook, PatrolMiss, PatrolReturn, PatrolSent, PatrolSettings
from broker.clock import Clock, SystemClock
from broker.connection import Backoff, BrokerUnreachable, ReconnectingClient
from broker.mosquitto import login_bound_client_id
from broker.schemas import GatewayCommand, PatrolHeartbeat, Uplink, encode
from broker.topics import command_topic

__all__ = ["PatrolAlarmSink", "PatrolBrokerUnreachable", "PatrolError", "PatrolScheduler", "PatrolTap"]

log = logging.getLogger(__name__)
PATROL_COMMAND = "patrol"


class PatrolError(BackendError, RuntimeError):
    pass


class PatrolBrokerUnreachable(PatrolError):
    def __init__(self, host: str, port: int, why: str) -> None:
        self.host, self.port, self.why = host, port, why
        super().__init__(f"the patrol scheduler cannot reach mqtt://{host}:{port}: {why}")


class PatrolAlarmSink(Protocol):
    async def patrol_missed(self, miss: PatrolMiss, now_ms: int) -> None: ...

    async def patrol_returned(self, ret: PatrolReturn, now_ms: int) -> None: ...


class PatrolScheduler:
    def __init__(self, gateways: Iterable[str], host: str, port: int, sink: PatrolAlarmSink, *, settings: PatrolSettings | None = None,
                 clock: Clock | None = None, client_id: str = "shouwang-patrol", username: str | None = None,
                 password: str | None = None, connect_timeout_s: float = 30.0, max_sleep_s: float = 60.0,
                 publish: Callable[[str, bytes, int], Awaitable[None]] | None = None, backoff: Backoff | None = None) -> None:
        self.settings = settings or PatrolSettings()
        self.clock: Clock = clock or SystemClock()
        self.book = PatrolBook(gateways, self.settings, self.clock.now_ms())
        self.sink = sink
        self.host, self.port = host, port
        self._client_id, self._username, self._password = login_bound_client_id(client_id, password), username, password
        self._connect_timeout_s = connect_timeout_s
        self._max_sleep_s = max_sleep_s  # re-check at least this often (a clock jump, a new deadline)
        self.ready = asyncio.Event()
        self.sent: list[PatrolSent] = []
        self.returns: list[PatrolReturn] = []
        self.misses: list[PatrolMiss] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._mqtt: ReconnectingClient | None = None
        self._backoff = backoff or Backoff()
        # The backend hands in its reconnecting publisher (backend.notify.publisher); alone, the scheduler
        # keeps a connection of its own.
        self._publish = publish
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        try:
            if self._publish is None:
                self._mqtt = await self._stack.enter_async_context(ReconnectingClient(
                    self.host, self.port, identifier=self._client_id, username=self._username, password=self._password,
                    backoff=self._backoff, name="patrol-scheduler-mqtt"))
                await self._mqtt.wait_ready(self._connect_timeout_s)
            tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        except BrokerUnreachable as exc:
            await self._stack.aclose()
            raise PatrolBrokerUnreachable(self.host, self.port, exc.why or "timed out") from exc
        self._task = tg.create_task(self._run(), name="patrol-scheduler")
        self.ready.set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _run(self) -> None:
        while True:
            await self.step()
            wake = self.book.next_wakeup_ms()
            now = self.clock.now_ms()
            until = now + round(self._max_sleep_s * 1000) if wake is None else min(wake, now + round(self._max_sleep_s * 1000))
            self._wake.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep_until_ms(until))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for f in (sleeper, waker):
                    f.cancel()

    def wake(self) -> None:
        """Re-check now (a test moved the manual clock)."""
        self._wake.set()

    async def step(self) -> tuple[list[PatrolMiss], list[PatrolSent]]:
        """Expire overdue patrols (alarms), then send the ones due. Returns what it did."""
        async with self._lock:
            now = self.clock.now_ms()
            misses = self.book.expire(now)
            for miss in misses:
                log.warning("patrol %s to gateway %s did not come back by its deadline", miss.patrol_id, miss.gateway)
                self.misses.append(miss)
                await self.sink.patrol_missed(miss, now)
            due = self.book.due(now)
        for sent in due:
            await self._send(sent)
            self.sent.append(sent)
        return misses, due

    async def _send(self, sent: PatrolSent) -> None:
        cmd = GatewayCommand(cmd_id=sent.patrol_id, issued_ts_ms=sent.sent_ms, args={"window_s": self.settings.window_s})
        topic, payload = str(command_topic(sent.gateway, PATROL_COMMAND)), encode(cmd)
        try:
            if self._publish is not None:
                await self._publish(topic, payload, 1)
            else:
                assert self._mqtt is not None, "use `async with PatrolScheduler(...)`"
                await self._mqtt.publish(topic, payload, qos=1)
        except aiomqtt.MqttError:  # the centre's own broker link is down: the deadline reports the patrol as missed
            log.exception("could not send patrol %s to %s", sent.patrol_id, sent.gateway)

    async def heartbeat(self, gateway: str, patrol_id: str | None, received_ms: int) -> PatrolReturn | None:
        """The ingest hook: a PatrolHeartbeat from `gateway` arrived. Periodic heartbeats (no patrol id) are ignored."""
        if not patrol_id:
            return None
        async with self._lock:
            ret = self.book.answered(gateway, patrol_id, received_ms)
            if ret is None:
                return None
            self.returns.append(ret)
            if ret.was_missing:
                log.info("gateway %s answers its patrol again", gateway)
            # Every answer, not only after misses this schedule saw: an alarm left open across a restart or a change
            # of rules leader (a fresh schedule knows no misses) clears on the gateway's first answer.
            await self.sink.patrol_returned(ret, received_ms)
        return ret


class PatrolTap:
    """An AlertingFeed in front of another: hands patrol answers to the scheduler, then everything on unchanged."""

    def __init__(self, scheduler: PatrolScheduler, inner: AlertingFeed | None = None) -> None:
        self.scheduler = scheduler
        self.inner = inner

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        msg = uplink.message
        if isinstance(msg, PatrolHeartbeat) and msg.patrol_id:
            await self.scheduler.heartbeat(uplink.topic.gateway, msg.patrol_id, received_ms)
        if self.inner is not None:
            await self.inner.on_uplink(uplink, received_ms)

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> asyncio.Future[None] | None:
        """Keep the inner feed's batching (backend.ingest.handoff.BatchFeed) when there is one, and its sync's future."""
        for uplink, received_ms in items:
            msg = uplink.message
            if isinstance(msg, PatrolHeartbeat) and msg.patrol_id:
                await self.scheduler.heartbeat(uplink.topic.gateway, msg.patrol_id, received_ms)
        if isinstance(self.inner, BatchFeed):
            return await self.inner.on_uplink_batch(items, more_coming=more_coming)
        if self.inner is not None:
            for uplink, received_ms in items:
                await self.inner.on_uplink(uplink, received_ms)
        return None

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        if self.inner is not None:
            await self.inner.on_readings(readings)
