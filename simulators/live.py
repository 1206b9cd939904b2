"""Publish a simulated community to a real broker, as its gateways, at real reporting rates (or faster).

How this works:
  CommunitySimulator (an async context manager owning a TaskGroup)
    ├─ task "sim-gateway-{id}", one per gateway: a GatewayLink holding one aiomqtt connection that speaks as
    │  that gateway. It connects with a Last Will (retained GatewayStatus offline), publishes its retained
    │  GatewayStatus online, then publishes whatever the generator queues for it; on a lost connection it
    │  reconnects (broker.connection: jittered backoff) keeping its queue (a gateway buffers while its uplink is down).
    └─ task "sim-generator": advances the Fleet in fixed steps of simulated time, sleeping on the injected
       clock until each step's end, encodes the step and hands each message to its gateway's link. With
       `demo` (DemoEvents, what `shouwang run` does by default) it first injects each demo round that is due,
       on the same simulated clock, so a test at a high speed sees the first minutes in seconds.
  Readiness: `ready` is set once every link has connected and published its status.
  Shutdown, in order: stop the generator, let each link drain its queue and publish a clean retained
  offline status (unless farewell=False: a drill speaking beside a running system's real gateways), disconnect.
  Invariants: one connection per gateway and only that gateway's topics on it; the simulated time of the
  fleet only moves forward in steps of `step_s`, so a run is deterministic for a given seed and clock.

Errors:
    SimulatorError
     └─ BrokerUnreachable     the links did not all connect within the connect timeout
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, Self

import aiomqtt

from backend.sites.model import Device, SiteDirectory
from broker.clock import Clock, ScaledClock
from broker.connection import Backoff, Link, ReconnectingClient
from broker.errors import MessageRejected
from broker.kinds import DeviceKind, EventKind, GatewayState
from broker.schemas import DeviceEvent, GatewayCommand, decode_message, encode
from broker.topics import TopicKind, command_filter, event_topic
from simulators.dialects import DialectTopics, MixedEncoder
from simulators.fleet import Fleet, UnknownTarget
from simulators.native import NativeEncoder, Outgoing, native_event
from simulators.records import Step
from simulators.signals import SimulationProfile

__all__ = [
    "BrokerUnreachable",
    "CommunitySimulator",
    "DemoEvents",
    "DemoRounds",
    "GatewayLink",
    "PublishStats",
    "SimulatorError",
    "publish_event",
    "run_community",
]

log = logging.getLogger(__name__)

DialectMode = Literal["native", "mixed"]


class SimulatorError(RuntimeError):
    pass


class BrokerUnreachable(SimulatorError):
    def __init__(self, host: str, port: int, connected: int, total: int) -> None:
        self.host, self.port, self.connected, self.total = host, port, connected, total
        super().__init__(f"only {connected} of {total} gateway connections to mqtt://{host}:{port} came up")


class StepEncoder(Protocol):
    def step(self, step: Step, by_device: dict[str, Device]) -> Iterator[Outgoing]: ...

    def birth(self, gateway: str, t: float) -> list[Outgoing]: ...


class _NativeOnly:
    def __init__(self, native: NativeEncoder) -> None:
        self.native = native

    def step(self, step: Step, by_device: dict[str, Device]) -> Iterator[Outgoing]:
        return self.native.step(step, by_device)

    def birth(self, gateway: str, t: float) -> list[Outgoing]:
        return []


@dataclass(slots=True)
class PublishStats:
    """Counters of a run (mutable on purpose: the links and the generator update them)."""

    sent: Counter[str] = field(default_factory=Counter)  # by label: electrical, camera, event, ...
    dropped: int = 0  # queued while a link was down and its queue was full
    reconnects: int = 0
    steps: int = 0
    sim_time: float = 0.0
    lag_s: float = 0.0  # how far simulated time trails the clock (the generator cannot keep up if it grows)
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


DEMO_SMOKE_DETAIL = "演示：模拟烟感报警，并非真实火情（demo smoke alarm, not a real fire）"


@dataclass(frozen=True, slots=True)
class DemoEvents:
    """Occasional happenings of the sample community, so a newcomer sees the system at work (docs/simulators.md).

    Offsets count from the start of each round in simulated seconds; the first round starts with the simulator.
    A smoke detector's battery runs low (battery_at_s). A camera loses its link for camera_outage_s from
    camera_at_s: its gateway declares it offline after three missed keepalives (GB/T 28181, 3 x 60 s) and online
    again when it is back. A unit's distribution box's residual current rises leakage_ma_per_min from
    leakage_at_s past the 300 mA setting (a pre-warning, 电气火灾预警 / 剩余电流超限) and an electrician repairs it
    leakage_s later, before it reaches the 500 mA critical level. Only with smoke=True: a demo smoke alarm at
    smoke_at_s, drill-marked and saying 演示 in its detail (the console shows it as a drill, drill notices never
    reach outside channels), cleared smoke_s later. Every every_s a new round picks other devices.
    """

    every_s: float = 1800.0
    battery_at_s: float = 60.0
    camera_at_s: float = 90.0  # after the camera's first keepalives: one never heard from is "not yet commissioned", not offline
    camera_outage_s: float = 240.0
    leakage_at_s: float = 45.0
    leakage_ma_per_min: float = 90.0  # from a few mA past 300 mA in ~3.3 min; two 60 s reports above it before the repair
    leakage_s: float = 324.0  # peak ~ 5 + 90 x 5.4 = 491 mA: a pre-warning, never the 500 mA critical level
    smoke: bool = False
    smoke_at_s: float = 120.0
    smoke_s: float = 90.0


class DemoRounds:
    """Which devices each demo round uses (seeded, from the gateways this simulator speaks for) and when rounds are due."""

    def __init__(self, demo: DemoEvents, fleet: Fleet, gateways: Collection[str], seed: int) -> None:
        self.demo, self.fleet = demo, fleet
        rng = random.Random(seed)
        mine = [d for d in fleet.devices if d.gateway in set(gateways)]

        def pick(devices: list[Device]) -> list[str]:
            ids = [d.id for d in devices]
            rng.shuffle(ids)
            return ids

        electrical = [d for d in mine if d.kind is DeviceKind.ELECTRICAL]
        boxes = [d for d in electrical if d.household is None and d.report_interval_s <= 60] or electrical  # a unit's box reports each minute
        self.boxes = pick(boxes)
        self.cameras = pick([d for d in mine if d.kind is DeviceKind.CAMERA])
        self.smokes = pick([d for d in mine if d.kind is DeviceKind.SMOKE])
        self.start = fleet.t
        self.rounds = 0

    def inject_due(self, until: float) -> None:
        """Inject every round that starts at or before simulated time `until`."""
        d, f = self.demo, self.fleet
        while self.start + self.rounds * d.every_s <= until:
            k, t = self.rounds, self.start + self.rounds * d.every_s
            self.rounds += 1
            if self.smokes:
                f.low_battery(self.smokes[k % len(self.smokes)], at=t + d.battery_at_s)
            if self.cameras:
                camera = self.cameras[k % len(self.cameras)]
                heard = 1.5 * f.devices[f.index[camera]].report_interval_s  # its first keepalive has reached the centre
                f.camera_outage(camera, at=t + max(d.camera_at_s, heard), duration_s=d.camera_outage_s)
            if self.boxes:
                f.leakage_drift(self.boxes[k % len(self.boxes)], at=t + d.leakage_at_s, ma_per_h=d.leakage_ma_per_min * 60.0,
                                duration_s=d.leakage_s)
            if d.smoke and self.smokes:
                smoke = self.smokes[(k + 1) % len(self.smokes)]  # not the detector whose battery is low
                f.smoke_alarm(smoke, at=t + d.smoke_at_s, duration_s=d.smoke_s, drill=True, detail=DEMO_SMOKE_DETAIL)
            log.info("demo round %d injected (docs/simulators.md; simulate.demo_events = false turns it off)", k + 1)


# A simulated gateway comes back as a real one would (edge/config.py's uplink defaults, a shorter ceiling: a test waits)
LINK_BACKOFF = Backoff(initial_s=0.5, maximum_s=10.0, jitter=0.5)


class GatewayLink:
    """One MQTT connection speaking as one gateway."""

    def __init__(
        self,
        gateway: str,
        host: str,
        port: int,
        *,
        encoder: NativeEncoder,
        clock: Clock,
        stats: PublishStats,
        client_id: str,
        birth: Callable[[float], list[Outgoing]] = lambda t: [],
        username: str | None = None,
        password: str | None = None,
        queue_size: int = 10_000,
        backoff: Backoff = LINK_BACKOFF,
        farewell: bool = True,
    ) -> None:
        self.gateway = gateway
        self._farewell = farewell  # False: leave without a retained offline status (the real gateway is still there)
        self.host, self.port = host, port
        self._encoder, self._clock, self._stats = encoder, clock, stats
        self._patrol_answers = 0
        self._client_id, self._birth = client_id, birth
        self._username, self._password = username, password
        self._backoff = backoff
        self.queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(maxsize=queue_size)
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._mqtt: ReconnectingClient | None = None
        self._cut_until = -1.0

    async def offer(self, out: Outgoing) -> None:
        """Queue a message; wait for room while connected, drop (and count) while the uplink is down."""
        if self.connected.is_set():
            await self.queue.put(out)
            return
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            self._stats.dropped += 1

    def close(self) -> None:
        """Ask the link to drain, publish a clean offline status and disconnect."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def cut(self, until: float) -> None:
        """Drop the connection without a DISCONNECT (the broker publishes the Last Will) and stay away until
        simulated time `until`, buffering meanwhile, like a gateway whose uplink cable was pulled."""
        self._cut_until = until
        if self._mqtt is not None:
            self._mqtt.abort()

    async def run(self) -> None:
        self._mqtt = ReconnectingClient(
            self.host, self.port, identifier=self._client_id, username=self._username, password=self._password, backoff=self._backoff,
            name=f"sim-gateway-{self.gateway}", will=self._will, keepalive_s=30,  # TCP_NODELAY: docs/measured.md, Nagle costs ~9 ms a hop
            subscriptions=[(str(command_filter(self.gateway)), 1)], before_connect=self._stay_away_while_cut, on_connect=self._say_online,
            session=self._session, on_lost=self._lost,
        )
        await self._mqtt.run()  # returns once the session has said farewell

    async def _stay_away_while_cut(self) -> None:
        if self._clock.now_ms() / 1000 < self._cut_until:
            await self._clock.sleep_until_ms(round(self._cut_until * 1000))

    def _will(self) -> aiomqtt.Will:
        will = self._encoder.gateway_status(self.gateway, self._clock.now_ms() / 1000, GatewayState.OFFLINE)
        return aiomqtt.Will(will.topic, will.payload, qos=1, retain=True)

    def _lost(self, errors: Sequence[BaseException]) -> None:
        self.connected.clear()
        self._stats.reconnects += 1
        log.debug("gateway %s: %s; reconnecting", self.gateway, "; ".join(map(str, errors)))

    async def _say_online(self, link: Link) -> None:
        now = self._clock.now_ms() / 1000
        for out in [self._encoder.gateway_status(self.gateway, now, GatewayState.ONLINE), *self._birth(now)]:
            await link.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
            self._stats.sent[out.label] += 1

    async def _session(self, link: Link) -> None:
        self.connected.set()
        commands = asyncio.create_task(self._answer_commands(link), name=f"sim-commands-{self.gateway}")
        try:
            await self._publish_queued(link)
        finally:
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands

    async def _answer_commands(self, client: Link) -> None:
        """Answer the centre's patrol command as a real edge agent does: a PatrolHeartbeat with its patrol id."""
        with contextlib.suppress(aiomqtt.MqttError):  # the connection dropped: the session loop reconnects
            async for message in client.messages:
                if not str(message.topic).endswith("/patrol") or not isinstance(message.payload, bytes):
                    continue
                try:
                    command = decode_message(TopicKind.COMMAND, message.payload, str(message.topic))
                except MessageRejected:
                    log.warning("gateway %s: ignoring a malformed command on %s", self.gateway, message.topic)
                    continue
                if isinstance(command, GatewayCommand):
                    self._patrol_answers += 1
                    answer = self._encoder.patrol_answer(self.gateway, self._clock.now_ms() / 1000, self._patrol_answers, command.cmd_id)
                    try:
                        self.queue.put_nowait(answer)
                    except asyncio.QueueFull:  # the centre will see the patrol missed, which is the truth
                        log.warning("gateway %s: queue full, patrol %s not answered", self.gateway, command.cmd_id)

    async def _publish_queued(self, client: Link) -> None:
        while True:
            item = await self.queue.get()
            try:
                if item is None:
                    if self._farewell:
                        bye = self._encoder.gateway_status(self.gateway, self._clock.now_ms() / 1000, GatewayState.OFFLINE)
                        await client.publish(bye.topic, bye.payload, qos=1, retain=True)
                        self._stats.sent[bye.label] += 1
                    self.closed.set()
                    return
                await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
                self._stats.sent[item.label] += 1
            except aiomqtt.MqttError:
                if item is not None:  # keep it for the next connection, at the back of the queue
                    with contextlib.suppress(asyncio.QueueFull):
                        self.queue.put_nowait(item)
                raise
            finally:
                self.queue.task_done()


