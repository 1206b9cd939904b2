"""The single-process centre in one event loop, for fault tests: the journaled ingest pipeline feeding the real
alarm service on a given alarm-store engine, with a listener that counts ladder starts (the escalation bridge's
rule: a committed Persist whose audit holds the raise)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import sqlalchemy as sa

from alerting.model import Persist
from backend.alarms.service import AlarmService
from backend.ingest.pipeline import Pipeline
from backend.settings import IngestSettings
from backend.sites.model import SiteDirectory
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from backend.stream import Event
from broker.clock import SystemClock

__all__ = ["LadderStarts", "centre", "send", "until"]


class LadderStarts:
    """Counts what starts a ladder, per alarm id: the escalation bridge's rule, applied to committed actions."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()

    async def __call__(self, actions: Sequence[Event]) -> None:
        for a in actions:
            if isinstance(a, Persist) and a.alarm.is_open and any(e.from_state is None for e in a.audit):
                self.started[a.alarm.id] += 1


async def until(pred: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def centre(tmp_path: Path, sites: SiteDirectory, alarm_db: sa.Engine, **ingest: object) -> AsyncIterator[tuple[Pipeline, AlarmService, LadderStarts]]:
    service = AlarmService.for_sites(alarm_db, sites, SystemClock(), tick_s=3600)
    ladders = LadderStarts()
    service.stream.subscribe(ladders, name="ladder-starts")
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sites))
    settings = IngestSettings(**{"batch_linger_ms": 1, "store_retry_min_s": 0.05, "store_retry_max_s": 0.5, "feed_max_attempts": 3, **ingest})  # type: ignore[arg-type]
    pipeline = Pipeline(sites, feed=service, store=store, journal_dir=tmp_path / "journal", settings=settings)
    acked: Counter[int] = Counter()
    pipeline.bind(acked.update)
    try:
        async with service, pipeline:
            yield pipeline, service, ladders
    finally:
        store.close()


_tokens = itertools.count(1)


def send(pipeline: Pipeline, topic: str, payload: bytes) -> None:
    """One QoS 1 message into ingest, as the MQTT worker's callback hands it over."""
    pipeline.accept(topic, payload, next(_tokens))
