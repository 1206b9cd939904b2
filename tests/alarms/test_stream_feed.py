"""One stream out of the core (backend.stream): the live feed hears each commit from it, without reading the alarm
table in a process that writes alarms; a cluster backend's durable source turns rows into the same events, and a
change heard from both is shown once; ladder steps and notices take the same road; a failing subscriber harms no one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alerting.model import Alarm, Persist
from backend.alarms.service import AlarmService
from backend.alarms.store import StoreUnavailable, record_json_of
from backend.feed import LiveFeed
from backend.feed import live as live_module
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.stream import Bulletin, CentreStream, Event, LadderStep
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, Uplink, decode_uplink, encode
from broker.topics import event_topic


def _smoke(sites: SiteDirectory, t_ms: int) -> Uplink:
    d = next(d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE)
    msg = DeviceEvent(msg_id=f"m-{t_ms}", source_ts_ms=t_ms, received_ts_ms=t_ms, event=EventKind.SMOKE_ALARM)
    return decode_uplink(str(event_topic(d.gateway, d.id)), encode(msg))


class _Statements:
    """Every SQL statement the engine runs, for asserting what was (not) read."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._hear)

    def _hear(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(" ".join(statement.split()).lower())

    def selects_from_alarms(self) -> list[str]:
        return [s for s in self.seen if s.startswith("select") and " from alarms" in s]


async def test_the_feed_hears_a_commit_from_the_stream_before_the_writer_returns_and_reads_no_table(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    stream = CentreStream()
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600, stream=stream) as svc, \
            LiveFeed(clock, stream=stream, store=svc.store, sites=sample_site) as feed:
        statements = _Statements(engine)
        await svc.on_uplink(_smoke(sample_site, clock.now_ms()), clock.now_ms())
        [ev] = [e for e in feed.after(0) or [] if e.kind == "alarm"]  # there at once: no wake-up, no poll
        assert ev.data["alarm_type"] == "smoke"
        assert ev.data["state"] == "raised"
        assert ev.data["building_name"], "the place in words a person reads"
        assert (ev.building_id, ev.grid_id, ev.community_id) == (ev.data["building_id"], ev.data["grid_id"], ev.data["community_id"])
        assert ev.grid_id is not None, "filed under its grid: each console sees only its territory"
        assert statements.selects_from_alarms() == [], "the feed of the process that writes alarms reads no alarm table"
        assert "live-feed" in stream.subscribers


async def test_a_cluster_feed_shows_a_change_heard_from_the_stream_and_the_table_once(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    stream = CentreStream()
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600, stream=stream) as svc, \
            LiveFeed(clock, stream=stream, store=svc.store, sites=sample_site, watch_store=True, poll_s=0.01) as feed:
        await svc.on_uplink(_smoke(sample_site, clock.now_ms()), clock.now_ms())
        for _ in range(20):  # let the durable source read the row a few times
            feed.wake()
            await feed.wait_beyond(feed.head, 0.02)
        alarms = [e for e in feed.after(0) or [] if e.kind == "alarm"]
        assert len(alarms) == 1, "the stream and the table told the same change: shown once"


async def test_a_cluster_feed_without_the_writer_reads_changes_from_the_table(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600) as svc, \
            LiveFeed(clock, stream=CentreStream(), store=svc.store, sites=sample_site, watch_store=True, poll_s=0.01) as feed:
        await svc.on_uplink(_smoke(sample_site, clock.now_ms()), clock.now_ms())  # written on another stream: another process
        for _ in range(200):
            if any(e.kind == "alarm" for e in feed.after(0) or []):
                break
            await feed.wait_beyond(feed.head, 0.02)
        [ev] = [e for e in feed.after(0) or [] if e.kind == "alarm"]
        assert ev.data["alarm_type"] == "smoke"


async def test_ladder_steps_and_bulletins_reach_the_feed_with_the_alarms_place(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    stream = CentreStream()
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600, stream=stream) as svc, \
            LiveFeed(clock, stream=stream, store=svc.store, sites=sample_site) as feed:
        await svc.on_uplink(_smoke(sample_site, clock.now_ms()), clock.now_ms())
        [alarm] = [e for e in feed.after(0) or [] if e.kind == "alarm"]
        await stream.publish([LadderStep(alarm.data["id"], 1, "paged", "grid_worker", "网格员已通知", clock.now_ms(), False),
                              Bulletin("maintenance", {"text": "维护窗口已结束"}, "b-x", "g-x", "c-x")])
        ladder, bulletin = (feed.after(alarm.seq) or [])[-2:]
        assert (ladder.kind, ladder.data["type"], ladder.data["kind"]) == ("ladder", "escalation", "paged")
        assert (ladder.building_id, ladder.grid_id) == (alarm.building_id, alarm.grid_id), "the step is seen where its alarm is"
        assert (bulletin.kind, bulletin.data["text"], bulletin.grid_id) == ("maintenance", "维护窗口已结束", "g-x")


async def test_a_failing_subscriber_is_counted_and_the_others_still_hear() -> None:
    stream = CentreStream()
    heard: list[Event] = []

    async def broken(_: Sequence[Event]) -> None:
        raise RuntimeError("boom")

    async def good(events: Sequence[Event]) -> None:
        heard.extend(events)

    stream.subscribe(broken, name="broken")
    stream.subscribe(good, name="good")
    step = LadderStep("A1", 1, "paged", None, "", 0, False)
    await stream.publish([step])
    assert heard == [step]
    assert stream.failures == {"broken": 1}
    stream.unsubscribe(broken)
    assert stream.subscribers == ["good"]


async def test_the_alarm_service_publishes_only_committed_changes(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A commit that fails publishes nothing: the retry's commit is what subscribers hear, once."""
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    stream = CentreStream()
    heard: list[Persist] = []

    async def listen(events: Sequence[Event]) -> None:
        heard.extend(e for e in events if isinstance(e, Persist))

    stream.subscribe(listen, name="test")
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600, stream=stream) as svc:
        uplink = _smoke(sample_site, clock.now_ms())
        real_apply, real_apply_now = svc.store.apply, svc.store.apply_now

        def fail(_actions: object) -> None:
            raise StoreUnavailable("the database is away")

        svc.store.apply = svc.store.apply_now = fail  # type: ignore[method-assign,assignment]
        with pytest.raises(StoreUnavailable):  # the caller (ingest) keeps the message and retries
            await svc.on_uplink(uplink, clock.now_ms())
        assert heard == [], "nothing was committed: nothing is told"
        svc.store.apply, svc.store.apply_now = real_apply, real_apply_now  # type: ignore[method-assign]
        await svc.on_uplink(uplink, clock.now_ms())
        assert [p.alarm.alarm_type for p in heard] == ["smoke"]
        assert heard[0].audit[0].from_state is None, "the retry raises it, with its raise entry"


async def test_the_feed_shows_the_record_the_commit_built_once_and_the_same_as_its_row(tmp_path: Path, sample_site: SiteDirectory,
                                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: the commit's thread builds each alarm's record JSON once, for the database and the live feed; the
    event loop does not build it again. What the console gets is exactly the stored row's record."""
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    stream = CentreStream()
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600, stream=stream) as svc, \
            LiveFeed(clock, stream=stream, store=svc.store, sites=sample_site) as feed:
        built = 0

        def counting(a: Alarm, grid: str | None, community: str | None) -> dict[str, Any]:
            nonlocal built
            built += 1
            return record_json_of(a, grid, community)

        monkeypatch.setattr(live_module, "record_json_of", counting)  # the feed's own way to build a record
        await svc.on_uplink(_smoke(sample_site, clock.now_ms()), clock.now_ms())
        monkeypatch.undo()
        [ev] = [e for e in feed.after(0) or [] if e.kind == "alarm"]
        assert built == 0, "the feed built the record again on the event loop"
        stored = svc.store.get(ev.data["id"])
        assert stored is not None
        record = svc.store.record(stored).as_json()  # the row as it reads back
        assert {k: ev.data[k] for k in record} == record
        assert svc.store._written == {}, "handed over once, nothing left behind"
        assert svc.store.take_written(stored) is None  # an alarm the commit did not write (an equal object read back): built as before