class CommunitySimulator:
    """A simulated community (or street) publishing to a broker; see the module docstring."""

    def __init__(
        self,
        sites: SiteDirectory,
        host: str,
        port: int,
        *,
        speed: float = 1.0,
        seed: int = 7,
        profile: SimulationProfile | None = None,
        clock: Clock | None = None,
        dialects: DialectMode = "native",
        step_s: float | None = None,
        duration_s: float | None = None,
        run_tag: str | None = None,
        client_id_prefix: str = "sim",
        username: str | None = None,
        password: str | None = None,
        gateways: Collection[str] | None = None,
        queue_size: int = 10_000,
        connect_timeout_s: float = 30.0,
        encoder: StepEncoder | None = None,
        dialect_topics: DialectTopics | None = None,
        drill_links: bool = False,
        demo: DemoEvents | None = None,
        farewell: bool = True,
    ) -> None:
        self.sites = sites
        self.speed = speed
        self.clock: Clock = clock or ScaledClock(speed)
        self.fleet = Fleet(sites, seed=seed, start=self.clock.now_ms() / 1000, profile=profile)
        self.by_device = {d.id: d for d in self.fleet.devices}
        self.run_tag = run_tag or secrets.token_hex(4)
        self.native = NativeEncoder(self.fleet.devices, self.run_tag, drill_links=drill_links)  # drill_links: a drill's gateways
        if encoder is None and dialects == "mixed":
            encoder = MixedEncoder(self.native, sites, dialect_topics)
        self.encoder: StepEncoder = encoder or _NativeOnly(self.native)
        # A step is at most a quarter of a real second, and at least one simulated second.
        self.step_s = step_s or min(max(1.0, speed * 0.25), self.fleet.min_interval)
        self.duration_s = duration_s
        self.stats = PublishStats(sim_time=self.fleet.t)
        self.ready = asyncio.Event()
        self.finished = asyncio.Event()  # set when duration_s of simulated time has been generated
        chosen = sorted(gateways) if gateways is not None else self.fleet.gateways
        self.links = {
            gw: GatewayLink(
                gw,
                host,
                port,
                encoder=self.native,
                clock=self.clock,
                stats=self.stats,
                client_id=f"{client_id_prefix}-{gw}-{self.run_tag}",
                birth=functools.partial(self._birth, gw),
                username=username,
                password=password,
                queue_size=queue_size,
                farewell=farewell,
            )
            for gw in chosen
        }
        self._demo = DemoRounds(demo, self.fleet, self.links, seed) if demo is not None else None
        self._connect_timeout_s = connect_timeout_s
        self._stack = AsyncExitStack()
        self._generator: asyncio.Task[None] | None = None

    def _birth(self, gateway: str, t: float) -> list[Outgoing]:
        return self.encoder.birth(gateway, t)

    async def __aenter__(self) -> Self:
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._tasks = [tg.create_task(link.run(), name=f"sim-gateway-{gw}") for gw, link in self.links.items()]
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                for link in self.links.values():
                    await link.connected.wait()
        except TimeoutError:
            up = sum(link.connected.is_set() for link in self.links.values())
            for task in self._tasks:
                task.cancel()
            await self._stack.aclose()
            host, port = next(iter(self.links.values())).host, next(iter(self.links.values())).port
            raise BrokerUnreachable(host, port, up, len(self.links)) from None
        self._generator = tg.create_task(self._generate(), name="sim-generator")
        self.ready.set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._generator is not None:
            self._generator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._generator
        for link in self.links.values():
            link.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                for link in self.links.values():
                    if link.connected.is_set():
                        await link.closed.wait()
        for task in self._tasks:
            task.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _generate(self) -> None:
        fleet, t_end = self.fleet, None if self.duration_s is None else self.fleet.t + self.duration_s
        for k in itertools.count(1):
            t1 = self.stats.sim_time + self.step_s if t_end is None else min(t_end, self.stats.sim_time + self.step_s)
            if self._demo is not None:
                self._demo.inject_due(t1)
            await self.clock.sleep_until_ms(round(t1 * 1000))
            step = fleet.advance(t1)
            for out in self.encoder.step(step, self.by_device):
                link = self.links.get(out.gateway)
                if link is not None:
                    await link.offer(out)
            self.stats.steps, self.stats.sim_time = k, t1
            self.stats.lag_s = max(0.0, self.clock.now_ms() / 1000 - t1)
            if t_end is not None and t1 >= t_end:
                self.finished.set()
                return

    async def drained(self) -> None:
        """Wait until every link has published everything queued so far (for tests and benchmarks)."""
        for link in self.links.values():
            await link.queue.join()

    def cut_uplink(self, gateway: str, duration_s: float) -> None:
        """Pull a gateway's uplink for duration_s of simulated time (its Last Will fires at the broker)."""
        if gateway not in self.links:
            raise UnknownTarget("gateway", gateway)
        self.links[gateway].cut(self.clock.now_ms() / 1000 + duration_s)


