"""What happens to an uplink message in the backend: decode, de-duplicate, check, hand to its lane.

How this works (`Pipeline.accept`, driven by IngestWorker with manual MQTT acknowledgements, never raises):

    MQTT callback ──▶ decode ──▶ known device? ──▶ dedupe (gateway, msg_id) ──┬─▶ uplink lane     events, availability, status, patrol
                     (trust boundary)   (known_devices.py)   (dedupe.py)      └─▶ telemetry lane  readings

- Decode: `broker.schemas.decode_uplink` validates topic and payload (the trust boundary); a payload over
  `max_payload_bytes` is refused before it is parsed.
- Known device: with `known_devices_only`, the site directory must list the device behind its gateway
  (backend/ingest/known_devices.py: life-safety events pass all the same).
- De-duplication (backend/ingest/dedupe.py): a repeat is acknowledged in the lane of its kind after that
  lane's next commit; a msg_id reused for another message is kept under a flagged id.
- The uplink lane (backend/ingest/uplink_lane.py) journals, acknowledges and hands messages to alerting, life
  safety first; the telemetry lane (backend/ingest/telemetry_lane.py) group-commits readings, acknowledges,
  stores and hands them on. Each has its own queue, task, journal file and thread.
- A rejected message is acknowledged at once (a redelivery would be rejected again) and counted; one the
  intake itself fails on (a bug of ours) is parked in the dead letters (backend/ingest/dead_letters.py).

Start (`__aenter__`): both journals are opened, their recent keys reloaded into the de-duplication window, and
every journaled uplink not yet handed over is queued again; the lanes then start (the telemetry lane's store
writer first looks at the journal for a backlog). Stop: the lanes are cancelled, the uplink lane waits (at most
5 s) for the syncs to the disk of what alerting committed, to mark it done; what is journaled and not done stays
journaled and is replayed on the next start.

Guarantee (docs/ingest.md): a QoS 1 message is acknowledged only after it is in a journal; everything
journaled reaches the store (telemetry) or the feed (the rest), after a restart too. The store write is
idempotent, keyed by (device, metric, source_ts_ms), so a replay never duplicates stored readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from backend.ingest.dead_letters import DeadLetters
from backend.ingest.dedupe import RecentIds, Seen, content_digest, flag_reused, msg_id_of, remember_journaled
from backend.ingest.handoff import AlertingFeed
from backend.ingest.journal import Journal, JournalError
from backend.ingest.known_devices import check_known
from backend.ingest.lanes import NO_ACK, LaneStats
from backend.ingest.stats import IngestStats
from backend.ingest.telemetry_lane import TelemetryLane, readings_of
from backend.ingest.uplink_lane import UplinkLane
from backend.settings import IngestSettings
from backend.sites.model import SiteDirectory
from backend.store.timeseries.model import TimeSeriesStore
from broker.clock import Clock, SystemClock
from broker.errors import MessageRejected, RejectReason
from broker.schemas import Telemetry, Uplink, decode_uplink
from broker.topics import TopicKind

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)


def _gateway_of(topic: str) -> str | None:
    """The gateway level of a topic that may not parse (sw/v1/gw/<gateway>/...), to count rejections by sender."""
    parts = topic.split("/")
    return parts[3] if len(parts) > 3 else None


class Pipeline:
    def __init__(
        self,
        sites: SiteDirectory,
        *,
        feed: AlertingFeed | None = None,
        store: TimeSeriesStore | None = None,
        journal_dir: Path | None = None,
        settings: IngestSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.sites = sites
        self.feed = feed
        self.store = store
        self.settings = settings or IngestSettings()
        self.clock = clock or SystemClock()
        self.journal_dir = journal_dir
        self.recent = RecentIds(self.settings.dedupe_window)
        self.last_seen_ms: dict[str, int] = {}
        self.duplicates = 0
        # Which intake connection(s) delivered each recent device event (bit 1: the main one, bit 2: the events one). Device events
        # come on both (the main connection's filter covers them; the events connection puts them first): the second copy
        # is expected and no duplicate; a copy on a connection that already delivered it is a redelivery, counted.
        self._paths: dict[str, int] = {}
        self.stats = IngestStats()
        self.lanes = LaneStats()
        self.dead_letters = DeadLetters((journal_dir or Path(".")) / "dead-letters.jsonl", self.lanes)
        self.running = False
        self._acker: Callable[[Sequence[int]], None] = lambda tokens: None
        self._tg: asyncio.TaskGroup | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.journal_dir is None or self.store is None:
            raise ValueError("the fast path needs a journal folder and a time-series store")
        s, journal_dir = self.settings, self.journal_dir
        loop = asyncio.get_running_loop()
        # One thread per durable resource: a slow store never delays a journal commit, and the uplink
        # journal never shares a thread (or a file) with telemetry.
        self._tj_exec = ThreadPoolExecutor(1, thread_name_prefix="journal-telemetry")
        self._uj_exec = ThreadPoolExecutor(1, thread_name_prefix="journal-uplink")
        self._store_exec = ThreadPoolExecutor(1, thread_name_prefix="ts-store")
        self.tjournal = await loop.run_in_executor(self._tj_exec, lambda: Journal(journal_dir / "telemetry.journal", keep=s.dedupe_window,
                                                                                  synchronous_full=s.journal_synchronous_full))
        # The uplink journal commits on the loop thread (uplink_lane.py): its checkpoints run here, in its own thread.
        self.ujournal = await loop.run_in_executor(self._uj_exec, lambda: Journal(journal_dir / "uplink.journal", keep=s.dedupe_window,
                                                                                  synchronous_full=s.journal_synchronous_full,
                                                                                  auto_checkpoint=False))
        for key in await loop.run_in_executor(self._tj_exec, self.tjournal.recent_keys):
            self.recent.seen(key)
        for entry in await loop.run_in_executor(self._uj_exec, self.ujournal.recent_entries):
            remember_journaled(self.recent, entry.key, entry.topic, entry.payload)
        self._telemetry = TelemetryLane(self.tjournal, self.store, feed=self.feed, settings=s, clock=self.clock, lanes=self.lanes, ack=self._ack,
                                        journal_exec=self._tj_exec, store_exec=self._store_exec)
        self._uplinks = UplinkLane(self.ujournal, feed=self.feed, settings=s, clock=self.clock, lanes=self.lanes,
                                   dead_letters=self.dead_letters, ack=self._ack)
        for entry in await loop.run_in_executor(self._uj_exec, lambda: self.ujournal.pending(0, 1_000_000)):
            self._uplinks.replay(entry)
        # What was built just now and lives as long as the process (the de-duplication windows: two containers of
        # `dedupe_window` keys each) goes to the oldest generation here, before any message is taken, in one young
        # collection (~30 ms measured). Left young, the first collections of a drain walked them: 27-39 ms while
        # the smoke alarms of a reconnect flood waited (issue 19, benchmarks/ingest.py).
        gc.collect(1)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tasks = [
            self._tg.create_task(self._telemetry.run_commits(), name="ingest-telemetry-lane"),
            self._tg.create_task(self._telemetry.run_store_writer(), name="ingest-store-writer"),
            self._tg.create_task(self._uplinks.run(), name="ingest-uplink-lane"),
            self._tg.create_task(self._pruner(), name="ingest-journal-pruner"),
            self._tg.create_task(self._checkpointer(), name="ingest-uplink-checkpointer"),
        ]
        self.running = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Stop: what is journaled stays journaled (and is replayed on the next start); nothing is lost by stopping."""
        self.running = False
        if self._tg is not None:
            for task in self._tasks:  # the lanes run for ever: cancel them
                task.cancel()
            with contextlib.suppress(BaseExceptionGroup, asyncio.CancelledError):
                await self._tg.__aexit__(None, None, None)
            self._tg = None
            await self._uplinks.settle()  # what alerting committed and is syncing is marked done before the journal closes
        for ex, closer in ((self._tj_exec, self.tjournal.close), (self._uj_exec, self.ujournal.close)):
            ex.submit(closer)
            ex.shutdown(wait=True)
        self._store_exec.shutdown(wait=True)

    def bind(self, acker: Callable[[Sequence[int]], None]) -> None:
        """Where acknowledgement tokens go (the MQTT worker's `ack`)."""
        self._acker = acker

    # -- intake (called from the MQTT client's callback, on the event loop thread; never raises) --------

    def accept(self, topic: str, payload: bytes, token: int, *, events_copy: bool = False) -> bool:
        """Take one message; True while a life-safety message waits for the uplink lane, this one or one taken in before
        (from either connection): the MQTT reader then yields to the loop, so the lane runs before the next packet.
        `events_copy`: the events connection's copy of a device event (the main connection delivers it too): a copy that
        is refused is acknowledged without a word, since the main connection's copy is the one counted and logged."""
        now = self.clock.now_ms()
        try:
            if len(payload) > self.settings.max_payload_bytes:
                raise MessageRejected(RejectReason.TOO_LARGE, f"payload is {len(payload)} bytes; the limit is {self.settings.max_payload_bytes}", topic)
            uplink = decode_uplink(topic, payload)
            if self.settings.known_devices_only:
                check_known(self.sites, uplink, topic, self.stats)
        except MessageRejected as exc:
            if events_copy:
                self._ack([token])
                return False
            rejection = self.stats.reject(exc, payload, now, _gateway_of(topic))
            log.warning("rejected %s: %s: %s", topic, rejection.reason, rejection.detail)
            self._ack([token])
            return False
        except Exception as exc:  # a bug of ours on this input: park the message for a replay after the fix, go on
            log.exception("could not take the message on %s (%d bytes); parked in the dead letters", topic, len(payload))
            self.stats.reject(MessageRejected(RejectReason.INTERNAL, f"the backend failed on this message ({type(exc).__name__}: {exc}); "
                                              "it is kept in dead-letters.jsonl for a replay: report it", topic),
                              payload, now, _gateway_of(topic))
            self.dead_letters.park(topic, payload, now, exc, key="", attempts=1)
            self._ack([token])
            return False
        msg = uplink.message
        key = f"{uplink.topic.gateway}/{msg.msg_id}"  # type: ignore[union-attr]
        telemetry = isinstance(msg, Telemetry)
        seen = self.recent.check(key, None if telemetry else content_digest(uplink))
        if seen is Seen.REUSED:
            uplink = flag_reused(uplink)
            msg = uplink.message
            key = f"{uplink.topic.gateway}/{msg.msg_id}"  # type: ignore[union-attr]
            self.stats.reused_ids += 1
            log.warning("%s reused msg_id %s for a different message: kept as %s", uplink.topic.gateway, msg_id_of(uplink), key)
            if self.recent.seen(key):  # the same reuse redelivered
                seen = Seen.REPEAT
        second_copy = False
        if uplink.topic.kind is TopicKind.EVENT:  # the one kind both connections deliver
            path = 2 if events_copy else 1
            paths = self._paths.get(key, 0)
            if not paths & path:
                if len(self._paths) >= 200_000:  # bounded: a forgotten entry only makes a late second copy count as a redelivery
                    self._paths.clear()
                self._paths[key] = paths | path
            second_copy = bool(paths) and not paths & path  # the other connection delivered it first: expected, no duplicate
        if seen is Seen.REPEAT and not second_copy and not events_copy:  # a redelivery, counted where every message comes
            self.duplicates += 1
            self.stats.duplicates += 1
        if seen is Seen.REPEAT:
            if telemetry:
                self._telemetry.repeat(token)
            else:
                self._uplinks.repeat(key, topic, payload, received_ms=now, token=token, priority=uplink.priority)
            return self._uplinks.life_safety_waiting
        self.stats.accepted += 1
        if uplink.topic.device is not None:  # keyed by a plain str: a DeviceId (a str subclass) is tracked by the garbage
            self.last_seen_ms[str(uplink.topic.device)] = now  # collector, one per device kept, and every collection walked them
        if telemetry:
            self._telemetry.take(key, topic, payload, received_ms=now, readings=readings_of(uplink, now), token=token)
        else:
            self._uplinks.take(key, topic, payload, uplink=uplink, received_ms=now, token=token)
        # True: the reader yields, the uplink lane journals and hands on a life-safety message before the next packet
        # (this one, or one the events connection took in while this connection drains a backlog)
        return self._uplinks.life_safety_waiting

    def _check_known(self, uplink: Uplink, topic: str) -> None:
        """The site-directory check `accept` makes (backend/ingest/known_devices.py); raises MessageRejected."""
        check_known(self.sites, uplink, topic, self.stats)

    def _ack(self, tokens: Sequence[int]) -> None:
        real = [t for t in tokens if t != NO_ACK]
        if real:
            self._acker(real)

    async def _pruner(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.prune_interval_s)
            for j, ex in ((self.tjournal, self._tj_exec), (self.ujournal, self._uj_exec)):
                try:
                    await loop.run_in_executor(ex, j.prune)
                except JournalError:
                    log.exception("could not prune %s", j.path)

    async def _checkpointer(self) -> None:
        """Checkpoint the uplink journal in its thread whenever the lane has written enough (see journal.py)."""
        loop = asyncio.get_running_loop()
        due = self._uplinks.checkpoint_due
        while True:
            await due.wait()
            due.clear()
            try:
                await loop.run_in_executor(self._uj_exec, self.ujournal.checkpoint)
            except JournalError:  # the next one tries again; commits go on meanwhile (the WAL grows)
                log.exception("could not checkpoint %s", self.ujournal.path)

    def life_safety_busy(self) -> bool:
        """A life-safety message is queued for the uplink lane or being decided and committed: the ingest's main
        connection (telemetry, status, the second copy of each event) reads nothing meanwhile, so the alarms' intake and
        commit have the event loop and the GIL to themselves (the events connection goes on reading)."""
        return self.running and self._uplinks.life_safety_waiting

    def uplinks_waiting(self) -> int:
        """Uplinks (events, status) journaled or queued and not yet handed to alerting: grows while it is away."""
        return self._uplinks.waiting() if self.running else 0

    def backlog(self) -> int:
        """Telemetry messages journaled but not yet stored."""
        return self._telemetry.backlog() if self.running else 0
