"""What alerting committed is marked done in the uplink journal only once it is on the disk (issue 19).

The alarm service commits a storm's rounds without the fsync inside the commit and hands back the future of that
sync (backend.ingest.handoff.BatchFeed): the lane hands over its next round meanwhile, marks a round done once its
sync is, and leaves a round whose sync failed pending, offered again at the next start (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

from backend.ingest.handoff import Reading
from backend.ingest.pipeline import Pipeline
from backend.ops.checks import disk_check
from backend.settings import IngestSettings
from backend.sites import SiteDirectory
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, Uplink, encode
from broker.topics import event_topic

ROUND = 40  # smoke alarms accepted together: one round of the lane, handed over in one call


class SyncingFeed:
    """Takes each round in one call and answers, as the alarm service does after a commit without its fsync, with a
    future of the sync that the test completes (or fails) when it chooses."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.syncs: list[asyncio.Future[None]] = []
        self.took = asyncio.Event()

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        raise AssertionError("a round of several is handed over in one call")

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        return None

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> asyncio.Future[None] | None:
        self.rounds.append([str(getattr(u.message, "msg_id", "")) for u, _ in items])
        sync: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.syncs.append(sync)
        self.took.set()
        return sync


def _smokes(sites: SiteDirectory, tag: str) -> list[tuple[str, bytes]]:
    d = next(d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE)
    now = time.time_ns() // 1_000_000
    return [(str(event_topic(d.gateway, d.id)), encode(DeviceEvent(msg_id=f"{tag}-{k}", source_ts_ms=now, received_ts_ms=now,
                                                                      event=EventKind.SMOKE_ALARM)))
            for k in range(ROUND)]


async def _next_round(feed: SyncingFeed, n: int) -> None:
    async with asyncio.timeout(10):
        while len(feed.rounds) < n:
            feed.took.clear()
            await feed.took.wait()
    for _ in range(5):  # the lane's round ends a few turns after the hand-over
        await asyncio.sleep(0)


async def test_a_round_is_done_once_synced_the_next_goes_meanwhile_and_a_failed_sync_stays_pending(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    feed = SyncingFeed()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1))
    acked: list[int] = []
    pipeline.bind(acked.extend)
    token = 0

    def accept(messages: list[tuple[str, bytes]]) -> None:
        nonlocal token
        for topic, payload in messages:
            token += 1
            assert pipeline.accept(topic, payload, token)

    def pending() -> set[str]:
        return {e.key for e in pipeline.ujournal.pending(0, 10_000)}

    try:
        async with pipeline:
            accept(_smokes(sample_site, "first"))
            await _next_round(feed, 1)
            assert feed.rounds[0] == [f"first-{k}" for k in range(ROUND)]
            assert len(pending()) == ROUND, "committed, not yet on the disk: not done in the journal"

            accept(_smokes(sample_site, "second"))
            await _next_round(feed, 2)
            assert feed.rounds[1] == [f"second-{k}" for k in range(ROUND)], "the next round was handed over while the first synced"
            assert len(pending()) == 2 * ROUND

            feed.syncs[0].set_result(None)
            await asyncio.sleep(0.05)
            assert len(pending()) == ROUND, "the first round is done once its sync is"

            feed.syncs[1].set_exception(OSError(5, "Input/output error"))
            await asyncio.sleep(0.05)
            assert len(pending()) == ROUND, "a round whose sync failed stays pending: offered again at the next start"
            assert pipeline.lanes.sync_failures == 1
            assert pipeline.lanes.snapshot()["sync_failures"] == 1
            assert sorted(acked) == list(range(1, 2 * ROUND + 1)), "acknowledged once journaled, as always"
    finally:
        store.close()
    again = SyncingFeed()  # the next start: the round whose sync failed is offered again, and only that one
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    try:
        async with Pipeline(sample_site, feed=again, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1)):
            await _next_round(again, 1)
            assert again.rounds == [[f"second-{k}" for k in range(ROUND)]]
    finally:
        store.close()


