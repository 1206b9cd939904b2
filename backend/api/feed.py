"""The live feed: alarm changes, ladder steps and device health, numbered, so a console resumes without a gap.

How this works: `LiveFeed` keeps the last `ring_size` events in a ring keyed by a sequence number that grows
by one per event, and an `epoch` (random per process start). An event's id is `<epoch>-<seq>`. A client
that reconnects sends the last id it saw (SSE `Last-Event-ID`, or `?after=`); if that id is of this epoch
and still in the ring, it gets every later event, in order, before live ones; otherwise (the backend
restarted, or the client was away longer than the ring holds) it gets one `resync` event and reloads the
board over REST. There are no per-client queues: each stream holds a cursor and waits for the head to move,
so a slow client can never slow the feed down, only fall out of the ring and resync.

Where events come from (tasks of the feed's TaskGroup):
- `feed-alarm-watcher` reads the alarm store for rows whose `updated_ms` moved (since a watermark, with an
  overlap for transactions that commit out of order) every `poll_s`, or at once after `wake()`. Every
  writer of the store, in this process or another, is seen; a row is published when its version
  (updated_ms, audit_seq, occurrences, state) differs from the one last published. Alarm types that say
  something about a device's health also publish a `health` event.
- `feed-console-bridge` republishes what the escalation service and the notification console channel put
  on the in-process `LiveConsole` (ladder steps as `ladder`, notices as `notice`).
Anything else may call `publish()` (on the event loop).

Every event carries its place (building, grid, community) so each stream shows only its caller's territory.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Annotated, Any, Final, Self

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from backend.alarms.schema import alarms as alarms_table
from backend.api.auth import Auth, Capability, Principal
from backend.api.console_views import alarm_view
from backend.clock import Clock
from backend.notify.console import LiveConsole
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord, AlarmStore

__all__ = ["HEALTH_ALARM_TYPES", "FeedEvent", "LiveFeed", "feed_router"]

log = logging.getLogger(__name__)

# Alarm types that describe a device's health rather than a danger: they also feed the device-health view.
HEALTH_ALARM_TYPES: Final = frozenset({"comm_lost", "gateway_offline", "low_battery", "device_fault", "power_outage", "patrol_missed"})
_RECORD_COLUMNS: Final = [alarms_table.c[f] for f in AlarmRecord.__slots__]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    seq: int
    kind: str  # alarm, ladder, notice, health
    at_ms: int
    data: dict[str, Any]
    building_id: str | None = None
    grid_id: str | None = None
    community_id: str | None = None

    def as_json(self, epoch: str) -> dict[str, Any]:
        return {"id": f"{epoch}-{self.seq}", "seq": self.seq, "kind": self.kind, "at_ms": self.at_ms, "building_id": self.building_id,
                "grid_id": self.grid_id, "data": self.data}


class LiveFeed:
    def __init__(self, clock: Clock, *, alarms: AlarmStore | None = None, console: LiveConsole | None = None, sites: SiteDirectory | None = None,
                 ring_size: int = 10_000, poll_s: float = 0.2, overlap_ms: int = 5_000, keepalive_s: float = 15.0) -> None:
        if ring_size < 10:
            raise ValueError("the feed ring must hold at least 10 events")
        self.clock = clock
        self.alarms = alarms
        self.console = console
        self.sites = sites
        self.poll_s, self.overlap_ms, self.keepalive_s = poll_s, overlap_ms, keepalive_s
        self.epoch = secrets.token_hex(4)
        self.head = 0
        self.ready = asyncio.Event()
        self._ring: deque[FeedEvent] = deque(maxlen=ring_size)
        self._moved = asyncio.Event()
        self._wake = asyncio.Event()
        self._places: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._versions: dict[str, tuple[int, int, int, str]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.alarms is not None:
            watermark = await asyncio.to_thread(self._seed)
            self._tasks.append(self._tg.create_task(self._watch_alarms(watermark), name="feed-alarm-watcher"))
        if self.console is not None:
            self._tasks.append(self._tg.create_task(self._bridge_console(self.console), name="feed-console-bridge"))
        self.ready.set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
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
        ev = FeedEvent(self.head, kind, self.clock.now_ms(), data, building_id, grid_id, community_id)
        self._ring.append(ev)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        return ev

    def wake(self) -> None:
        """Ask the alarm watcher to read the store now (call after writing alarms, for the lowest latency)."""
        self._wake.set()

    def place_of_building(self, building_id: str | None) -> tuple[str | None, str | None, str | None]:
        if building_id is None or self.sites is None or building_id not in self.sites.buildings:
            return building_id, None, None
        return building_id, *self.sites.place_of_building(building_id)

    # -- reading ----------------------------------------------------------------------------------------------
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
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._moved.wait(), timeout_s)

    # -- sources ----------------------------------------------------------------------------------------------
    def _seed(self) -> int:
        assert self.alarms is not None
        with self.alarms.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(alarms_table.c.updated_ms))).scalar_one()
            watermark = int(top or 0)
            for r in conn.execute(sa.select(*_RECORD_COLUMNS, alarms_table.c.audit_seq).where(alarms_table.c.updated_ms >= watermark - self.overlap_ms)):
                self._versions[r.id] = (r.updated_ms, r.audit_seq, r.occurrences, r.state)
        return watermark

    def _changed_since(self, since_ms: int) -> list[tuple[AlarmRecord, int]]:
        assert self.alarms is not None
        q = sa.select(*_RECORD_COLUMNS, alarms_table.c.audit_seq).where(alarms_table.c.updated_ms >= since_ms).order_by(alarms_table.c.updated_ms)
        with self.alarms.engine.connect() as conn:
            out = []
            for r in conn.execute(q):
                m = dict(r._mapping)
                seq = int(m.pop("audit_seq"))
                out.append((AlarmRecord(**m), seq))
            return out

    async def _watch_alarms(self, watermark: int) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                rows = await asyncio.to_thread(self._changed_since, watermark - self.overlap_ms)
            except sa.exc.SQLAlchemyError:
                log.exception("live feed: reading the alarm store failed; trying again")
                continue
            for rec, audit_seq in rows:
                version = (rec.updated_ms, audit_seq, rec.occurrences, rec.state)
                watermark = max(watermark, rec.updated_ms)
                if self._versions.get(rec.id) == version:
                    continue
                self._versions[rec.id] = version
                b, g, c = self.place_of_building(rec.building_id)
                g, c = g or rec.grid_id, c or rec.community_id
                self._places[rec.id] = (b, g, c)
                self.publish("alarm", alarm_view(rec, self.sites), building_id=b, grid_id=g, community_id=c)
                if rec.alarm_type in HEALTH_ALARM_TYPES:
                    self.publish("health", {"building_id": b, "device_id": rec.device_id, "gateway_id": rec.gateway_id, "alarm_type": rec.alarm_type,
                                            "is_open": rec.is_open, "alarm_id": rec.id}, building_id=b, grid_id=g, community_id=c)
            cutoff = watermark - self.overlap_ms
            for alarm_id in [k for k, v in self._versions.items() if v[0] < cutoff]:
                del self._versions[alarm_id]
            if len(self._places) > 100_000:  # bounded: the console bridge re-reads a place it forgot
                self._places.clear()

    async def _place_of_alarm(self, alarm_id: str) -> tuple[str | None, str | None, str | None]:
        if alarm_id in self._places:
            return self._places[alarm_id]
        if self.alarms is None:
            return None, None, None
        a = await asyncio.to_thread(self.alarms.get, alarm_id)
        place = self.place_of_building(a.place.building) if a is not None else (None, None, None)
        self._places[alarm_id] = place
        return place

    async def _bridge_console(self, console: LiveConsole) -> None:
        with console.subscribe() as sub:
            while True:
                event = await sub.get()
                alarm_id = str(event.get("alarm_id", ""))
                b, g, c = await self._place_of_alarm(alarm_id) if alarm_id else (None, None, None)
                kind = "ladder" if event.get("type") == "escalation" else "notice" if event.get("type") == "notice" else "console"
                self.publish(kind, event, building_id=b, grid_id=g, community_id=c)


# -- HTTP -----------------------------------------------------------------------------------------------------


class FeedPage(BaseModel):
    epoch: str
    head: int
    gap: bool
    events: list[dict[str, Any]]


def _visible(p: Principal, ev: FeedEvent) -> bool:
    if p.territory.everywhere:
        return True
    if ev.building_id is None and ev.grid_id is None and ev.community_id is None:
        return False  # no place known: only for those who see everything
    return p.territory.covers(ev.building_id, ev.grid_id, ev.community_id)


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def feed_router(source: Callable[[], LiveFeed | None], auth: Auth) -> APIRouter:
    """`source()` is the running feed (it may start after the app is built, in its lifespan)."""
    router = APIRouter(prefix="/api/feed", tags=["feed"])
    viewer = auth.require(Capability.VIEW_ALARMS)

    def running() -> LiveFeed:
        feed = source()
        if feed is None or not feed.ready.is_set():
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the live feed is not running on this server; reload the page to use the board without it")
        return feed

    @router.get("/events", summary="Feed events after a cursor (JSON; for machines and for catching up)")
    async def events(
        p: Annotated[Principal, Depends(viewer)],
        after: Annotated[str | None, Query(max_length=64, description="id of the last event seen (`<epoch>-<seq>`); empty: only the head")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> FeedPage:
        f = running()
        seq = f.parse_cursor(after)
        evs = f.after(seq, limit) if seq is not None else None
        if evs is None:
            return FeedPage(epoch=f.epoch, head=f.head, gap=True, events=[])
        return FeedPage(epoch=f.epoch, head=f.head, gap=False, events=[e.as_json(f.epoch) for e in evs if _visible(p, e)])

    @router.get("", summary="Live feed (server-sent events); resumes after Last-Event-ID",
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "an endless event stream"}},
                response_class=StreamingResponse)
    async def stream(
        p: Annotated[Principal, Depends(viewer)],
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
        after: Annotated[str | None, Query(max_length=64, description="same as the Last-Event-ID header")] = None,
    ) -> StreamingResponse:
        f = running()
        cursor_text = last_event_id if last_event_id is not None else after

        async def body() -> AsyncIterator[bytes]:
            seq = f.parse_cursor(cursor_text)
            yield b"retry: 1000\n\n"
            if seq is None:
                yield _sse("resync", {"reason": "the feed restarted or your last event is too old: reload the board", "epoch": f.epoch, "head": f.head})
                seq = f.head
            yield _sse("hello", {"epoch": f.epoch, "head": f.head, "resumed_from": seq, "user": p.username})
            while True:
                evs = f.after(seq)
                if evs is None:
                    yield _sse("resync", {"reason": "you fell behind the feed: reload the board", "epoch": f.epoch, "head": f.head})
                    seq = f.head
                    continue
                for e in evs:
                    seq = e.seq
                    if _visible(p, e):
                        yield _sse(e.kind, e.as_json(f.epoch), f"{f.epoch}-{e.seq}")
                if not evs:
                    before = f.head
                    await f.wait_beyond(seq, f.keepalive_s)
                    if f.head == before:
                        yield b": keepalive\n\n"

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
