"""What the intake keeps for Python's garbage collector to walk (issue 19): in a drain, young collections walked every
tracked object made since the last one, and held the process 10-50 ms while a smoke alarm waited. The readings handed
on and the per-device bookkeeping hold plain values the collector does not track."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from backend.ingest.handoff import Reading
from backend.ingest.pipeline import Pipeline
from backend.settings import IngestSettings
from backend.sites import SiteDirectory
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.kinds import DeviceKind
from broker.schemas import Telemetry, Uplink, encode
from broker.topics import telemetry_topic


class Readings:
    def __init__(self) -> None:
        self.got: list[Reading] = []
        self.arrived = asyncio.Event()

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        return None

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        self.got += readings
        self.arrived.set()


async def test_the_readings_handed_on_and_the_devices_last_heard_are_not_tracked(tmp_path: Path, sample_site: SiteDirectory) -> None:
    feed = Readings()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1))
    pipeline.bind(lambda tokens: None)
    d = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    now = time.time_ns() // 1_000_000
    async with pipeline:
        pipeline.accept(str(telemetry_topic(d.gateway, d.id)),
                        encode(Telemetry(msg_id="t-1", source_ts_ms=now, received_ts_ms=now, readings={"voltage_v": 220.5, "power_w": 80.0})), 1)
        async with asyncio.timeout(10):
            await feed.arrived.wait()
        assert {r.metric for r in feed.got} == {"voltage_v", "power_w"}
        assert not any(gc.is_tracked(r) for r in feed.got)
        assert list(pipeline.last_seen_ms) == [d.id]
        [key] = pipeline.last_seen_ms
        assert type(key) is str, "a plain str, not the topic's DeviceId (a tracked str subclass)"
        assert not gc.is_tracked(key)


async def test_the_deduplication_windows_are_old_before_the_first_message(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """Built at start and kept for the process's life: collected once into the oldest generation before any message is
    taken, so no young collection of a reconnect flood walks their 2 x 200,000 keys."""
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    pipeline = Pipeline(sample_site, feed=Readings(), store=store, journal_dir=tmp_path / "journal", settings=IngestSettings())
    pipeline.bind(lambda tokens: None)
    async with pipeline:
        young = {id(o) for o in gc.get_objects(0)} | {id(o) for o in gc.get_objects(1)}
        windows: list[set[bytes] | deque[bytes]] = [pipeline.recent._ids, pipeline.recent._order]
        assert all(len(w) == 200_000 for w in windows)
        assert not any(id(w) in young for w in windows)
