"""A smoke alarm is not held in the broker behind a backlog queued for ingest (issue 19).

Mosquitto delivers a session's messages in order: with one connection, a smoke alarm published while thousands of
readings wait for ingest (a gateway's reconnect flood, ingest restarting) reached ingest only after all of them.
Device events also come on a connection of their own (backend/ingest/worker.py), whose queue holds nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.ingest.handoff import Reading
from backend.ingest.pipeline import Pipeline
from backend.ingest.service import IngestService
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.process import MosquittoProcess
from broker.schemas import DeviceEvent, Uplink
from tests.ingest import helpers
from tests.ingest.test_store_outage import EMPTY_SITE, settings

pytestmark = pytest.mark.mosquitto

BACKLOG = 3000


class SmokeWatch:
    """Notes how many messages ingest had taken in when the smoke alarm reached alerting."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.accepted_at_smoke: int | None = None
        self.readings = 0
        self.smoke = asyncio.Event()
        self.drained = asyncio.Event()

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        if isinstance(uplink.message, DeviceEvent) and self.accepted_at_smoke is None:
            assert self.pipeline is not None
            self.accepted_at_smoke = self.pipeline.stats.accepted
            self.smoke.set()

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        self.readings += len(readings)
        if self.readings >= 2 * BACKLOG:
            self.drained.set()


def publish_backlog_then_smoke(host: str, port: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-backlog")
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    for i in range(BACKLOG):
        topic, payload, _ = helpers.telemetry(i)
        client.publish(topic, payload, qos=1)
    topic, payload = helpers.smoke(0)
    client.publish(topic, payload, qos=1).wait_for_publish(30)
    client.loop_stop()
    client.disconnect()


async def test_a_smoke_alarm_published_behind_a_queued_backlog_reaches_alerting_before_the_backlog(
    tmp_path: Path, mosquitto: MosquittoProcess,
) -> None:
    def store() -> SqliteTimeSeries:  # the service closes its store on the way out
        return SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(EMPTY_SITE))

    watch = SmokeWatch()
    s = settings(tmp_path)
    async with IngestService(s, EMPTY_SITE, mosquitto.host, mosquitto.port, feed=watch, store=store(), client_id="t-alarm-conn"):
        pass  # ingest's persistent sessions exist: the broker queues for them while ingest is away
    await asyncio.to_thread(publish_backlog_then_smoke, mosquitto.host, mosquitto.port)
    svc = IngestService(s, EMPTY_SITE, mosquitto.host, mosquitto.port, feed=watch, store=store(), client_id="t-alarm-conn")
    watch.pipeline = svc.pipeline
    async with svc:
        await asyncio.wait_for(watch.smoke.wait(), 30)
        await asyncio.wait_for(watch.drained.wait(), 60)
    assert watch.accepted_at_smoke is not None
    assert watch.accepted_at_smoke < BACKLOG, (
        f"the smoke alarm, published last, reached alerting after {watch.accepted_at_smoke} of {BACKLOG} queued readings were taken in")
    assert watch.readings == 2 * BACKLOG, "every reading of the backlog stored and handed on"