async def test_a_lone_alarm_whose_sync_fails_stays_pending_and_the_disk_check_fails_until_a_sync_works(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A message handed over alone goes through the same future as a batch: before, a lone alarm whose sync failed was
    flagged done in the journal all the same (logged and counted only)."""
    feed = SyncingFeed()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1))
    pipeline.bind(lambda tokens: None)
    check = disk_check(SimpleNamespace(pipeline=pipeline))  # type: ignore[arg-type]  # what instrument_backend registers
    lone = _smokes(sample_site, "lone")

    def pending() -> set[str]:
        return {e.key for e in pipeline.ujournal.pending(0, 10_000)}

    try:
        async with pipeline:
            assert pipeline.accept(*lone[0], 1)
            await _next_round(feed, 1)
            assert feed.rounds[0] == ["lone-0"], "a lone message, handed over as a batch of one"
            assert len(pending()) == 1, "committed, not yet on the disk: not done in the journal"
            assert (await check()).ok
            feed.syncs[0].set_exception(OSError(5, "Input/output error"))
            await asyncio.sleep(0.05)
            assert len(pending()) == 1, "its sync failed: it stays pending"
            assert pipeline.lanes.snapshot()["sync_failed_since_ms"] is not None
            verdict = await check()
            assert not verdict.ok
            assert "Input/output error" in verdict.detail
            assert "power cut" in verdict.detail

            assert pipeline.accept(*lone[1], 2)
            await _next_round(feed, 2)
            feed.syncs[1].set_result(None)
            await asyncio.sleep(0.05)
            assert len(pending()) == 1, "the next alarm is done once synced; the failed one is still pending"
            assert (await check()).ok, "a sync that works ends the disk's failure"
            assert pipeline.lanes.sync_failures == 1
    finally:
        store.close()
    again = SyncingFeed()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    try:
        async with Pipeline(sample_site, feed=again, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1)):
            await _next_round(again, 1)
            assert again.rounds == [["lone-0"]], "the alarm whose sync failed is offered again at the next start"
    finally:
        store.close()


class RefusesDetail(SyncingFeed):
    """Refuses every event that carries a detail (a store that cannot take its text), as a batch and alone; takes the
    event without it, answering with a sync the test settles."""

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> asyncio.Future[None] | None:
        if any(getattr(u.message, "detail", None) is not None for u, _ in items):
            raise ValueError("the store refused this detail")
        return await super().on_uplink_batch(items, more_coming=more_coming)


async def test_a_smoke_alarm_raised_without_its_refused_detail_stays_pending_when_its_sync_fails(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The last resort for a life-safety event alerting refused for its content (`UplinkLane._raise_cleaned`) hands it
    over as any lone alarm: before, it went through `on_uplink`, and a failed sync of it was flagged done all the same."""
    feed = RefusesDetail()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    settings = IngestSettings(batch_linger_ms=1, store_retry_min_s=0.01, store_retry_max_s=0.05, feed_max_attempts=2)
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=settings)
    pipeline.bind(lambda tokens: None)
    d = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    now = time.time_ns() // 1_000_000
    payload = encode(DeviceEvent(msg_id="dirty-0", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM, detail="烟感报警"))

    def pending() -> set[str]:
        return {e.key for e in pipeline.ujournal.pending(0, 10_000)}

    try:
        async with pipeline:
            assert pipeline.accept(str(event_topic(d.gateway, d.id)), payload, 1)
            await _next_round(feed, 1)
            assert feed.rounds == [["dirty-0"]], "raised without its detail, once"
            assert len(pending()) == 1, "committed, not yet on the disk: not done in the journal"
            feed.syncs[0].set_exception(OSError(5, "Input/output error"))
            await asyncio.sleep(0.05)
            assert pipeline.lanes.raised_cleaned == 1
            assert len(pending()) == 1, "its sync failed: it stays pending, offered again at the next start"
            assert pipeline.lanes.snapshot()["sync_failed_since_ms"] is not None
    finally:
        store.close()
