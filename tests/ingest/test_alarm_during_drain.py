"""A smoke alarm that arrives while ingest drains a backlog waits for one packet of it, not for a burst (issue 19).

The events connection takes the alarm in at once (its queue holds events only), but the main connection reads the
backlog in bursts of `read_burst` packets (64), and a burst scheduled before the uplink lane's turn ran first: the
alarm waited for up to 64 readings to be parsed, decoded and de-duplicated before it was journaled and handed to
alerting. Now every message the intake takes in while a life-safety message waits for the lane answers "yield"
(`Pipeline.accept` returns True), and the connection's burst reader lets the loop run the lane before the next
packet (tests/broker/test_connection.py::test_the_burst_reader_yields_right_after_a_message_its_handler_calls_urgent).
Not while alerting is away: the lane then waits out the outage, and readings keep their full pace meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from backend.ingest.handoff import AlertingUnavailable, Reading
from backend.ingest.pipeline import Pipeline
from backend.settings import IngestSettings
from backend.sites import SiteDirectory
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, Uplink, encode
from broker.topics import event_topic
from tests.ingest import helpers
from tests.waiting import until


class SwitchableFeed:
    """Alerting, up or away (the alarm store down: every hand-over raises AlertingUnavailable)."""

    def __init__(self) -> None:
        self.down = False
        self.smoke: list[str] = []
        self.handed = asyncio.Event()

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        if self.down:
            raise AlertingUnavailable("the alarm store is down")
        self.smoke.append(str(getattr(uplink.message, "msg_id", "")))
        self.handed.set()

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        return None


def _smoke(sites: SiteDirectory, msg_id: str) -> tuple[str, bytes]:
    d = next(d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE)
    ts = helpers.T0
    return str(event_topic(d.gateway, d.id)), encode(DeviceEvent(msg_id=msg_id, source_ts_ms=ts, received_ts_ms=ts, event=EventKind.SMOKE_ALARM))


async def test_while_a_smoke_alarm_waits_for_the_lane_every_reading_taken_in_tells_the_reader_to_yield(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    feed = SwitchableFeed()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    settings = IngestSettings(batch_linger_ms=1, known_devices_only=False, store_retry_min_s=30.0, store_retry_max_s=30.0)
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=settings)
    backlog = iter(helpers.telemetry(i) for i in range(1_000))
    token = iter(range(1, 10_000))

    def reading() -> bool:
        topic, payload, _ = next(backlog)
        return pipeline.accept(topic, payload, next(token))

    try:
        async with pipeline, asyncio.timeout(30):
            assert not reading(), "no alarm waits: the backlog is read in full bursts"
            smoke_topic, smoke_payload = _smoke(sample_site, "smoke-1")
            assert pipeline.accept(smoke_topic, smoke_payload, next(token), events_copy=True), "the events connection's alarm"
            assert reading(), "a reading taken in while the alarm waits for the uplink lane: the main connection yields"
            assert pipeline.accept(smoke_topic, smoke_payload, next(token)), "the main connection's copy of the alarm: it yields too"
            await feed.handed.wait()
            assert feed.smoke == ["smoke-1"]
            # the lane gives the consoles' feed streams one turn of the loop after the hand-over, then says it is done
            await until(lambda: not pipeline.life_safety_busy(), 1, "the lane done with the alarm")
            assert not reading(), "the alarm is with alerting: the backlog is read in full bursts again"

            feed.down = True  # alerting away: the lane keeps the next alarm journaled and waits before offering it again
            smoke_topic, smoke_payload = _smoke(sample_site, "smoke-2")
            pipeline.accept(smoke_topic, smoke_payload, next(token), events_copy=True)
            while pipeline.lanes.alerting_down_since_ms is None:
                await asyncio.sleep(0)
            assert pipeline.uplinks_waiting() == 1, "the alarm waits in the lane for alerting to come back"
            assert not reading(), "while the lane waits out an outage, readings keep their pace (no yield per packet)"
    finally:
        store.close()
