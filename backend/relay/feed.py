"""The ingest side of the relay: an AlertingFeed that writes to the PostgreSQL uplink queue.

How this works: `QueueFeed` is what an ingest worker (`shouwang ingest`) hands to its pipeline instead of the
in-process alarm service. It owns two queue connections, each on its own thread: one for uplinks (events,
availability, status, patrol: one row per call, committed before the call returns) and one for readings
(one multi-row insert per chunk), so a life-safety event never waits behind a telemetry batch.

What the pipeline relies on (backend/ingest/: its two lanes): `on_uplink` returns only once the row is committed and
raises if it is not (the message then stays pending in the worker's journal and is offered again);
`on_readings` retries with back-off until PostgreSQL takes the rows (it must not raise: the pipeline would
log and move on), and the pipeline moves its journal watermark only after it returns. Together with the
unique key per message this makes the hand-off at-least-once from the journal and exactly-once in the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self

from backend.ingest.handoff import Reading
from backend.relay.queue import QueueUnavailable, UplinkQueue, readings_rows
from backend.settings import RelaySettings
from broker.schemas import Uplink

__all__ = ["QueueFeed"]

log = logging.getLogger(__name__)


class QueueFeed:
    def __init__(self, url: str, settings: RelaySettings | None = None) -> None:
        self.settings = settings or RelaySettings()
        self._uplinks = UplinkQueue(url)
        self._readings = UplinkQueue(url)
        self._u_exec = ThreadPoolExecutor(1, thread_name_prefix="relay-uplinks")
        self._r_exec = ThreadPoolExecutor(1, thread_name_prefix="relay-readings")
        self.stats = {"uplink_rows": 0, "readings_rows": 0, "retries": 0}

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._u_exec, self._uplinks.ensure_tables)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for q, ex in ((self._uplinks, self._u_exec), (self._readings, self._r_exec)):
            ex.submit(q.close)
            ex.shutdown(wait=True)

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._u_exec, self._uplinks.put_uplink, uplink, received_ms)
        self.stats["uplink_rows"] += 1

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        loop = asyncio.get_running_loop()
        rows = readings_rows(readings)
        chunk = self.settings.insert_chunk_rows
        for i in range(0, len(rows), chunk):
            part = rows[i:i + chunk]
            delay = 0.1
            while True:
                try:
                    await loop.run_in_executor(self._r_exec, self._readings.put_rows, part)
                    break
                except QueueUnavailable as exc:
                    self.stats["retries"] += 1
                    log.warning("uplink queue refused %d readings rows (%s); retrying in %.1f s", len(part), exc.why, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.settings.retry_max_s)
            self.stats["readings_rows"] += len(part)
