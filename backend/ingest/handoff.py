"""The seam between ingest and alerting: what ingest hands on, and when.

How this works: ingest calls an `AlertingFeed` (implemented by the alerting service in backend/alarms/).
Device events, availability changes, gateway status and patrol heartbeats go one by one through `on_uplink`
the moment they are validated and de-duplicated: never queued behind telemetry. A feed that also
implements `BatchFeed` gets what the uplink lane has queued at that moment in one call, in order (and is told
when more life-safety messages wait behind them). Telemetry is
flattened into `Reading`s and handed in batches through `on_readings` after it is durable in the
time-series store, so the rules can also look back at stored windows (`Reading` is the store's type,
backend/store/timeseries/model.py, re-exported here for the feeds).

A feed that cannot take a message *now* (its alarm store or queue is away: down, full, locked) raises an
`AlertingUnavailable`: ingest then keeps the message journaled and offers it again, however long the outage
lasts, and never parks it as a poison message. Any other exception is the message's own problem (or a bug):
ingest retries it a bounded number of times, then parks it. The stores raise their own subclasses
(backend.alarms.store.StoreUnavailable, backend.relay.queue.QueueUnavailable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from backend.errors import Unavailable
from backend.store.timeseries.model import Reading
from broker.schemas import Uplink

__all__ = ["AlertingFeed", "AlertingUnavailable", "BatchFeed", "Reading"]


class AlertingUnavailable(Unavailable):
    """The alerting side cannot take messages now; nothing of this message was applied. Offer it again later."""


class AlertingFeed(Protocol):
    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        """A non-telemetry message (event, availability, gateway status, patrol), at once."""
        ...

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        """A batch of readings, already stored."""
        ...


@runtime_checkable
class BatchFeed(AlertingFeed, Protocol):
    """A feed that can also take several non-telemetry messages at once, deciding them in order; ingest uses it
    for what its uplink lane has queued (a storm), so the feed can commit them together."""

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> asyncio.Future[None] | None:
        """Decide and commit `items`; return once that is committed. None: durable already (on the disk). A future: the
        batch is on the disk once it is done (it fails with the disk's OSError if the sync failed); ingest marks the
        messages done in its journal only then, and hands over its next batch meanwhile. `more_coming`: more life-safety
        messages wait behind these (a storm): the feed may publish what it decided after it returns, in order, so that
        the next batch's commit overlaps that work."""
        ...
