"""A real ingest pipeline feeding the real alarm service, driven synchronously so Hypothesis can call it.

How this works: `PipelineHarness` owns a private event loop (not pytest's: Hypothesis calls the test body
many times and needs a plain function). On open it enters `backend.ingest.pipeline.Pipeline` (journals in a temp
folder, the SQLite time-series store) with a recording wrapper around `AlarmService` as its feed, and binds
an acker that records every acknowledged token. `send(messages)` calls `Pipeline.accept` for each message,
in order, on that loop, then runs the loop until every well-formed message it sent has reached the alarm
service (uplinks) or the store (telemetry) and every token is acknowledged; `close()` stops everything.

Invariants the tests lean on: tokens are unique per harness; a good message's msg_id is unique per harness
(a global counter), so a repeat is a replay on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.alarms.service import AlarmService
from backend.ingest.handoff import Reading
from backend.ingest.pipeline import Pipeline
from backend.settings import IngestSettings
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.timeseries import SqliteTimeSeries, TagDirectory
from broker.clock import SystemClock
from broker.kinds import DeviceKind, EventKind
from broker.schemas import Telemetry, Uplink, encode
from broker.topics import event_topic, telemetry_topic

__all__ = ["Msg", "PipelineHarness", "good_event", "good_telemetry"]

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Msg:
    """One message to feed in. `good`: it must be accepted and delivered; `dup_of`: a replay of that msg_id."""

    topic: str
    payload: bytes
    good: bool
    msg_id: str | None = None
    telemetry: bool = False
    dup_of: str | None = None


def good_event(sites: SiteDirectory, k: int = 0, *, ts_ms: int | None = None) -> Msg:
    smokes = [d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE]
    d = smokes[k % len(smokes)]
    now = ts_ms if ts_ms is not None else time.time_ns() // 1_000_000
    mid = f"fz-e{next(_ids)}"
    # Written as raw JSON: the Struct would refuse to build a message the contract rejects, and tests need those too.
    payload = json.dumps({"msg_id": mid, "source_ts_ms": now, "received_ts_ms": now, "event": EventKind.SMOKE_ALARM.value}).encode()
    return Msg(str(event_topic(d.gateway, d.id)), payload, True, mid)


def good_telemetry(sites: SiteDirectory, k: int = 0) -> Msg:
    meters = [d for d in sites.devices.values() if d.kind is DeviceKind.ELECTRICAL]
    d = meters[k % len(meters)]
    now = time.time_ns() // 1_000_000
    mid = f"fz-t{next(_ids)}"
    payload = encode(Telemetry(msg_id=mid, source_ts_ms=now, received_ts_ms=now, readings={"temperature_c": 21.5}))
    return Msg(str(telemetry_topic(d.gateway, d.id)), payload, True, mid, telemetry=True)


@dataclass
class RecordingAlarms:
    """The AlertingFeed seam: records what reached the real alarm service, then hands it on."""

    service: AlarmService
    uplink_ids: Counter[str] = field(default_factory=Counter)
    readings: int = 0

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        await self.service.on_uplink(uplink, received_ms)
        self.uplink_ids[getattr(uplink.message, "msg_id", "")] += 1

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        await self.service.on_readings(readings)
        self.readings += len(readings)


class PipelineHarness:
    def __init__(self, tmp: Path, sites: SiteDirectory) -> None:
        self.sites = sites
        self.loop = asyncio.new_event_loop()
        self.acked: Counter[int] = Counter()
        self._tokens = itertools.count(1)
        self.store = SqliteTimeSeries(tmp / "ts.sqlite", TagDirectory(sites))
        self.service = AlarmService.for_sites(make_engine(sqlite_url(tmp / "alarms.db")), sites, SystemClock(), tick_s=3600)
        self.feed = RecordingAlarms(self.service)
        self.pipeline = Pipeline(sites, feed=self.feed, store=self.store, journal_dir=tmp / "journal",
                                 settings=IngestSettings(batch_linger_ms=1, store_retry_min_s=0.01, store_retry_max_s=0.05))
        self.pipeline.bind(self.acked.update)
        self.loop.run_until_complete(self.service.__aenter__())
        self.loop.run_until_complete(self.pipeline.__aenter__())

    def send(self, messages: Sequence[Msg], timeout_s: float = 20.0) -> list[int]:
        """Accept each message in order; wait until the good ones are delivered and all are acknowledged."""
        tokens = [next(self._tokens) for _ in messages]
        self.loop.run_until_complete(self._send(messages, tokens, timeout_s))
        return tokens

    async def _send(self, messages: Sequence[Msg], tokens: list[int], timeout_s: float) -> None:
        stored_before = self.pipeline.lanes.readings_stored
        for m, token in zip(messages, tokens, strict=True):
            self.pipeline.accept(m.topic, m.payload, token)
        want_uplinks = [m.msg_id for m in messages if m.good and not m.telemetry and m.msg_id]
        want_readings = sum(1 for m in messages if m.good and m.telemetry)
        deadline = time.monotonic() + timeout_s
        failures = self.pipeline.lanes.feed_failures
        while True:
            self.check_alive()
            if self.pipeline.lanes.feed_failures > failures:
                raise AssertionError("the alarm service refused a message the contract accepted (the uplink lane re-offers it for ever)")
            delivered = all(self.feed.uplink_ids[i] for i in want_uplinks)
            stored = self.pipeline.lanes.readings_stored - stored_before >= want_readings
            if delivered and stored and all(self.acked[t] for t in tokens):
                return
            if time.monotonic() > deadline:
                missing = [i for i in want_uplinks if not self.feed.uplink_ids[i]]
                raise AssertionError(f"not delivered within {timeout_s} s: uplinks {missing[:5]}, readings stored "
                                     f"{self.pipeline.lanes.readings_stored - stored_before}/{want_readings}, "
                                     f"unacked {[t for t in tokens if not self.acked[t]][:5]}, lanes {self.pipeline.lanes.snapshot()}")
            await asyncio.sleep(0.002)

    def check_alive(self) -> None:
        """The pipeline's lanes run for ever: one that ended has crashed."""
        for task in self.pipeline._tasks:
            if task.done():
                raise AssertionError(f"pipeline task {task.get_name()} ended: {task.exception() if not task.cancelled() else 'cancelled'}")

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.pipeline.__aexit__(None, None, None))
            self.loop.run_until_complete(self.service.__aexit__(None, None, None))
            self.store.close()
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
