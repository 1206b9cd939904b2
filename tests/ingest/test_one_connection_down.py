"""A device event reaches alerting, once, while either of ingest's two connections is down (issue 19).

Ingest takes device events on two connections (backend/ingest/worker.py): the main one, subscribed to everything a
gateway may publish, and the events one, subscribed to events alone so that a smoke alarm never queues in the broker
behind a backlog of readings. Each carries every event on its own: with the events connection away, the main one's
copy is the alarm; with the main one away, the events one's. Back again, a connection's persistent session delivers
its queued copies, which are the expected second copies: handed to alerting never twice, and not counted as
redeliveries.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.ingest.service import IngestService
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.connection import ReconnectingClient
from broker.process import MosquittoProcess
from tests.ingest import helpers
from tests.ingest.test_store_outage import EMPTY_SITE, settings, wait_until

pytestmark = pytest.mark.mosquitto


def publish_smoke(host: str, port: int, i: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-smoke-{i}")
    client.connect(host, port)
    client.loop_start()
    topic, payload = helpers.smoke(i)
    client.publish(topic, payload, qos=1).wait_for_publish(30)
    client.loop_stop()
    client.disconnect()


async def test_a_smoke_alarm_reaches_alerting_once_while_either_connection_is_down(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    feed = helpers.RecordingFeed()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(EMPTY_SITE))
    async with IngestService(settings(tmp_path), EMPTY_SITE, mosquitto.host, mosquitto.port, feed=feed, store=store, client_id="t-one-down") as svc:
        main: ReconnectingClient = svc.worker._mqtt
        events: ReconnectingClient = svc.worker._alarms

        async def smoke(i: int) -> None:
            await asyncio.to_thread(publish_smoke, mosquitto.host, mosquitto.port, i)
            await wait_until(lambda: f"e{i}" in feed.event_ids(), 20, f"smoke alarm e{i} in alerting")

        async def back(connection: ReconnectingClient) -> None:
            await connection.__aenter__()
            await connection.wait_ready(20)

        await events.close()  # the events connection away (its session keeps what is published meanwhile)
        await smoke(1)  # on the main connection
        await back(events)  # delivers its queued copy of e1, then e2: in order
        await smoke(2)
        await main.close()  # the main connection away
        await smoke(3)  # on the events connection
        await back(main)
        await smoke(4)
        # each event came on both connections (one of them from its session's queue): both copies taken in
        await wait_until(lambda: all(svc.pipeline._paths.get(f"gw1/e{i}") == 3 for i in range(1, 5)), 20, "both copies of every event")
    assert feed.event_ids() == ["e1", "e2", "e3", "e4"], "every smoke alarm handed to alerting once, in order"
    assert svc.pipeline.duplicates == 0, "a connection's queued copy of an event the other one delivered is no redelivery"
