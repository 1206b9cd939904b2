"""A storm through the uplink lane and the real alarm service (issue 19): rounds of 256, each committed while the
one before it is published; when commits fail (the alarm store locked by another writer) every alarm is still
raised once, in the order it arrived, nothing is counted twice, and the journal is left with nothing undone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from backend.alarms.service import AlarmService
from backend.ingest.journal import Journal
from backend.ingest.pipeline import Pipeline
from backend.settings import IngestSettings
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.clock import VirtualClock
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, encode
from broker.topics import event_topic
from tests.ingest import helpers
from tests.waiting import until

STORM = 600  # three rounds of the lane (256 a round)


def storm(gateway: str, first: int) -> list[tuple[str, bytes]]:
    ts = helpers.T0
    return [(str(event_topic(gateway, f"storm-{k:04d}")),
             encode(DeviceEvent(msg_id=f"s{k}", source_ts_ms=ts, received_ts_ms=ts, event=EventKind.SMOKE_ALARM)))
            for k in range(first, first + STORM)]


def raised_order(svc: AlarmService) -> list[str]:
    """The devices of the stored smoke alarms, in the order they were raised (an alarm's id counts up)."""
    rows = [r for r in svc.store.list(open_only=True, limit=10_000) if r.alarm_type == "smoke"]
    return [r.device_id or "" for r in sorted(rows, key=lambda r: int(r.id.rsplit(".", 1)[1]))]


async def test_a_storm_whose_commits_fail_loses_nothing_counts_nothing_twice_and_keeps_the_order(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    path = tmp_path / "alarms.db"
    gateway = next(iter(sample_site.gateways))
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    settings = IngestSettings(batch_linger_ms=1, known_devices_only=False, store_retry_min_s=0.05, store_retry_max_s=0.2)
    token = iter(range(1, 100_000))
    try:
        async with AlarmService.for_sites(make_engine(sqlite_url(path)), sample_site, clock, tick_s=3600) as svc:
            svc.store.engine.dispose()
            svc.store.engine = sa.create_engine(sqlite_url(path), connect_args={"timeout": 0.2})  # a locked commit fails fast
            pipeline = Pipeline(sample_site, feed=svc, store=store, journal_dir=tmp_path / "journal", settings=settings)
            async with pipeline, asyncio.timeout(60):
                for topic, payload in storm(gateway, 0):  # all at once, as the events connection reads a storm
                    pipeline.accept(topic, payload, next(token), events_copy=True)
                await until(lambda: len(raised_order(svc)) == STORM and not pipeline.uplinks_waiting(), 30, "the first storm raised")
                assert pipeline.lanes.feed_failures == 0

                holder = sqlite3.connect(path, isolation_level=None)
                holder.execute("BEGIN EXCLUSIVE")  # another writer holds the alarm store: the next storm's commits fail
                try:
                    for topic, payload in storm(gateway, STORM):
                        pipeline.accept(topic, payload, next(token), events_copy=True)
                    await until(lambda: pipeline.lanes.feed_failures >= 1, 10, "a commit to fail")
                    await asyncio.sleep(0.5)
                    assert len(raised_order(svc)) == STORM, "nothing of the second storm is stored while the store is locked"
                finally:
                    holder.execute("ROLLBACK")
                    holder.close()
                await until(lambda: len(raised_order(svc)) == 2 * STORM and not pipeline.uplinks_waiting(), 30, "the second storm raised")
                await until(lambda: pipeline.lanes.alerting_down_since_ms is None, 5, "alerting up again")
            order = raised_order(svc)
            assert order == [f"storm-{k:04d}" for k in range(2 * STORM)], "each alarm raised once, in the order it arrived"
            rows = svc.store.list(open_only=True, limit=10_000)
            assert [r.device_id for r in rows if r.alarm_type == "smoke" and r.occurrences != 1] == [], "no smoke alarm counted twice"
            # the devices are not in the site directory: they stand in their gateway's building, so its fire is confirmed
            # once enough of them smoke, and every smoke after that counts once more (the failed rounds' counts went back)
            [fire] = [r for r in rows if r.alarm_type == "confirmed_fire"]
            assert fire.occurrences == 2 * STORM - svc.rules.confirmed_fire_smokes_in_unit + 1
            assert sum(1 for a in svc.engine.book.open.values() if a.alarm_type == "smoke") == 2 * STORM, "the book agrees with the store"
    finally:
        store.close()
    # every message of both storms is done in the journal: a restart replays nothing
    journal = Journal(tmp_path / "journal" / "uplink.journal")
    try:
        assert journal.pending() == [], "nothing of the storms is left undone in the journal"
        assert journal.count() >= 2 * STORM
    finally:
        journal.close()
