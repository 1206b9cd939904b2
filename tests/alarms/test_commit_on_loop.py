"""Issue 19: a few real life-safety alarms are committed on the event loop when the alarm file is free
(`AlarmService._commit_now`, `AlarmStore.apply_now`): told (console, ladder) before the write-ahead log is synced to
the disk, done (the ingest journal's mark) only after it; never waiting on the loop for another writer, of this
process or another; the other writers' connections keep their fsync on every commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alerting.model import Persist
from backend.alarms.service import COMMIT_ON_LOOP_MAX, AlarmService
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from backend.stream import CentreStream, Event
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, Uplink, decode_uplink, encode
from broker.topics import event_topic
from tests.processes import fresh_database


def _smokes(sites: SiteDirectory, t_ms: int, n: int = 1, *, drill: bool = False) -> list[Uplink]:
    devices = [d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE][:n]
    assert len(devices) == n
    return [decode_uplink(str(event_topic(d.gateway, d.id)),
                          encode(DeviceEvent(msg_id=f"m-{t_ms}-{k}", source_ts_ms=t_ms, received_ts_ms=t_ms, event=EventKind.SMOKE_ALARM, drill=drill)))
            for k, d in enumerate(devices)]


def _stored(db: Path) -> list[str]:
    """The alarm types in the file, read by a connection of its own (what another process sees)."""
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT alarm_type FROM alarms ORDER BY alarm_type")]


def _pooled(engine: sa.Engine, pragma: str) -> list[Any]:
    """A pragma's value on four connections of the engine's pool at once (every one it holds here)."""
    conns = [engine.connect() for _ in range(4)]
    try:
        return [conn.exec_driver_sql(f"PRAGMA {pragma}").scalar() for conn in conns]
    finally:
        for conn in conns:
            conn.close()


class _Ticker:
    """The event loop's longest gap between 5 ms ticks while it runs: how long the loop was held."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.worst_s = max(self.worst_s, now - last)
            last = now


