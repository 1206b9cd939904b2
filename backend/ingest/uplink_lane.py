"""The uplink lane: events, availability, gateway status and patrol, life safety first, straight to alerting.

How this works (`UplinkLane.run`, one task on the event loop):

    accept ──▶ priority queue (life safety, then the rest; in arrival order within a priority; a duplicate's
               acknowledgement after the messages of its priority)
           ──▶ take what is queued (up to 256) ──▶ journal it (uplink.journal, one small commit) ──▶ acknowledge
           ──▶ hand the life-safety messages to alerting, then the rest ──▶ mark them done in the journal

- Nothing here waits for telemetry: its own queue, task, journal file and commit. The commit runs on the loop
  thread on purpose (see `run`).
- Life-safety messages of a round are decided and committed on their own, ahead of the rest of the round: a
  smoke alarm never waits for the commit of 200 availability changes that happened to arrive with it. A feed
  that is a `BatchFeed` takes each group in one call (the rest in slices of `REST_SLICE`); a refused batch is
  handed over one by one, so a single bad message is found and dealt with on its own.
- A life-safety message that arrives while a round hands over the rest (a smoke alarm during a gateway's
  reconnect flood) stops that round at the next slice or message: what is left goes back in the queue in its
  own place (still journaled, already acknowledged), and the alarm goes first in the next round.
- A duplicate comes through as an acknowledgement only (seq 0): acknowledged after the commit that follows it,
  so never before the original is durable.
- The round's acknowledgements leave on the loop's next turn, after the commit and once the life-safety messages
  are on their way to alerting (see `run`).
- Alerting away (`is_transient`: the alarm store or the queue is down, full, locked): the round stops, every
  undelivered message goes back in the queue (still journaled, not marked done), the lane backs off and tries
  again, however long it takes; `lanes.alerting_down` says so until a hand-over works.
- Any other error is the message's own: retried `feed_max_attempts` times, then parked in the dead letters.
  A life-safety event is first offered once more without its cosmetic fields (detail, value), so a fire
  alarm is raised even when its text is what the store refused.
- Journaled and not yet done at start (a crash, an outage that outlived the process): queued again first
  (`replay`), with nothing to acknowledge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import time
from dataclasses import dataclass

from backend.ingest.dead_letters import DeadLetters
from backend.ingest.dedupe import flag_reused, msg_id_of
from backend.ingest.handoff import AlertingFeed, BatchFeed
from backend.ingest.journal import Journal, JournalEntry, JournalError
from backend.ingest.lanes import NO_ACK, Ack, LaneStats, is_transient, retry_delay
from backend.ops.logs import log_fields
from backend.settings import IngestSettings
from broker.clock import Clock
from broker.errors import MessageRejected
from broker.frozen import quick_init
from broker.kinds import Priority
from broker.schemas import DeviceEvent, Uplink, decode_uplink, without_cosmetics

__all__ = ["UplinkItem", "UplinkLane"]

log = logging.getLogger(__name__)
ROUND_MAX = 256  # messages taken from the queue per round: one journal commit, one acknowledgement, one hand-over
# Non-life-safety messages handed to a BatchFeed per call: between two calls the lane looks for a life-safety
# message that arrived meanwhile (a smoke alarm waits for at most one such call, not for the whole round).
REST_SLICE = 64
# Rows written (journaled or marked done) after which the journal is checkpointed from its own thread: with rows
# of a few hundred bytes, about what SQLite's automatic 1,000-page checkpoint would do inside a commit on the loop.
CHECKPOINT_EVERY = 2_000
SETTLE_S = 5.0  # at a stop, the longest the lane waits for the syncs of what alerting committed (`settle`)


class _Delivery(enum.Enum):
    DONE = "done"  # handed over, or parked: mark it done in the journal
    RETRY = "retry"  # refused for its content: offered again (queued by _deliver)
    UNAVAILABLE = "unavailable"  # alerting is away: the lane puts it back with the rest of the round


@quick_init
@dataclass(frozen=True, slots=True)
class UplinkItem:
    """One message in the uplink lane. seq 0: an acknowledgement only (a duplicate); replay: already journaled."""

    seq: int
    key: str
    topic: str
    payload: bytes
    uplink: Uplink | None
    received_ms: int
    token: int
    intake_s: float
    replay: bool = False


_Entry = tuple[int, int, UplinkItem]  # (rank, arrival order, item): the queue's element


def _rank(priority: Priority, *, ack_only: bool = False) -> int:
    """Where a message goes in the queue: by priority, and a duplicate's acknowledgement right after the messages of
    its priority (issue 19: in a storm each alarm's second copy, from the ingest's other connection, took a place in
    a round of 256 that an alarm waited for; before the next priority, so a reconnect flood of status messages never
    holds back the acknowledgements the alarms' own connection needs to go on receiving)."""
    return 2 * int(priority) + ack_only


_URGENT = _rank(Priority.LIFE_SAFETY)


def _urgent(entry: _Entry) -> bool:
    """A life-safety message to hand over (not a duplicate's acknowledgement)."""
    return entry[0] == _URGENT and entry[2].uplink is not None


class UplinkLane:
    def __init__(self, journal: Journal, *, feed: AlertingFeed | None, settings: IngestSettings, clock: Clock, lanes: LaneStats,
                 dead_letters: DeadLetters, ack: Ack) -> None:
        self.journal = journal
        self._feed = feed
        self._settings = settings
        self._clock = clock
        self._lanes = lanes
        self._dead_letters = dead_letters
        self._ack = ack
        self._seq = journal.last_seq
        self._queue: asyncio.PriorityQueue[_Entry] = asyncio.PriorityQueue()
        self._order = 0  # arrival order, the tie-breaker within a priority
        self._urgent_queued = 0  # life-safety messages in the queue: the round in progress yields to them
        self._handing_urgent = False  # the round's life-safety messages are being handed to alerting now
        self._backing_off = False  # alerting is away and the lane waits before offering again
        self._feed_attempts: dict[str, int] = {}
        self._written = 0  # rows written since the last checkpoint was asked for
        self._syncing: set[asyncio.Future[None]] = set()  # handed over, committed, their sync to the disk still running (`settle`)
        self.checkpoint_due = asyncio.Event()  # the pipeline checkpoints the journal off the loop when set

    # -- intake (on the event loop thread, from Pipeline.accept) --------------------------------------------

    def take(self, key: str, topic: str, payload: bytes, *, uplink: Uplink, received_ms: int, token: int) -> None:
        """A new message: queued by its priority, journaled in the lane's next round."""
        self._seq += 1
        self._put(UplinkItem(self._seq, key, topic, payload, uplink, received_ms, token, time.monotonic()), uplink.priority)

    def repeat(self, key: str, topic: str, payload: bytes, *, received_ms: int, token: int, priority: Priority) -> None:
        """A duplicate: acknowledged in the next round, after its commit (so never before the original is durable)."""
        self._put(UplinkItem(0, key, topic, payload, None, received_ms, token, time.monotonic()), priority, ack_only=True)

    def replay(self, entry: JournalEntry) -> None:
        """A message journaled before and not handed over yet: queued again, nothing to acknowledge."""
        try:
            uplink = decode_uplink(entry.topic, entry.payload)
        except MessageRejected:  # journaled messages were valid; a contract change could make one invalid
            log.exception("journaled uplink %s no longer decodes; dropping it", entry.key)
            return
        if entry.key != f"{uplink.topic.gateway}/{msg_id_of(uplink)}":  # journaled under a flagged id (a reused msg_id)
            uplink = flag_reused(uplink)
        item = UplinkItem(entry.seq, entry.key, entry.topic, entry.payload, uplink, entry.received_ms, NO_ACK, time.monotonic(), replay=True)
        self._put(item, uplink.priority)

    @property
    def life_safety_waiting(self) -> bool:
        """A life-safety message is queued or being handed to alerting (not while the lane waits out an outage): the
        MQTT readers let the loop run the lane before they parse another packet (backend/ingest/pipeline.py)."""
        return (self._urgent_queued > 0 or self._handing_urgent) and not self._backing_off

    def waiting(self) -> int:
        """Uplinks journaled or queued and not yet handed to alerting: grows while it is away."""
        return self._queue.qsize()

    def _put(self, item: UplinkItem, priority: Priority, *, ack_only: bool = False) -> None:
        self._order += 1
        self._enqueue((_rank(priority, ack_only=ack_only), self._order, item))

    def _enqueue(self, entry: _Entry) -> None:
        if _urgent(entry):
            self._urgent_queued += 1
        self._queue.put_nowait(entry)

    def _put_back(self, entry: _Entry) -> None:
        """A message of this round not handed over (alerting away, or a life-safety message came first): back in
        its own place in the queue, ahead of anything of its priority that came later (a device's availability
        changes stay in order). Already journaled and acknowledged: not again."""
        priority, order, item = entry
        self._enqueue((priority, order, dataclasses.replace(item, token=NO_ACK, replay=True)))

    def _requeue(self, item: UplinkItem) -> None:
        assert item.uplink is not None
        self._put(dataclasses.replace(item, token=NO_ACK, replay=True), item.uplink.priority)

    # -- the lane --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            entries = [await self._queue.get()]
            while len(entries) < ROUND_MAX and not self._queue.empty():
                entries.append(self._queue.get_nowait())
            self._urgent_queued -= sum(1 for e in entries if _urgent(e))
            items = [e[2] for e in entries]
            rows = [(i.seq, i.key, i.topic, i.payload, i.received_ms) for i in items if i.seq and not i.replay]
            attempt = 0
            while rows:
                try:
                    # On the loop thread, on purpose: a WAL commit without fsync costs ~0.1 ms, while a hop to a
                    # thread waits for the GIL behind the store writer (measured: p50 150 ms under full load).
                    self.journal.append(rows)
                    self._wrote(len(rows))
                    break
                except JournalError:
                    self._lanes.journal_failures += 1
                    log.exception("uplink journal refused a commit; retrying, not acknowledging")
                    await retry_delay(self._settings, attempt)
                    attempt += 1
            # Acknowledged on the loop's next turn, not here: a PUBACK is a few system calls (the wake-up byte, the writer's
            # registration), and each lets the store writer's thread take the GIL for up to a switch interval (5 ms)
            # before this round hands its life-safety messages to alerting. Still after the commit above.
            asyncio.get_running_loop().call_soon(self._ack, [i.token for i in items])
            done: list[int] = []
            syncing: list[tuple[asyncio.Future[None], list[int]]] = []  # committed, done once their sync is (`_synced`)
            deliverable = [e for e in entries if e[2].uplink is not None]  # already in priority order: the queue is a heap
            # Life-safety messages are decided and committed on their own, ahead of the rest of the burst: a smoke
            # alarm never waits for the commit of 200 availability changes that happened to arrive with it. The rest
            # goes in slices, and a life-safety message that arrives meanwhile (a smoke alarm during a gateway's
            # reconnect flood) stops the round: what is left of it goes back in the queue, behind that alarm.
            urgent = [e[2] for e in deliverable if _urgent(e)]
            rest = [e[2] for e in deliverable if not _urgent(e)]
            groups = [urgent] + [rest[i:i + REST_SLICE] for i in range(0, len(rest), REST_SLICE)]
            handled: set[int] = set()  # seqs done, or queued again by _deliver
            outage = yielded = False
            self._handing_urgent = bool(urgent)
            for group in groups:
                if outage or yielded:
                    break
                if group is not urgent and self._handing_urgent:
                    await self._urgent_handed()
                if group is not urgent and self._urgent_queued:
                    yielded = True
                    break
                if len(group) > 1 and isinstance(self._feed, BatchFeed):
                    outcome, synced = await self._deliver_batch(self._feed, group, more_coming=group is urgent and self._urgent_queued > 0)
                    if outcome is _Delivery.DONE:
                        if synced is None:
                            done += [i.seq for i in group]
                        else:
                            syncing.append((synced, [i.seq for i in group]))
                        handled.update(i.seq for i in group)
                        continue
                    if outcome is _Delivery.UNAVAILABLE:
                        outage = True
                        break
                for item in group:  # one at a time: also after a refused batch, so one bad message cannot hold back the others
                    if group is not urgent and self._urgent_queued:
                        yielded = True
                        break
                    outcome, synced = await self._deliver(item)
                    if outcome is _Delivery.UNAVAILABLE:
                        outage = True
                        break
                    handled.add(item.seq)
                    if outcome is _Delivery.DONE:
                        if synced is None:
                            done.append(item.seq)
                        else:
                            syncing.append((synced, [item.seq]))
            if self._handing_urgent and not outage:
                await self._urgent_handed()
            self._handing_urgent = False
            if outage or yielded:  # everything not handed over goes back in the queue, still journaled
                for entry in deliverable:
                    if entry[2].seq not in handled:
                        self._put_back(entry)
            if outage:
                self._backing_off = True
                try:
                    await retry_delay(self._settings, self._lanes.alerting_outages)
                finally:
                    self._backing_off = False
            self._mark_done(done)
            for synced, seqs in syncing:  # not awaited: the next round is decided and committed while the disk syncs this one
                synced.add_done_callback(functools.partial(self._synced, seqs))
                self._syncing.add(synced)
                synced.add_done_callback(self._syncing.discard)

    async def settle(self, max_wait_s: float = SETTLE_S) -> None:
        """At a stop (the lane's task cancelled, the journal still open): wait, at most `max_wait_s`, for the syncs still
        running, so what they cover is marked done and not replayed at the next start (a replayed alarm counts once more)."""
        if self._syncing:
            await asyncio.wait(set(self._syncing), timeout=max_wait_s)
            await asyncio.sleep(0)  # their `_synced` callbacks, scheduled as they finished

    def _mark_done(self, seqs: list[int]) -> None:
        if seqs:
            try:
                self.journal.mark_done(seqs)
                self._wrote(len(seqs))
            except JournalError:  # they are offered again after a restart: at least once, never lost
                log.exception("could not mark %d uplinks as delivered", len(seqs))

    def _synced(self, seqs: list[int], synced: asyncio.Future[None]) -> None:
        """Messages the feed committed are on the disk: done in the journal. If their sync failed (or the process is
        stopping), they stay pending and are offered again at the next start (at least once: never lost), and the lane
        stats say the disk failed (`LaneStats.sync_failed`) until a later sync works."""
        if synced.cancelled():
            return
        if (exc := synced.exception()) is not None:
            self._lanes.sync_failed(exc, self._clock.now_ms())
            log.error("%d uplinks are stored by alerting but not on the disk (%s); kept in the journal, offered again at the next start",
                      len(seqs), exc)
            return
        self._lanes.sync_worked()
        self._mark_done(seqs)

    async def _urgent_handed(self) -> None:
        """The round's life-safety messages are handed over: one turn of the loop before the lane says so (and the
        ingest's main connection, held meanwhile, reads again), so the consoles' feed streams, woken by the alarms just
        published, write them first (issue 19: a storm's first alarms reached the console ~20 ms after their commit,
        behind bursts of the main connection's backlog)."""
        await asyncio.sleep(0)
        self._handing_urgent = False

    def _wrote(self, rows: int) -> None:
        self._written += rows
        if self._written >= CHECKPOINT_EVERY:
            self._written = 0
            self.checkpoint_due.set()

    # -- hand-over to alerting ---------------------------------------------------------------------------------

    def _record_latency(self, intake_s: float, handed_s: float) -> None:
        self._lanes.life_safety_latency_s.append(handed_s - intake_s)

    async def _deliver_batch(self, feed: BatchFeed, items: list[UplinkItem], *, more_coming: bool = False) -> tuple[_Delivery, asyncio.Future[None] | None]:
        """Hand a burst over in one call (one decision, one commit). RETRY if the feed refused it: the caller
        then hands the items over one by one, so a single bad message is found and dealt with on its own.
        `more_coming`: life-safety messages arrived meanwhile and wait for the next round (the feed may publish
        this round's alarms while it commits the next). With DONE, the future of the batch's sync to the disk, if the
        feed gave one (BatchFeed.on_uplink_batch)."""
        handed = time.monotonic()  # measured at hand-off, as for single messages: time spent queued in ingest
        try:
            synced = await feed.on_uplink_batch([(i.uplink, i.received_ms) for i in items if i.uplink is not None], more_coming=more_coming)
        except Exception as exc:
            self._lanes.feed_failures += 1
            if is_transient(exc):
                self._lanes.alerting_down(exc, self._clock.now_ms())
                return _Delivery.UNAVAILABLE, None
            log.exception("alerting refused a batch of %d; handing them over one by one", len(items))
            return _Delivery.RETRY, None
        self._lanes.alerting_up(self._clock.now_ms())
        for item in items:
            assert item.uplink is not None
            if item.uplink.priority is Priority.LIFE_SAFETY:
                self._record_latency(item.intake_s, handed)
        del self._lanes.life_safety_latency_s[:-10_000]
        self._lanes.uplinks_delivered += len(items)
        if synced is None:  # durable when the call returned (a commit with its fsync inside): the disk works
            self._lanes.sync_worked()
        return _Delivery.DONE, synced

    async def _deliver(self, item: UplinkItem) -> tuple[_Delivery, asyncio.Future[None] | None]:
        """One uplink to alerting; every line logged meanwhile (here, in the alarm service, its store) carries the
        message's trace: its gateway, device and msg_id as the edge gave them (backend/ops/logs.py). With DONE, the
        future of its sync to the disk, if the feed gave one (a BatchFeed's, as for a batch: `_synced`)."""
        assert item.uplink is not None
        topic = item.uplink.topic
        with log_fields(gateway=topic.gateway, device=topic.device, msg_id=msg_id_of(item.uplink), trace=item.key):
            return await self._deliver_one(item)

    async def _hand_one(self, feed: AlertingFeed, uplink: Uplink, received_ms: int) -> asyncio.Future[None] | None:
        """A BatchFeed takes a lone message as a batch of one and gives the future of its sync, which `_synced` reads as it
        does a batch's: a lone alarm whose sync fails stays pending in the journal too. Any other feed returns once the
        message is durable.

        The lane waits for that sync here (not for its outcome), as it did when it handed a lone message over with
        `AlertingFeed.on_uplink`: the alarm is on the console already, and while the disk syncs, the messages right behind
        it (a storm's first ones come alone) gather into the lane's next round. (Going on at once was measured too: in e2e
        the storm of 200 took 74-91 ms in five runs, and 52-88 ms in eight with the wait (four of them before this change);
        the spreads overlap, so the lane keeps the timing it had.)"""
        if not isinstance(feed, BatchFeed):
            await feed.on_uplink(uplink, received_ms)
            return None
        synced = await feed.on_uplink_batch([(uplink, received_ms)])
        if synced is not None:
            await asyncio.wait({synced})
        return synced

    async def _deliver_one(self, item: UplinkItem) -> tuple[_Delivery, asyncio.Future[None] | None]:
        assert item.uplink is not None
        if item.uplink.priority is Priority.LIFE_SAFETY:
            self._record_latency(item.intake_s, time.monotonic())
            del self._lanes.life_safety_latency_s[:-10_000]
        if self._feed is None:
            return _Delivery.DONE, None
        try:
            synced = await self._hand_one(self._feed, item.uplink, item.received_ms)
        except Exception as exc:
            self._lanes.feed_failures += 1
            if is_transient(exc):  # the alarm store or the queue is away: wait for it, for as long as it takes
                self._lanes.alerting_down(exc, self._clock.now_ms())
                return _Delivery.UNAVAILABLE, None
            attempts = self._feed_attempts.get(item.key, 0) + 1
            if attempts >= self._settings.feed_max_attempts:
                # The same message failed every time: a poison message, not an outage. Park it where a person
                # can see it (and replay it after a fix) instead of retrying for ever and slowing every round.
                self._feed_attempts.pop(item.key, None)
                raised, synced = await self._raise_cleaned(item, exc, attempts)
                if raised:
                    return _Delivery.DONE, synced
                self._dead_letter(item, exc, attempts)
                return _Delivery.DONE, None  # done with it here; it is in the dead-letter file
            self._feed_attempts[item.key] = attempts
            log.exception("alerting refused %s (attempt %d); it stays in the journal and is offered again", item.key, attempts)
            await retry_delay(self._settings, 0)
            self._requeue(item)
            return _Delivery.RETRY, None
        self._feed_attempts.pop(item.key, None)
        self._lanes.alerting_up(self._clock.now_ms())
        self._lanes.uplinks_delivered += 1
        if synced is None:
            self._lanes.sync_worked()
        return _Delivery.DONE, synced

    def _dead_letter(self, item: UplinkItem, exc: BaseException, attempts: int) -> None:
        self._dead_letters.park(item.topic, item.payload, item.received_ms, exc, key=item.key, attempts=attempts)
        log.error("alerting refused %s %d times: parked in the dead letters (%s: %s)", item.key, attempts, type(exc).__name__, exc)

    async def _raise_cleaned(self, item: UplinkItem, exc: BaseException, attempts: int) -> tuple[bool, asyncio.Future[None] | None]:
        """A life-safety event alerting refused every time: offer it once more without its cosmetic fields (the
        text a store may refuse). True if that was taken, with the future of its sync to the disk as `_hand_one` gives
        it (a failed sync keeps it pending in the journal, as any alarm's); the original is kept in the dead letters
        all the same."""
        assert item.uplink is not None
        assert self._feed is not None
        if item.uplink.priority is not Priority.LIFE_SAFETY or not isinstance(item.uplink.message, DeviceEvent):
            return False, None
        cleaned = without_cosmetics(item.uplink)
        if cleaned is item.uplink:
            return False, None
        try:
            synced = await self._hand_one(self._feed, cleaned, item.received_ms)
        except Exception:
            log.exception("alerting refused %s even without its detail", item.key)
            return False, None
        self._lanes.raised_cleaned += 1
        self._lanes.uplinks_delivered += 1
        self._dead_letters.park(item.topic, item.payload, item.received_ms, exc, key=item.key, attempts=attempts, outcome="raised_without_detail")
        log.error("alerting refused %s %d times for its content; raised without its detail, original in the dead letters", item.key, attempts)
        return True, synced
