"""What ingest's two lanes share: their counters, the acknowledgement token convention and how they wait.

How this works: the pipeline (backend/ingest/pipeline.py) runs two lanes, the uplink lane (events, availability,
gateway status, patrol: life safety first, backend/ingest/uplink_lane.py) and the telemetry lane (readings,
group commit, backend/ingest/telemetry_lane.py). Both count into one `LaneStats`, served as `lanes` by
/api/ingest/stats and read by the console and /readyz. Both wait the same way when the outside world is away
(`retry_delay`: exponential back-off from settings), and both tell an outage (`is_transient`: offer the message
again, however long it takes) from a message's own failure (retry a bounded number of times, then park it).
An acknowledgement token is the MQTT worker's; `NO_ACK` stands for a message with nothing to acknowledge (QoS 0,
or replayed from the journal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from backend.ingest.handoff import AlertingUnavailable
from backend.settings import IngestSettings

__all__ = ["NO_ACK", "Ack", "LaneStats", "is_transient", "retry_delay"]

log = logging.getLogger(__name__)

NO_ACK = -1  # token of a QoS 0 message (the worker's) or of a journaled one offered again: nothing to acknowledge
Ack = Callable[[Sequence[int]], None]  # acknowledge these tokens to the broker (NO_ACK tokens filtered out)


def is_transient(exc: BaseException) -> bool:
    """A failure of the outside world (the alarm store, the queue or a connection), not of this message."""
    return isinstance(exc, AlertingUnavailable | OperationalError | InterfaceError | ConnectionError | TimeoutError | OSError)


async def retry_delay(settings: IngestSettings, attempt: int) -> None:
    """Back off before attempt `attempt + 1`: doubling from store_retry_min_s up to store_retry_max_s."""
    await asyncio.sleep(min(settings.store_retry_min_s * 2 ** min(attempt, 20), settings.store_retry_max_s))


@dataclass
class LaneStats:
    """What the lanes did; latencies are from intake to hand-off, in seconds (monotonic clock).

    `life_safety_latency_s` is always reached through this object (never kept aside): the metrics exporter
    swaps it for a list that observes every append (backend/ops/metrics.py `watch_pipeline`)."""

    telemetry_messages: int = 0
    readings_stored: int = 0
    readings_new: int = 0
    store_batches: int = 0
    store_failures: int = 0
    replayed_from_journal: int = 0
    uplinks_delivered: int = 0
    feed_failures: int = 0
    dead_letters: int = 0  # messages alerting refused feed_max_attempts times, parked in dead-letters.jsonl
    raised_cleaned: int = 0  # life-safety events refused for their content, then handed over without detail/value
    journal_failures: int = 0
    sync_failures: int = 0  # batches alerting committed whose sync to the disk failed: left pending in the journal
    sync_failed_since_ms: int | None = None  # the alarm store's disk failed a sync then, and none has worked since; None: fine
    sync_failed_why: str = ""
    alerting_down_since_ms: int | None = None  # alerting (alarm store / queue) unavailable since; None: up
    alerting_down_why: str = ""
    alerting_outages: int = 0
    life_safety_latency_s: list[float] = field(default_factory=list)

    def alerting_down(self, exc: BaseException, now_ms: int) -> None:
        """A hand-over to alerting failed for the outside world's reason: count it; the first one logs the outage."""
        self.alerting_outages += 1
        self.alerting_down_why = f"{type(exc).__name__}: {exc}"[:300]
        if self.alerting_down_since_ms is None:
            self.alerting_down_since_ms = now_ms
            log.error("alerting unavailable (%s): uplinks stay in the journal and are offered again until it is back", self.alerting_down_why)

    def sync_failed(self, exc: BaseException, now_ms: int) -> None:
        """Alerting committed messages whose sync to the disk then failed: counted, and the disk is marked failing until a
        later sync works (`sync_worked`), for /readyz and the console's system strip (check `alarm_disk`)."""
        self.sync_failures += 1
        self.sync_failed_why = f"{type(exc).__name__}: {exc}"[:300]
        if self.sync_failed_since_ms is None:
            self.sync_failed_since_ms = now_ms

    def sync_worked(self) -> None:
        if self.sync_failed_since_ms is not None:
            log.warning("the alarm store's disk syncs again")
            self.sync_failed_since_ms = None
            self.sync_failed_why = ""

    def alerting_up(self, now_ms: int) -> None:
        """A hand-over to alerting worked: an outage, if there was one, is over."""
        if self.alerting_down_since_ms is not None:
            log.warning("alerting back after %.1f s", (now_ms - self.alerting_down_since_ms) / 1000)
            self.alerting_down_since_ms = None
            self.alerting_down_why = ""
        self.alerting_outages = 0

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.life_safety_latency_s[-1000:])
        return {
            "telemetry_messages": self.telemetry_messages, "readings_stored": self.readings_stored, "readings_new": self.readings_new,
            "store_batches": self.store_batches, "store_failures": self.store_failures, "replayed_from_journal": self.replayed_from_journal,
            "uplinks_delivered": self.uplinks_delivered, "feed_failures": self.feed_failures, "dead_letters": self.dead_letters,
            "journal_failures": self.journal_failures, "sync_failures": self.sync_failures, "raised_cleaned": self.raised_cleaned,
            "sync_failed_since_ms": self.sync_failed_since_ms, "sync_failed_why": self.sync_failed_why or None,
            "alerting_down": self.alerting_down_since_ms is not None, "alerting_down_since_ms": self.alerting_down_since_ms,
            "alerting_down_why": self.alerting_down_why or None, "alerting_outages": self.alerting_outages,
            "life_safety_p50_ms": round(lat[len(lat) // 2] * 1000, 3) if lat else None,
            "life_safety_p99_ms": round(lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1000, 3) if lat else None,
            "life_safety_max_ms": round(lat[-1] * 1000, 3) if lat else None,
        }
