"""The live feed: the centre's committed changes, numbered, so a console resumes without a gap.

How this works: `LiveFeed` subscribes to the centre's stream (backend.stream) and turns each event into a
`FeedEvent` with its place (building, grid, community), so each console stream shows only its caller's
territory: an alarm's row as the board shows it (`alarm`, plus `health` for alarm types about a device's
health), a ladder step (`ladder`), a notice (`notice`), a receipt (`receipt`), a bulletin (its own kind), an
alarm's assignment or comment (`assignment`, `comment`: backend.alarms.collab). It keeps
the last `ring_size` events in a ring keyed by a sequence number that grows by one per event, and an `epoch`
(random per process start); an event's id is `<epoch>-<seq>`. A client that reconnects sends the last id it saw
(SSE `Last-Event-ID`, or `?after=`); if that id is of this epoch and still in the ring, it gets every later
event, in order, before live ones; otherwise (the backend restarted, or the client was away longer than the
ring holds) it gets one `resync` event and reloads the board over REST. There are no per-client queues: each
stream holds a cursor and waits for the head to move, so a slow client can never slow the feed down, only fall
out of the ring and resync.

Storms (issue 19): an event is encoded for the wire once, when it is published (`FeedEvent.wire`, the SSE frame),
not once per console; a stream writes everything that is new since its last wake-up as one chunk (up to
`WRITE_MAX` events), so a storm's 2,000 alarms are a few socket writes per console, not 2,000.

Where alarms come from: in a process that writes alarms (the single process; the cluster's rules leader) the
alarm service publishes each commit's `Persist` events on the stream, and the feed hears them before the
writer's call returns: no table is read. A cluster backend that does not hold the rules seat has no writer in
process, so it also runs a durable source (`watch_store=True`, task `feed-alarm-watcher`): it reads rows whose
`updated_ms` moved (since a watermark, with an overlap for transactions that commit out of order) every `poll_s`
and turns them into the same `Persist` events. A row is published when its version (updated_ms, audit_seq,
occurrences, state) differs from the one last published, so the two sources never show a change twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import msgspec

from alerting.model import Alarm, Persist
from backend.alarms.store import AlarmStore, StoreError, record_json_of
from backend.feed.view import named
from backend.sites.model import SiteDirectory
from backend.stream import AlarmAssigned, Bulletin, CentreStream, CommentAdded, Event, LadderStep, NoticeSent, ReceiptRecorded
from broker.clock import Clock
from broker.frozen import quick_init

__all__ = ["HEALTH_ALARM_TYPES", "WRITE_MAX", "FeedEvent", "LiveFeed", "sse_frame"]

log = logging.getLogger(__name__)

# Alarm types that describe a device's health rather than a danger: they also feed the device-health view.
HEALTH_ALARM_TYPES: Final = frozenset({"comm_lost", "gateway_offline", "low_battery", "device_fault", "power_outage", "patrol_missed"})
Where = tuple[str | None, str | None, str | None]
# Events a console stream writes in one chunk: a storm's backlog goes out in a few large writes (~1 KB an alarm,
# so a chunk stays well under a megabyte), not one write per event.
WRITE_MAX: Final = 500


def _plain(obj: Any) -> Any:
    """msgspec's fallback: our self-validating ids (broker.ids: GatewayId, DeviceId, MessageId) are str subclasses, which
    msgspec refuses; they go as the plain strings they are. (Before this a gateway's alarm, keyed by the id its topic
    carried, failed to encode, and with it the rest of its commit's events on the live feed.)"""
    if isinstance(obj, str):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__} for the live feed")


_JSON: Final = msgspec.json.Encoder(enc_hook=_plain)