async def test_a_lone_smoke_alarm_is_told_before_its_sync_and_done_only_after_it(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    db = tmp_path / "alarms.db"
    stream = CentreStream()
    heard: list[Persist] = []

    async def listen(events: Sequence[Event]) -> None:
        heard.extend(e for e in events if isinstance(e, Persist))

    stream.subscribe(listen, name="test")
    async with AlarmService.for_sites(make_engine(sqlite_url(db)), sample_site, clock, tick_s=3600, stream=stream) as svc:
        # The commit and sync threads are kept busy: the alarm's commit must need neither, its sync must wait.
        gate = threading.Event()
        busy = asyncio.gather(svc._in_commit_thread(gate.wait, 10), svc._in_sync_thread(gate.wait, 10))
        [smoke] = _smokes(sample_site, clock.now_ms())
        handing = asyncio.create_task(svc.on_uplink(smoke, clock.now_ms()))
        for _ in range(200):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert [p.alarm.alarm_type for p in heard] == ["smoke"], "committed and told without the commit thread"
        assert _stored(db) == ["smoke"], "committed: another connection reads it"
        await asyncio.sleep(0.1)
        assert not handing.done(), "not done (not to be marked in the ingest journal) before the log is on the disk"
        gate.set()
        await asyncio.wait_for(handing, 5)
        await busy
        assert svc.stats["commits_on_loop"] == 1
        assert svc.stats["sync_failures"] == 0


async def test_the_loop_never_waits_for_another_process_writing_the_file(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """Another process holds the file's write lock: the alarm is committed from the commit thread once it is free, and
    the event loop runs on meanwhile."""
    clock = VirtualClock()
    db = tmp_path / "alarms.db"
    async with AlarmService.for_sites(make_engine(sqlite_url(db)), sample_site, clock, tick_s=3600) as svc:
        other = sqlite3.connect(db, isolation_level=None)  # not this process's queued writer: as another process
        other.execute("BEGIN IMMEDIATE")
        async with _Ticker() as ticker:
            handing = asyncio.create_task(svc.on_uplink(_smokes(sample_site, clock.now_ms())[0], clock.now_ms()))
            await asyncio.sleep(0.5)
            assert not handing.done()
            other.execute("COMMIT")
            await asyncio.wait_for(handing, 10)
        other.close()
        assert ticker.worst_s < 0.1, f"the event loop was held {ticker.worst_s * 1000:.0f} ms"
        assert _stored(db) == ["smoke"]
        assert svc.stats["commits_on_loop"] == 0


async def test_the_loop_never_waits_for_a_writer_of_its_own_process(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A thread of the process writes the file (the ladder, a notice): the alarm queues for it from the commit thread."""
    clock = VirtualClock()
    db = tmp_path / "alarms.db"
    engine = make_engine(sqlite_url(db))
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600) as svc:
        holding, release = threading.Event(), threading.Event()

        def write_slowly() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS other_work (x INTEGER)")
                conn.exec_driver_sql("INSERT INTO other_work VALUES (1)")
                holding.set()
                release.wait(10)

        writer = asyncio.ensure_future(asyncio.to_thread(write_slowly))
        assert await asyncio.to_thread(holding.wait, 5)
        async with _Ticker() as ticker:
            handing = asyncio.create_task(svc.on_uplink(_smokes(sample_site, clock.now_ms())[0], clock.now_ms()))
            await asyncio.sleep(0.3)
            assert not handing.done()
            release.set()
            await asyncio.wait_for(handing, 10)
        await writer
        assert ticker.worst_s < 0.1, f"the event loop was held {ticker.worst_s * 1000:.0f} ms"
        assert _stored(db) == ["smoke"]
        assert svc.stats["commits_on_loop"] == 0


async def test_other_writers_keep_their_fsync_and_big_rounds_and_drills_use_the_commit_thread(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600) as svc:
        await svc.on_uplink(_smokes(sample_site, clock.now_ms())[0], clock.now_ms())
        assert svc.stats["commits_on_loop"] == 1
        # every pooled connection is as make_engine made it: FULL (2), a 30 s busy timeout, automatic checkpoints
        assert _pooled(engine, "synchronous") == [2] * 4
        assert _pooled(engine, "busy_timeout") == [30_000] * 4
        assert _pooled(engine, "wal_autocheckpoint") == [1000] * 4
        drill = _smokes(sample_site, clock.now_ms(), 2, drill=True)[1:]
        await svc.on_uplink_batch([(u, clock.now_ms()) for u in drill])
        many = _smokes(sample_site, clock.now_ms() + 1, COMMIT_ON_LOOP_MAX + 1)
        synced = await svc.on_uplink_batch([(u, clock.now_ms()) for u in many])
        assert synced is not None
        await synced
        assert svc.stats["commits_on_loop"] == 1, "a drill and a round bigger than COMMIT_ON_LOOP_MAX go through the commit thread"


async def test_a_storm_round_is_committed_without_its_fsync_and_synced_from_a_thread_of_its_own(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A real life-safety round bigger than COMMIT_ON_LOOP_MAX (a storm's) is committed from the commit thread without the
    fsync inside the commit; what `on_uplink_batch` returns is the future of the sync, from the sync thread, done only
    after it; the pooled connection has its fsync on every commit again afterwards."""
    clock = VirtualClock()
    db = tmp_path / "alarms.db"
    engine = make_engine(sqlite_url(db))
    async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600) as svc:
        gate = threading.Event()
        busy = svc._in_sync_thread(gate.wait, 10)  # the sync thread held: the round's sync waits, its commit does not
        storm = _smokes(sample_site, clock.now_ms(), COMMIT_ON_LOOP_MAX + 1)
        synced = await asyncio.wait_for(svc.on_uplink_batch([(u, clock.now_ms()) for u in storm]), 5)
        assert synced is not None, "the round's sync is owed"
        assert _stored(db).count("smoke") == COMMIT_ON_LOOP_MAX + 1, "committed: another connection reads it"
        await asyncio.sleep(0.1)
        assert not synced.done(), "not on the disk (not to be marked done in the ingest journal) before the sync"
        gate.set()
        await asyncio.wait_for(synced, 5)
        await busy
        assert svc.stats["commits_on_loop"] == 0
        assert svc.stats["sync_failures"] == 0
        assert _pooled(engine, "synchronous") == [2] * 4  # the commit thread's connection among them: FULL again


@pytest.mark.postgres
async def test_postgresql_commits_from_the_thread(sample_site: SiteDirectory, postgres_server: LocalPostgres) -> None:
    engine = sa.create_engine(fresh_database(postgres_server, "alarms"))
    clock = VirtualClock()
    try:
        async with AlarmService.for_sites(engine, sample_site, clock, tick_s=3600) as svc:
            await svc.on_uplink(_smokes(sample_site, clock.now_ms())[0], clock.now_ms())
            assert svc.stats["commits_on_loop"] == 0
            assert [a.alarm_type for a in svc.store.open_alarms()] == ["smoke"]
    finally:
        engine.dispose()


async def test_a_worker_cancelled_just_as_the_intake_ends_stops(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The ladder's worker waits in `intake_quiet`, then goes back to its queue; cancelled (at shutdown) in the very
    turn the round ends, it must stop: Python 3.11's asyncio.wait_for swallowed that cancellation, and the worker went
    back to its queue for ever (a shutdown that never ended)."""
    clock = VirtualClock()
    async with AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600) as svc:
        svc._intake += 1  # a round in flight
        svc._intake_quiet.clear()
        svc._intake_ended = -1.0  # (an earlier round ended long ago)

        async def worker() -> None:
            await svc.intake_quiet(30)
            await asyncio.Event().wait()  # its queue, empty

        waiting = asyncio.create_task(worker())
        await asyncio.sleep(0.01)
        svc._intake -= 1
        svc._intake_quiet.set()  # the round ends ...
        asyncio.get_running_loop().call_soon(waiting.cancel)  # ... and in the same turn the worker is cancelled
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 5)
