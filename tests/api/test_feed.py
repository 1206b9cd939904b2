"""The live feed: numbered events, resume after a reconnect without a gap, resync when the gap is too old,
territory per stream; the SSE stream is read over a real socket (uvicorn), as a browser reads it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import httpx
import uvicorn

from backend.api.app import create_app
from backend.feed import LiveFeed
from broker.clock import VirtualClock
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, decode_uplink, encode
from broker.topics import event_topic
from tests.api.conftest import ApiRig


def test_ring_resumes_after_a_cursor_and_reports_a_gap() -> None:
    async def run() -> None:
        feed = LiveFeed(VirtualClock(), ring_size=10)
        for i in range(5):
            feed.publish("alarm", {"n": i})
        assert [e.data["n"] for e in feed.after(2) or []] == [2, 3, 4]
        assert feed.after(5) == []
        for i in range(5, 25):
            feed.publish("alarm", {"n": i})
        assert feed.after(3) is None, "events 4..14 already left the ring: the client must resync"
        assert [e.seq for e in feed.after(15) or []] == list(range(16, 26))
        assert feed.parse_cursor(f"{feed.epoch}-7") == 7
        assert feed.parse_cursor("deadbeef-7") is None, "another process's ids resync"
        assert feed.parse_cursor("garbage") is None
        assert feed.parse_cursor(None) == feed.head

    asyncio.run(run())


async def test_alarm_changes_reach_the_feed_and_a_cursor_resumes(rig: ApiRig) -> None:
    start = f"{rig.feed.epoch}-{rig.feed.head}"
    alarm = await rig.smoke(rig.device("c01-g1"))
    rig.feed.wake()
    page = await _events_after(rig, "duty", start, lambda evs: any(e["kind"] == "alarm" for e in evs))
    first = next(e for e in page if e["kind"] == "alarm")
    assert first["data"]["id"] == alarm
    assert first["data"]["state"] == "raised"
    await rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={})
    rig.feed.wake()
    later = await _events_after(rig, "duty", first["id"], lambda evs: any(e["kind"] == "alarm" for e in evs))
    assert [e["data"]["state"] for e in later if e["kind"] == "alarm"] == ["acknowledged"]
    other = await rig.client.get(f"/api/feed/events?after={start}", headers=rig.auth("gw2"))
    assert other.json()["events"] == [], "another grid's worker does not see it"
    gap = (await rig.client.get("/api/feed/events?after=00000000-1", headers=rig.auth("duty"))).json()
    assert gap["gap"] is True


async def test_the_board_read_names_the_feed_id_to_resume_from_so_an_alarm_in_between_is_not_missed(rig: ApiRig) -> None:
    # a console reads the board, then opens the stream; an alarm committed in between must reach it
    board = (await rig.client.get("/api/alarms?open=true", headers=rig.auth("duty"))).json()
    assert board["alarms"] == []
    assert board["feed_id"] == f"{rig.feed.epoch}-{rig.feed.head}"
    alarm = await rig.smoke(rig.device("c01-g1"))  # after the read, before the stream opens
    rig.feed.wake()
    page = await _events_after(rig, "duty", board["feed_id"], lambda evs: any(e["kind"] == "alarm" for e in evs))
    assert next(e["data"]["id"] for e in page if e["kind"] == "alarm") == alarm


async def _events_after(rig: ApiRig, who: str, after: str, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    for _ in range(200):
        r = await rig.client.get(f"/api/feed/events?after={after}", headers=rig.auth(who))
        evs = r.json()["events"]
        if done(evs):
            return list(evs)
        await asyncio.sleep(0.02)
    raise AssertionError("no feed event within 4 s")


async def _serve(rig: ApiRig) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(create_app(rig.deps), host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(), name="test-http")
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def _read(stream: httpx.Response, want: int) -> list[tuple[str, str, dict[str, object]]]:
    """Read SSE events until `want` alarm events arrived; returns (event, id, data) of every event."""
    out: list[tuple[str, str, dict[str, object]]] = []
    event, eid, data = "message", "", ""
    async with asyncio.timeout(10):
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                eid = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                out.append((event, eid, json.loads(data)))
                event, eid, data = "message", "", ""
                if sum(1 for e in out if e[0] == "alarm") >= want:
                    return out
    return out


async def test_sse_stream_resumes_after_last_event_id_without_missing_an_event(rig: ApiRig) -> None:
    async for base in _serve(rig):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first = await rig.smoke(rig.device("c01-g1"))
            async with http.stream("GET", "/api/feed", headers={**rig.auth("duty"), "Last-Event-ID": f"{rig.feed.epoch}-0"}) as s:
                assert s.headers["content-type"].startswith("text/event-stream")
                got = await _read(s, 1)
            hello = next(e for e in got if e[0] == "hello")
            alarm_ev = next(e for e in got if e[0] == "alarm")
            assert hello[2]["resumed_from"] == 0
            assert alarm_ev[2]["data"]["id"] == first  # type: ignore[index]
            last_id = alarm_ev[1]

            # while the console is away, two more alarms happen
            second = await rig.smoke(rig.device("c01-g1", n=1))
            third = await rig.smoke(rig.device("c01-g1", n=2))
            rig.feed.wake()
            async with http.stream("GET", "/api/feed", headers={**rig.auth("duty"), "Last-Event-ID": last_id}) as s:
                resumed = await _read(s, 2)
            ids = [e[2]["data"]["id"] for e in resumed if e[0] == "alarm"]  # type: ignore[index]
            assert ids == [second, third]
            seqs = [int(e[1].rsplit("-", 1)[1]) for e in resumed if e[1]]
            assert seqs == sorted(set(seqs)), "nothing repeated, in order"
            assert seqs[0] == int(last_id.rsplit("-", 1)[1]) + 1, "nothing skipped"

            async with http.stream("GET", "/api/feed", headers={**rig.auth("duty"), "Last-Event-ID": "0badc0de-3"}) as s:
                async with asyncio.timeout(5):
                    async for line in s.aiter_lines():
                        if line.startswith("event: "):
                            assert line == "event: resync"
                            break
            anon = await http.get("/api/feed")
            assert anon.status_code == 401


async def test_a_storm_reaches_a_console_in_one_write_not_one_per_alarm(rig: ApiRig) -> None:
    """Issue 19: a storm's alarms committed together go to each console as one chunk of SSE frames (every alarm in
    it, in order, once); the stream used to write each event on its own (a storm of 2,000: 2,000 writes a console)."""
    app = create_app(rig.deps)
    bodies: list[bytes] = []
    seen_hello, all_there = asyncio.Event(), asyncio.Event()
    storm = [d for b in sorted(rig.sites.devices_by_building) for d in rig.sites.devices_by_building[b][:1]][:40]
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the console stays connected
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            bodies.append(message["body"])
            text = b"".join(bodies)
            if b"event: hello" in text:
                seen_hello.set()
            if text.count(b"event: alarm\n") >= len(storm):
                all_there.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/api/feed",
             "raw_path": b"/api/feed", "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("api", 80),
             "headers": [(b"host", b"api"), (b"accept", b"text/event-stream"), (b"authorization", rig.auth("duty")["Authorization"].encode())]}
    console = asyncio.create_task(app(scope, receive, send), name="test-console")
    try:
        async with asyncio.timeout(10):
            await seen_hello.wait()
            before = len(bodies)
            now = rig.clock.now_ms()
            await rig.service.on_uplink_batch([
                (decode_uplink(str(event_topic(d.gateway, d.id)), encode(DeviceEvent(msg_id=f"storm-{k}", source_ts_ms=now, received_ts_ms=now,
                                                                                       event=EventKind.SMOKE_ALARM))), now)
                for k, d in enumerate(storm)])
            await all_there.wait()
    finally:
        console.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await console
    writes = [b for b in bodies[before:] if b"event: alarm\n" in b]
    assert len(writes) == 1, f"{len(storm)} alarms of one commit went out in {len(writes)} writes"
    frames = [f for f in b"".join(writes).split(b"\n\n") if b"event: alarm\n" in f]
    devices = [json.loads(f.split(b"data: ", 1)[1])["data"]["device_id"] for f in frames]
    assert sorted(devices) == sorted(d.id for d in storm), "every alarm of the storm, each once"
    seqs = [int(f.split(b"\n", 1)[0].rsplit(b"-", 1)[1]) for f in frames]
    assert seqs == sorted(seqs), "in the feed's order, each with its id"


async def test_a_gateway_alarm_keyed_by_its_checked_id_reaches_the_feed_with_the_rest_of_its_commit() -> None:
    """Ids from a topic are broker.ids types (str subclasses that validate themselves); the feed's JSON encoder once
    refused them, and a gateway-offline alarm failed to encode, taking the rest of its commit's events with it."""
    from alerting.book import AlarmBook
    from alerting.model import Persist, Place, Severity, Signal, SignalKind
    from backend.stream import CentreStream
    from broker.ids import DeviceId, GatewayId

    clock = VirtualClock()
    stream = CentreStream()
    book = AlarmBook()
    now = clock.now_ms()
    gateway_down = book.signal(Signal(SignalKind.RAISE, "gateway_offline", "gateway:c01-gw-b01", now, Severity.MAJOR, title="网关离线",
                                      place=Place(gateway=GatewayId("c01-gw-b01"))), now)
    smoke = book.signal(Signal(SignalKind.RAISE, "smoke", "device:c01-b01-u1-f1-smoke", now, Severity.CRITICAL, True, title="烟感报警",
                               place=Place(device=DeviceId("c01-b01-u1-f1-smoke"), gateway=GatewayId("c01-gw-b01"))), now)
    async with LiveFeed(clock, stream=stream) as feed:
        await stream.publish([*gateway_down, *smoke])
        events = feed.after(0) or []
    assert [e.data["alarm_type"] for e in events if e.kind == "alarm"] == ["gateway_offline", "smoke"]
    frames = [json.loads(e.wire.split(b"data: ", 1)[1]) for e in events]
    assert frames[0]["data"]["gateway_id"] == "c01-gw-b01"
    assert all(isinstance(p, Persist) for p in [*gateway_down, *smoke])