def sse_frame(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One server-sent event as it goes on the wire."""
    head = f"id: {event_id}\n" if event_id else ""
    # msgspec's encoder: compact UTF-8 JSON, as json.dumps(ensure_ascii=False) wrote it, in a fifth of the time (issue 19:
    # a storm's 2,000 alarms are 2,000 frames made on the event loop)
    return f"{head}event: {event}\ndata: ".encode() + _JSON.encode(data) + b"\n\n"


@quick_init
@dataclass(frozen=True, slots=True)
class FeedEvent:
    seq: int
    kind: str  # alarm, health, ladder, notice, receipt, or a bulletin's kind
    at_ms: int
    data: dict[str, Any]
    building_id: str | None = None
    grid_id: str | None = None
    community_id: str | None = None
    wire: bytes = field(default=b"", repr=False, compare=False)  # the SSE frame, encoded once at publish for every console

    def as_json(self, epoch: str) -> dict[str, Any]:
        return _event_json(epoch, self.seq, self.kind, at_ms=self.at_ms, building_id=self.building_id, grid_id=self.grid_id, data=self.data)


def _event_json(epoch: str, seq: int, kind: str, *, at_ms: int, building_id: str | None, grid_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """A feed event as a console reads it (`FeedEvent.as_json`; `LiveFeed.publish` encodes it before the event exists)."""
    return {"id": f"{epoch}-{seq}", "seq": seq, "kind": kind, "at_ms": at_ms, "building_id": building_id, "grid_id": grid_id, "data": data}


class LiveFeed:
    def __init__(self, clock: Clock, *, stream: CentreStream | None = None, store: AlarmStore | None = None, sites: SiteDirectory | None = None,
                 watch_store: bool = False, ring_size: int = 10_000, poll_s: float = 0.2, overlap_ms: int = 5_000, keepalive_s: float = 15.0) -> None:
        """`store` files an alarm by grid and community (and finds the place of a ladder step's alarm); with
        `watch_store` it is also read as the durable source of alarm changes."""
        if ring_size < 10:
            raise ValueError("the feed ring must hold at least 10 events")
        if watch_store and store is None:
            raise ValueError("watch_store needs the alarm store")
        self.clock = clock
        self.stream = stream
        self.store = store
        if store is not None and stream is not None:
            store.keep_written = True  # the committed alarms' JSON, built once in the commit's thread (`_alarm`)
        self.sites = sites
        self.watch_store = watch_store
        self.poll_s, self.overlap_ms, self.keepalive_s = poll_s, overlap_ms, keepalive_s
        self.epoch = secrets.token_hex(4)
        self.head = 0
        self.ready = asyncio.Event()
        self._ring: deque[FeedEvent] = deque(maxlen=ring_size)
        self._moved = asyncio.Event()
        self._wake = asyncio.Event()
        self._places: dict[str, Where] = {}
        self._versions: dict[str, tuple[int, int, int, str]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.stream is not None:
            self.stream.subscribe(self.on_events, name="live-feed")
        if self.watch_store:
            assert self.store is not None
            watermark = await asyncio.to_thread(self.store.latest_change_ms)
            self._tasks.append(self._tg.create_task(self._watch_store(watermark), name="feed-alarm-watcher"))
        self.ready.set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.stream is not None:
            self.stream.unsubscribe(self.on_events)
        for t in self._tasks:
            t.cancel()
        if self._tg is not None:
            await self._tg.__aexit__(None, None, None)
            self._tg = None
        self._moved.set()  # streams waiting for events see the end

    # -- publishing -------------------------------------------------------------------------------------------
    def publish(self, kind: str, data: dict[str, Any], *, building_id: str | None = None, grid_id: str | None = None,
                community_id: str | None = None) -> FeedEvent:
        """Append an event (call on the event loop). Streams waiting for the head to move wake up."""
        self.head += 1
        seq, at_ms = self.head, self.clock.now_ms()
        wire = sse_frame(kind, _event_json(self.epoch, seq, kind, at_ms=at_ms, building_id=building_id, grid_id=grid_id, data=data), f"{self.epoch}-{seq}")
        ev = FeedEvent(seq, kind, at_ms, data, building_id, grid_id, community_id, wire)
        self._ring.append(ev)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        return ev

    async def on_events(self, events: Sequence[Event]) -> None:
        """The stream's subscriber: one commit's events, in order. One that fails is logged and the rest go on."""
        for ev in events:
            try:
                await self._on_event(ev)
            except Exception:
                log.exception("live feed: could not publish %s; the console shows it after a reload", type(ev).__name__)

    async def _on_event(self, ev: Event) -> None:
        if isinstance(ev, Persist):
            self._alarm(ev.alarm)
        elif isinstance(ev, LadderStep | NoticeSent | ReceiptRecorded):
            b, g, c = await self._place_of_alarm(ev.alarm_id)
            kind = "ladder" if isinstance(ev, LadderStep) else "notice" if isinstance(ev, NoticeSent) else "receipt"
            self.publish(kind, ev.as_json(), building_id=b, grid_id=g, community_id=c)
        elif isinstance(ev, Bulletin):
            self.publish(ev.kind, ev.as_json(), building_id=ev.building_id, grid_id=ev.grid_id, community_id=ev.community_id)
        elif isinstance(ev, AlarmAssigned | CommentAdded):  # issue 17: working an alarm together (`assignment`, `comment`)
            b, g, c = await self._place_of_alarm(ev.alarm_id)
            data = ev.as_json()
            self.publish(data["type"], data, building_id=b, grid_id=g, community_id=c)

    def _alarm(self, a: Alarm) -> None:
        written = self.store.take_written(a) if self.store is not None else None  # taken first: never left behind
        version = (a.updated_ms, a.audit_seq, a.occurrences, a.state.value)
        if self._versions.get(a.id) == version:
            return
        self._versions[a.id] = version
        b = a.place.building
        if written is not None:  # built in the commit's thread, with the store's place_of
            g, c = written["grid_id"], written["community_id"]
        else:
            g, c = self.store.place_of(a.place) if self.store is not None else self._grid_of(b)
            written = record_json_of(a, g, c)
        self._places[a.id] = (b, g, c)
        self.publish("alarm", named(written, self.sites), building_id=b, grid_id=g, community_id=c)
        if a.alarm_type in HEALTH_ALARM_TYPES:
            self.publish("health", {"building_id": b, "device_id": a.place.device, "gateway_id": a.place.gateway, "alarm_type": a.alarm_type,
                                    "is_open": a.is_open, "alarm_id": a.id}, building_id=b, grid_id=g, community_id=c)
        if len(self._versions) > 200_000:  # bounded: an alarm forgotten here is published again on its next change, never lost
            self._versions.clear()
        if len(self._places) > 100_000:  # bounded: a ladder step's place is read again from the store
            self._places.clear()

    def _grid_of(self, building_id: str | None) -> tuple[str | None, str | None]:
        if building_id is None or self.sites is None or building_id not in self.sites.buildings:
            return None, None
        return self.sites.place_of_building(building_id)

    def wake(self) -> None:
        """Ask the durable source to read the store now (a cluster backend, after a move it queued for the leader)."""
        self._wake.set()

    # -- reading ----------------------------------------------------------------------------------------------
    def cursor(self) -> str:
        """The id of the newest event: a page that reads the board over REST takes this first, then opens the
        stream with it as `Last-Event-ID`, so nothing committed between its read and its stream is missed."""
        return f"{self.epoch}-{self.head}"

    def parse_cursor(self, text: str | None) -> int | None:
        """The sequence number after which to resume; None when the id is of another epoch or malformed."""
        if text is None or not text.strip():
            return self.head
        epoch, _, seq = text.strip().rpartition("-")
        if epoch != self.epoch or not seq.isdigit():
            return None
        return int(seq)

    def after(self, seq: int, limit: int = 10_000) -> list[FeedEvent] | None:
        """Events after `seq`, oldest first; None when some of them already left the ring (a gap)."""
        if seq > self.head:
            return None
        if seq == self.head:
            return []
        oldest = self._ring[0].seq if self._ring else self.head + 1
        if seq + 1 < oldest:
            return None
        start = seq + 1 - oldest
        return [self._ring[i] for i in range(start, min(len(self._ring), start + limit))]

    async def wait_beyond(self, seq: int, timeout_s: float) -> None:
        """Return once the head is past `seq`, or after `timeout_s`."""
        if self.head > seq:
            return
        # asyncio.timeout, not wait_for: the stream's task itself waits on the event, so a publish wakes it in one turn
        # of the loop (wait_for's own task took two, behind whatever else the loop had by then)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._moved.wait()

    # -- the durable source (a cluster backend without the rules seat) ---------------------------------------
    async def _watch_store(self, watermark: int) -> None:
        assert self.store is not None
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                changed = await asyncio.to_thread(self.store.changed_since, watermark - self.overlap_ms)
            except StoreError as exc:
                log.warning("live feed: reading the alarm store failed (%s); trying again", exc)
                continue
            for a in changed:
                watermark = max(watermark, a.updated_ms)
                self._alarm(a)

    async def _place_of_alarm(self, alarm_id: str) -> Where:
        if alarm_id in self._places:
            return self._places[alarm_id]
        if self.store is None or not alarm_id:
            return None, None, None
        try:
            a = await asyncio.to_thread(self.store.get, alarm_id)
        except StoreError:
            return None, None, None
        place: Where = (a.place.building, *self.store.place_of(a.place)) if a is not None else (None, None, None)
        self._places[alarm_id] = place
        return place
