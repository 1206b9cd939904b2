"""The telemetry lane: readings, committed in groups, then stored, then handed to alerting.

How this works (two tasks on the event loop, each blocking step in a thread of its own):

    accept ──▶ rows in memory ──(linger / full)──▶ commit (telemetry.journal, one transaction) ──▶ acknowledge
                                                        └──▶ store queue ──▶ store writer: store ──▶ feed ──▶ watermark

- `run_commits` collects messages for up to `batch_linger_ms` or `batch_max_messages`, commits them to its
  journal in one transaction (in the journal's thread), acknowledges them, and queues the decoded readings for
  the store writer. A duplicate is acknowledged after the commit that follows it (never before the original
  is durable).
- `run_store_writer` writes batches to the time-series store (in the store's thread), in chunks of at most
  `store_batch_max_readings`, then hands them to the feed, and only then moves the journal's watermark
  (`done_through`): a worker killed in between replays the batch from the journal, and both the store (keyed
  by device, metric, source_ts_ms) and a durable feed are idempotent, so a replay duplicates nothing.
- The store down: retried with back-off; intake goes on, because messages are durable in the journal.
  Readings beyond `max_buffered_readings` are dropped from memory and re-read from the journal when the writer
  catches up; so is a backlog found at start. Re-read messages are decoded in the journal's thread, not on the
  event loop, so the uplink lane keeps its turns while a backlog drains.
- Readings wait in memory as `Reading`s, which the garbage collector does not track (a msgspec Struct with gc=False,
  ~0.1 µs to build): thousands of queued readings are walked by no collection. Before, they waited as tuples
  (building two frozen dataclasses per message had cost the loop ~7 of the ~25 µs its intake takes per message), and
  every tuple was still walked once by a young collection before it dropped out of its sight (issue 19: tuples were
  8,000 of the ~10,000 objects each young collection walked at a street's steady load).
- Nothing in the uplink lane waits for any of this: separate queue, tasks, journal file and threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from backend.ingest.handoff import AlertingFeed, Reading
from backend.ingest.journal import Journal, JournalError
from backend.ingest.lanes import Ack, LaneStats, is_transient, retry_delay
from backend.settings import IngestSettings
from backend.store.timeseries.model import StoreUnavailable, TimeSeriesStore
from broker.clock import Clock
from broker.errors import MessageRejected
from broker.schemas import Telemetry, Uplink, decode_uplink

__all__ = ["TelemetryLane", "readings_of"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def readings_of(uplink: Uplink, received_ms: int) -> list[Reading]:
    """A telemetry message flattened: one `Reading` per metric it carries (ids as plain str: the topic's DeviceId and
    GatewayId are str subclasses, which the garbage collector tracks)."""
    msg = uplink.message
    assert isinstance(msg, Telemetry)
    assert uplink.topic.device is not None
    device, gateway, ts, drill = str(uplink.topic.device), str(uplink.topic.gateway), msg.source_ts_ms, msg.drill
    return [Reading(device, gateway, metric, value, ts, received_ms, drill) for metric, value in msg.readings.items()]


@dataclass(frozen=True, slots=True)
class _Batch:
    first_seq: int
    last_seq: int
    readings: list[Reading]


class TelemetryLane:
    def __init__(self, journal: Journal, store: TimeSeriesStore, *, feed: AlertingFeed | None, settings: IngestSettings, clock: Clock,
                 lanes: LaneStats, ack: Ack, journal_exec: ThreadPoolExecutor, store_exec: ThreadPoolExecutor) -> None:
        self.journal = journal
        self._store = store
        self._feed = feed
        self._settings = settings
        self._clock = clock
        self._lanes = lanes
        self._ack = ack
        self._journal_exec = journal_exec
        self._store_exec = store_exec
        self._loop = asyncio.get_running_loop()
        self._seq = journal.last_seq
        self._journaled_through = journal.last_seq
        self._next_store_seq = journal.done_through + 1
        # Rows waiting for the next commit (touched only on the event loop thread).
        self._rows: list[tuple[int, str, str, bytes, int]] = []
        self._readings: list[Reading] = []
        self._acks: list[int] = []
        self._first_seq = 0
        self._has_data = asyncio.Event()
        self._full = asyncio.Event()
        # Committed readings waiting for the store writer.
        self._store_q: deque[_Batch] = deque()
        self._buffered_readings = 0
        self._store_wakeup = asyncio.Event()
        self._store_wakeup.set()  # the writer looks at the journal once at start: there may be a backlog

    # -- intake (on the event loop thread, from Pipeline.accept) --------------------------------------------

    def take(self, key: str, topic: str, payload: bytes, *, received_ms: int, readings: list[Reading], token: int) -> None:
        """A new message: committed with the lane's next group."""
        self._seq += 1
        if not self._rows:
            self._first_seq = self._seq
        self._rows.append((self._seq, key, topic, payload, received_ms))
        self._readings += readings
        self._acks.append(token)
        self._has_data.set()
        if len(self._rows) >= self._settings.batch_max_messages:
            self._full.set()

    def repeat(self, token: int) -> None:
        """A duplicate: acknowledged after the next commit."""
        self._acks.append(token)
        self._has_data.set()

    def backlog(self) -> int:
        """Telemetry messages journaled but not yet stored."""
        return max(0, self._journaled_through - self._next_store_seq + 1)

    # -- group commit ------------------------------------------------------------------------------------------

    async def run_commits(self) -> None:
        linger = self._settings.batch_linger_ms / 1000
        while True:
            await self._has_data.wait()
            if linger > 0 and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger):
                        await self._full.wait()
            rows, readings, acks, first = self._rows, self._readings, self._acks, self._first_seq
            self._rows, self._readings, self._acks = [], [], []
            self._has_data.clear()
            self._full.clear()
            await asyncio.sleep(0)  # let a life-safety event that arrived meanwhile go first
            attempt = 0
            while rows:
                try:
                    await self._in(self._journal_exec, lambda rows=rows: self.journal.append(rows))  # type: ignore[misc]
                    break
                except JournalError:
                    self._lanes.journal_failures += 1
                    log.exception("telemetry journal refused a commit; retrying, not acknowledging")
                    await retry_delay(self._settings, attempt)
                    attempt += 1
            self._ack(acks)
            if not rows:
                continue
            self._lanes.telemetry_messages += len(rows)
            self._journaled_through = rows[-1][0]
            if self._buffered_readings + len(readings) <= self._settings.max_buffered_readings:
                self._buffered_readings += len(readings)
                self._store_q.append(_Batch(first, rows[-1][0], readings))
            self._store_wakeup.set()  # dropped from memory: the writer re-reads it from the journal

    # -- store writer ------------------------------------------------------------------------------------------

    async def _next_batch(self) -> _Batch:
        """The next readings to store, in sequence order: from memory when they are there, else the journal."""
        limit = self._settings.store_batch_max_readings
        while True:
            q = self._store_q
            while q and q[0].last_seq < self._next_store_seq:
                self._buffered_readings -= len(q.popleft().readings)  # already re-read from the journal
            if q and q[0].first_seq == self._next_store_seq:
                batch = q.popleft()
                self._buffered_readings -= len(batch.readings)
                readings, last = list(batch.readings), batch.last_seq
                while q and q[0].first_seq == last + 1 and len(readings) < limit:
                    more = q.popleft()
                    self._buffered_readings -= len(more.readings)
                    readings += more.readings
                    last = more.last_seq
                return _Batch(batch.first_seq, last, readings)
            if self._next_store_seq <= self._journaled_through:
                after = self._next_store_seq - 1
                replayed = await self._in(self._journal_exec, lambda after=after: self._reread(after, max(1, limit // 4)))  # type: ignore[misc]
                if replayed is not None:
                    batch, count = replayed
                    self._lanes.replayed_from_journal += count
                    return batch
            self._store_wakeup.clear()
            await self._store_wakeup.wait()

    def _reread(self, after: int, limit: int) -> tuple[_Batch, int] | None:
        """In the journal's thread: the next journaled messages after `after`, decoded into readings, and how many
        messages they were. Decoding a backlog's batch (up to ~1,250 messages) here rather than on the event loop
        keeps the loop turning meanwhile, so a smoke alarm is not held behind the readings being replayed."""
        entries = self.journal.pending(after, limit)
        if not entries:
            return None
        readings: list[Reading] = []
        for e in entries:
            with contextlib.suppress(MessageRejected):
                readings += readings_of(decode_uplink(e.topic, e.payload), e.received_ms)
        return _Batch(entries[0].seq, entries[-1].seq, readings), len(entries)

    async def run_store_writer(self) -> None:
        store = self._store
        while True:
            batch = await self._next_batch()
            # Writes of at most store_batch_max_readings: one huge write would hold the GIL (building its rows)
            # long enough to delay the uplink lane on the loop thread. A crash between chunks replays the whole
            # batch, which the idempotent store absorbs.
            new, size = 0, self._settings.store_batch_max_readings
            readings: list[Reading] = []
            for i in range(0, len(batch.readings), size):
                rows = batch.readings[i:i + size]
                attempt = 0
                while True:
                    try:
                        written, chunk = await self._in(self._store_exec, lambda rows=rows: _write(store, rows))  # type: ignore[misc]
                        new += written
                        readings += chunk
                        break
                    except StoreUnavailable as exc:
                        self._lanes.store_failures += 1
                        if attempt == 0:
                            log.warning("time-series store unavailable (%s); readings wait in the journal, retrying", exc.why)
                        await retry_delay(self._settings, attempt)
                        attempt += 1
            # The feed goes BEFORE the watermark moves (issue 10): a worker killed in between replays the batch
            # from the journal, so a durable feed (backend/relay's PostgreSQL queue, idempotent per message)
            # never misses readings; the store write above is idempotent too.
            if self._feed is not None and readings:
                attempt = 0
                while True:
                    try:
                        await self._feed.on_readings(readings)
                        break
                    except Exception as exc:
                        self._lanes.feed_failures += 1
                        if not is_transient(exc):
                            log.exception("alerting refused a batch of %d readings (they are stored)", len(readings))
                            break
                        # Alerting is away: the watermark stays, the readings wait in the journal (as for the store).
                        self._lanes.alerting_down(exc, self._clock.now_ms())
                        await retry_delay(self._settings, attempt)
                        attempt += 1
            await self._in(self._journal_exec, lambda batch=batch: self.journal.mark_done_through(batch.last_seq))  # type: ignore[misc]
            self._next_store_seq = batch.last_seq + 1
            self._lanes.store_batches += 1
            self._lanes.readings_stored += len(batch.readings)
            self._lanes.readings_new += new

    async def _in(self, ex: ThreadPoolExecutor, fn: Callable[[], _T]) -> _T:
        return await self._loop.run_in_executor(ex, fn)


def _write(store: TimeSeriesStore, readings: list[Reading]) -> tuple[int, list[Reading]]:
    """In the store's thread: the readings written; how many were new, and the readings (for the feed)."""
    return store.write(readings), readings
