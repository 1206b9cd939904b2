"""The ingest path as one component: time-series store, journaled pipeline and MQTT worker, from settings.

How this works: `IngestService` is an async context manager. On entry it opens the store (SQLite by
default, InfluxDB when configured), starts the pipeline (which replays whatever its journals hold from
before), then connects and subscribes the worker; it is ready once subscribed. A retention task drops old
partitions every `timeseries.retention_interval_s`. On exit, in order: stop intake (disconnect; messages
not yet acknowledged are redelivered by the broker to the next worker), stop the lanes (what is journaled
stays journaled), close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

from backend.ingest.handoff import AlertingFeed
from backend.ingest.pipeline import Pipeline
from backend.ingest.worker import IngestWorker
from backend.settings import Settings
from backend.sites.model import SiteDirectory
from backend.store.timeseries.model import StoreUnavailable, TagDirectory, TimeSeriesStore
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.clock import Clock, SystemClock

__all__ = ["IngestService", "open_store"]

log = logging.getLogger(__name__)


def open_store(settings: Settings, sites: SiteDirectory | None) -> TimeSeriesStore:
    """The configured time-series store."""
    ts = settings.timeseries
    tags = TagDirectory(sites)
    if ts.backend == "influx":
        from backend.store.timeseries.influx import InfluxTimeSeries

        if not ts.influx_url or ts.influx_token is None:
            raise ValueError("timeseries.backend = influx needs timeseries.influx_url and timeseries.influx_token")
        return InfluxTimeSeries.from_settings(ts, tags)
    path = ts.sqlite_path or settings.storage.data_dir / "timeseries.sqlite"
    return SqliteTimeSeries(
        path, tags, raw_retention_days=ts.raw_retention_days, minute_retention_days=ts.minute_retention_days,
        hour_retention_days=ts.hour_retention_days, cache_mib=ts.sqlite_cache_mib,
    )


class IngestService:
    def __init__(
        self,
        settings: Settings,
        sites: SiteDirectory,
        broker_host: str,
        broker_port: int,
        *,
        feed: AlertingFeed | None = None,
        store: TimeSeriesStore | None = None,
        clock: Clock | None = None,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.sites = sites
        self.clock = clock or SystemClock()
        self.store = store if store is not None else open_store(settings, sites)
        s = settings
        self.pipeline = Pipeline(
            sites, feed=feed, store=self.store, journal_dir=s.ingest.journal_dir or s.storage.data_dir / "ingest",
            settings=s.ingest, clock=self.clock,
        )
        self._broker = (broker_host, broker_port)
        self._client_id = client_id or f"{s.broker.client_id_prefix}-ingest"
        self._worker: IngestWorker | None = None
        self._retention: asyncio.Task[None] | None = None

    @property
    def worker(self) -> IngestWorker:
        assert self._worker is not None
        return self._worker

    async def __aenter__(self) -> Self:
        s = self.settings
        await self.pipeline.__aenter__()
        try:
            self._worker = IngestWorker(
                self.pipeline, *self._broker, client_id=self._client_id, share_group=s.ingest.share_group, username=s.broker.username,
                password=s.broker.password.get_secret_value() if s.broker.password else None, backoff=s.broker.backoff(),
                hold=self.pipeline.life_safety_busy,
            )
            await self._worker.__aenter__()
        except BaseException:
            await self.pipeline.__aexit__(None, None, None)
            raise
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._retention = self._tg.create_task(self._retention_loop(), name="timeseries-retention")
        return self

    async def _retention_loop(self) -> None:
        while True:
            try:
                dropped = await asyncio.to_thread(self.store.apply_retention, self.clock.now_ms())
                if dropped:
                    log.info("retention dropped %d time-series partitions", dropped)
            except StoreUnavailable as exc:
                log.warning("retention skipped: %s", exc)
            await asyncio.sleep(self.settings.timeseries.retention_interval_s)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(BaseExceptionGroup, asyncio.CancelledError):
                await self._tg.__aexit__(None, None, None)
        if self._worker is not None:
            await self._worker.__aexit__(None, None, None)
        await self.pipeline.__aexit__(None, None, None)
        await asyncio.to_thread(self.store.close)

    def stats(self) -> dict[str, object]:
        snap = self.pipeline.stats.snapshot()
        snap["duplicates"] = self.pipeline.duplicates
        snap["lanes"] = self.pipeline.lanes.snapshot()
        snap["backlog"] = self.pipeline.backlog()
        snap["uplinks_waiting"] = self.pipeline.uplinks_waiting()
        snap["store"] = self.store.name
        return snap