async def run_community(
    sites: SiteDirectory,
    host: str,
    port: int,
    *,
    speed: float = 1.0,
    seed: int = 7,
    ready: asyncio.Event | None = None,
    clock: Clock | None = None,
    life_safety_events: bool = False,
    profile: SimulationProfile | None = None,
    dialects: DialectMode = "native",
    username: str | None = None,
    password: str | None = None,
    demo: DemoEvents | None = None,
) -> None:
    """Publish the community until cancelled (as `shouwang run` does). Random smoke alarms and SOS presses
    happen only with life_safety_events=True; the default profile never cries wolf. `demo`: the occasional
    demo happenings (DemoEvents)."""
    chosen = profile or SimulationProfile.live()
    if life_safety_events:
        chosen = chosen.lively()
    async with CommunitySimulator(
        sites, host, port, speed=speed, seed=seed, clock=clock, profile=chosen, dialects=dialects, username=username, password=password,
        demo=demo,
    ):
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()  # until cancelled


async def publish_event(
    client: aiomqtt.Client,
    sites: SiteDirectory,
    device_id: str,
    event: EventKind,
    *,
    drill: bool = False,
    at: float | None = None,
    value: float | None = None,
    detail: str | None = None,
    needs_callback: bool = False,
    msg_id: str | None = None,
) -> DeviceEvent:
    """Publish one native event for a device, as its gateway would, at QoS 1; return the message sent.
    `at` is the event's Unix time (default: now; this is the I/O boundary, where reading the clock is fine)."""
    device = sites.devices.get(device_id)
    if device is None:
        raise UnknownTarget("device", device_id)
    t = time.time() if at is None else at
    msg = native_event(msg_id or f"{device_id}:{secrets.token_hex(6)}", t, event, drill=drill, value=value, detail=detail, needs_callback=needs_callback)
    await client.publish(str(event_topic(device.gateway, device.id)), encode(msg), qos=1)
    return msg
