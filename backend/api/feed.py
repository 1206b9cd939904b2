"""The live feed over HTTP: server-sent events and a JSON catch-up, each caller seeing only their territory.

The feed itself (what it holds, where its events come from) is backend.feed.live. A stream writes what is new since its
last wake-up as one chunk of the events' frames, encoded once by the feed (a storm is a few writes, not one per event).

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from backend.api.auth import Auth, Capability, Principal
from backend.feed import WRITE_MAX, FeedEvent, LiveFeed, sse_frame

__all__ = ["feed_router"]


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
                yield sse_frame("resync", {"reason": "the feed restarted or your last event is too old: reload the board", "epoch": f.epoch, "head": f.head})
                seq = f.head
            yield sse_frame("hello", {"epoch": f.epoch, "head": f.head, "resumed_from": seq, "user": p.username})
            while True:
                evs = f.after(seq, WRITE_MAX)
                if evs is None:
                    yield sse_frame("resync", {"reason": "you fell behind the feed: reload the board", "epoch": f.epoch, "head": f.head})
                    seq = f.head
                    continue
                if evs:  # everything new since the last write, in one chunk
                    seq = evs[-1].seq
                    chunk = b"".join(e.wire or sse_frame(e.kind, e.as_json(f.epoch), f"{f.epoch}-{e.seq}") for e in evs if _visible(p, e))
                    if chunk:
                        yield chunk
                else:
                    before = f.head
                    await f.wait_beyond(seq, f.keepalive_s)
                    if f.head == before:
                        yield b": keepalive\n\n"

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
