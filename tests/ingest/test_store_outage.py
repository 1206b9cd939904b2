"""Ingest against a real Mosquitto: the store goes down for 10 s mid-stream and nothing is lost; life-safety
events keep flowing to alerting while it is down; duplicates and bad messages are handled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.ingest.service import IngestService
from backend.settings import Settings, load_settings
from backend.sites.model import SiteDirectory
from backend.store.timeseries import SqliteTimeSeries, TagDirectory
from broker.process import MosquittoProcess
from tests.ingest.helpers import Publisher, RecordingFeed, smoke, telemetry

pytestmark = pytest.mark.mosquitto

EMPTY_SITE = SiteDirectory({}, {}, {}, {}, {}, {}, {}, {}, {})


def settings(tmp_path: Path) -> Settings:
    return load_settings(storage={"data_dir": tmp_path / "var"}, ingest={"store_retry_min_s": 0.05, "store_retry_max_s": 0.5, "batch_linger_ms": 2,
                                                                                   "known_devices_only": False})  # synthetic devices


async def wait_until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def service(tmp_path: Path, mosquitto: MosquittoProcess) -> AsyncIterator[tuple[IngestService, SqliteTimeSeries, RecordingFeed]]:
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(EMPTY_SITE))
    feed = RecordingFeed()
    async with IngestService(settings(tmp_path), EMPTY_SITE, mosquitto.host, mosquitto.port, feed=feed, store=store) as svc:
        yield svc, store, feed


@pytest.mark.slow
async def test_a_10_s_store_outage_mid_stream_loses_nothing_and_events_keep_flowing(
    service: tuple[IngestService, SqliteTimeSeries, RecordingFeed], mosquitto: MosquittoProcess,
) -> None:
    svc, store, feed = service
    pub = Publisher(mosquitto.host, mosquitto.port, count=4200, rate=300, event_every=300).start()
    try:
        await wait_until(lambda: pub.sent >= 600, 30, "the stream to get going")
        store.set_down("outage drill: the disk is gone")
        events_before = len(feed.event_ids())
        outage_started = time.monotonic()
        await asyncio.sleep(10)  # the outage itself (the stream goes on meanwhile), not a wait for a timer
        during = [t for t in feed.uplink_times if t >= outage_started]
        backlog = svc.pipeline.backlog()
        store.set_down(None)
        await wait_until(pub.done.is_set, 60, "the publisher to finish")
        await wait_until(lambda: store.count_raw() >= len(pub.expected), 60, "every reading in the store")
    finally:
        pub.close()
    assert svc.pipeline.lanes.store_failures > 0, "the outage was not noticed: the test proves nothing"
    assert backlog > 2000, f"only {backlog} messages waited in the journal during the outage"
    assert len(during) >= 8, "life-safety events did not reach alerting while the store was down"
    assert len(feed.event_ids()) > events_before
    assert set(store.raw_points()) == pub.expected  # nothing lost, nothing made up
    assert store.count_raw() == len(pub.expected) == 2 * 4200  # nothing twice
    assert sorted(feed.event_ids()) == sorted(pub.events)
    assert len(feed.readings) == len(pub.expected)  # alerting got every reading once it was stored


async def test_a_redelivered_message_is_stored_and_handed_on_once(
    service: tuple[IngestService, SqliteTimeSeries, RecordingFeed], mosquitto: MosquittoProcess,
) -> None:
    svc, store, feed = service
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dup-publisher")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        for _ in range(3):  # the edge retries: same msg_id each time
            for i in range(5):
                topic, payload, _readings = telemetry(i)
                client.publish(topic, payload, qos=1).wait_for_publish(10)
            etopic, epayload = smoke(7)
            client.publish(etopic, epayload, qos=1).wait_for_publish(10)
        client.publish("sw/v1/gw/gw1/dev/d1/telemetry", b"{not json", qos=1).wait_for_publish(10)
        await wait_until(lambda: svc.pipeline.stats.duplicates >= 12 and sum(svc.pipeline.stats.rejected.values()) >= 1, 20, "all copies")
        await wait_until(lambda: len(feed.readings) >= 10, 20, "the readings")
    finally:
        client.loop_stop()
        client.disconnect()
    assert store.count_raw() == 10
    assert feed.event_ids() == ["e7"]
    assert len(feed.readings) == 10
    assert dict(svc.pipeline.stats.rejected) == {"malformed_json": 1}
