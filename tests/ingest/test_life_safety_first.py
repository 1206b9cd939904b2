"""A life-safety message overtakes every other uplink in ingest, also a round the uplink lane is already handing over.

A gateway back from a long outage floods the centre with its outbox (availability changes, status); a smoke alarm
that arrives while the lane hands that flood to alerting must not wait for the rest of it (issue 19). The flood
keeps its own order, and nothing of it is lost or handed over twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from backend.ingest.handoff import Reading
from backend.ingest.journal import Journal
from backend.ingest.pipeline import Pipeline
from backend.ingest.telemetry_lane import readings_of
from backend.ingest.uplink_lane import REST_SLICE
from backend.settings import IngestSettings
from backend.sites import SiteDirectory
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.kinds import AvailabilityState, DeviceKind, EventKind, Priority
from broker.schemas import DeviceAvailability, DeviceEvent, Uplink, decode_uplink, encode
from broker.topics import availability_topic, event_topic
from tests.ingest import helpers

FLOOD = 200  # availability changes of one reconnect, all in the lane's queue before it starts (one round: < ROUND_MAX)


class OrderFeed:
    """Records the order alerting is handed messages in. Handing over a non-life-safety message takes a turn of the
    loop (as the alarm store's commit does), and the smoke alarm arrives during the first of them."""

    def __init__(self, total: int) -> None:
        self.order: list[str] = []
        self.arrive: Callable[[], object] = lambda: None  # what arrives next (its answer is not read)
        self.total = total
        self.all_in = asyncio.Event()

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        await self._take([uplink])

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        return None

    async def _take(self, uplinks: Sequence[Uplink]) -> None:
        first = not self.order
        self.order += [str(getattr(u.message, "msg_id", "")) for u in uplinks]
        if len(self.order) >= self.total:
            self.all_in.set()
        if any(u.priority is not Priority.LIFE_SAFETY for u in uplinks):
            if first:
                self.arrive()
            await asyncio.sleep(0)


class OrderBatchFeed(OrderFeed):
    """The same, taking what the lane has queued in one call (as the alarm service does: one commit per call)."""

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> None:
        await self._take([u for u, _ in items])


def _flood(sites: SiteDirectory) -> list[tuple[str, bytes]]:
    devices = sorted(sites.devices.values(), key=lambda d: d.id)
    now = time.time_ns() // 1_000_000
    out = []
    for i in range(FLOOD):
        d = devices[i % len(devices)]
        state = AvailabilityState.OFFLINE if i % 2 else AvailabilityState.ONLINE
        out.append((str(availability_topic(d.gateway, d.id)), encode(DeviceAvailability(msg_id=f"a-{i}", source_ts_ms=now, received_ts_ms=now, state=state))))
    return out


def _smoke(sites: SiteDirectory) -> tuple[str, bytes]:
    d = next(d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE)
    now = time.time_ns() // 1_000_000
    return str(event_topic(d.gateway, d.id)), encode(DeviceEvent(msg_id="smoke-1", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM))


@pytest.mark.parametrize(("feed_type", "waits_for_at_most"), [(OrderFeed, 1), (OrderBatchFeed, REST_SLICE)])
async def test_a_smoke_alarm_overtakes_a_reconnect_flood_the_lane_is_handing_over(
        tmp_path: Path, sample_site: SiteDirectory, feed_type: type[OrderFeed], waits_for_at_most: int) -> None:
    feed = feed_type(FLOOD + 1)
    acked: Counter[int] = Counter()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1))
    pipeline.bind(acked.update)
    smoke_topic, smoke_payload = _smoke(sample_site)
    feed.arrive = lambda: pipeline.accept(smoke_topic, smoke_payload, FLOOD + 1)
    try:
        async with pipeline:
            for token, (topic, payload) in enumerate(_flood(sample_site), start=1):
                pipeline.accept(topic, payload, token)
            async with asyncio.timeout(10):
                await feed.all_in.wait()
                while pipeline.ujournal.pending(0, 10_000):  # marked done once the lane's round ends: a few turns later
                    await asyncio.sleep(0)
    finally:
        store.close()
    assert "smoke-1" in feed.order, "the smoke alarm reached alerting"
    waited_for = feed.order.index("smoke-1")
    assert waited_for <= waits_for_at_most, f"the smoke alarm waited for {waited_for} availability changes of the flood"
    flood = [m for m in feed.order if m != "smoke-1"]
    assert flood == [f"a-{i}" for i in range(FLOOD)], "the flood is handed over once each, in the order it came"
    assert acked == Counter(range(1, FLOOD + 2)), "every message acknowledged once"


BACKLOG = 10_000  # telemetry messages journaled but not stored when ingest starts (a restart under load)


async def test_replaying_a_telemetry_backlog_never_holds_the_event_loop_for_a_batch(
        tmp_path: Path, sample_site: SiteDirectory, caplog: pytest.LogCaptureFixture) -> None:
    """The store writer re-reads a backlog from the journal in batches; it decoded each batch on the event loop, in
    one step, holding the loop (and with it the uplink lane, so any smoke alarm arriving meanwhile) for as long as
    the whole decode took.

    Self-calibrating for a shared machine: the decode of the same batch is timed first, here; asyncio's debug mode
    then reports every step of a task that holds the loop for more than half of that, and none may be the store
    writer's (its decoding step took all of it)."""
    messages = [helpers.telemetry(i) for i in range(BACKLOG)]
    journal = Journal(tmp_path / "journal" / "telemetry.journal")
    journal.append([(i + 1, f"gw1/t{i}", topic, payload, 0) for i, (topic, payload, _) in enumerate(messages)])
    journal.close()
    start = time.perf_counter()
    for topic, payload, _ in messages:
        readings_of(decode_uplink(topic, payload), 0)
    decode_s = time.perf_counter() - start
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(None))
    # One re-read takes the whole backlog (store_batch_max_readings // 4 messages), as one batch of a longer backlog.
    settings = IngestSettings(batch_linger_ms=1, store_batch_max_readings=4 * BACKLOG, known_devices_only=False)
    pipeline = Pipeline(sample_site, store=store, journal_dir=tmp_path / "journal", settings=settings)
    loop = asyncio.get_running_loop()
    debug, slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = decode_s / 2
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            async with pipeline, asyncio.timeout(60):
                while pipeline.lanes.readings_stored < 2 * BACKLOG:
                    await asyncio.sleep(0.01)
    finally:
        loop.set_debug(debug)
        loop.slow_callback_duration = slow
        store.close()
    assert pipeline.lanes.replayed_from_journal == BACKLOG
    held = [r.getMessage() for r in caplog.records if r.name == "asyncio" and "ingest-store-writer" in r.getMessage()]
    assert not held, f"the store writer held the event loop (decoding the batch takes {decode_s * 1000:.0f} ms): {held}"
