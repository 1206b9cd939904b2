"""What happens to an uplink message in the backend: de-duplicate, journal, acknowledge, store, hand on.

How this works (the fast path, `accept`, driven by IngestWorker with manual MQTT acknowledgements):

    MQTT callback ──▶ decode ──▶ dedupe (gateway, msg_id) ──┬─▶ uplink lane (priority queue)   events, availability, status, patrol
                                                           └─▶ telemetry lane (group commit)  readings

- The uplink lane takes life-safety events first, then the rest; it journals what is queued (one small
  commit in its own journal file), acknowledges, and hands each message to the AlertingFeed at once.
  Nothing in it waits for telemetry: separate queue, task, journal file and thread.
- The telemetry lane collects messages for up to `batch_linger_ms` or `batch_max_messages`, commits them
  to its journal in one transaction (in a thread), acknowledges them, and passes the decoded readings to
  the store writer. The store writer writes batches to the time-series store (in its own thread) and, once
  stored, moves the journal's watermark and hands the readings to the feed. When the store is down it
  retries with back-off; intake goes on, because messages are durable in the journal. Readings beyond
  `max_buffered_readings` are dropped from memory and re-read from the journal when the writer catches up.
- A duplicate is acknowledged in the lane of its kind, after the commit that follows it: so never before
  the original is durable.
- A rejected message is acknowledged at once (a redelivery would be rejected again) and counted.

Alerting away, or a message it refuses (docs/ingest.md "Outages and poison"):
- A feed error that is an `AlertingUnavailable` (the alarm store or the uplink queue is down, full, locked,
  read-only) is an outage: the round stops handing over, every undelivered message of it goes back in the
  queue (still journaled, not marked done), the lane waits with back-off and tries again, however long it
  takes. `alerting_down` in the lane stats says so (the console and /readyz read it) until a hand-over works.
- Any other error is the message's own: retried `feed_max_attempts` times, then parked in dead-letters.jsonl.
  A life-safety event is first offered once more with its cosmetic fields (detail, value) removed, so a fire
  alarm is raised even when its text is what the store refused.
- A message reusing a `msg_id` with different content (a smoke alarm, then an SOS press with the same id) is
  not a duplicate: it is kept under a flagged id `<msg_id>:<content digest>` and counted (`reused_ids`).

Guarantee (docs/ingest.md): a QoS 1 message is acknowledged only after it is in a journal; everything
journaled reaches the store (telemetry) or the feed (the rest), after a restart too. The store write is
idempotent, keyed by (device, metric, source_ts_ms), so a replay never duplicates stored readings.

"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec
from sqlalchemy.exc import InterfaceError, OperationalError

from backend.clock import Clock, SystemClock
from backend.ingest.handoff import AlertingFeed, AlertingUnavailable, BatchFeed, Reading
from backend.ingest.journal import Journal, JournalEntry, JournalError
from backend.ingest.stats import IngestStats
from backend.ops.logs import log_fields
from backend.settings import IngestSettings
from backend.sites.model import SiteDirectory
from backend.store.timeseries.model import StoreUnavailable, TimeSeriesStore
from broker.errors import MessageRejected, RejectReason
from broker.kinds import EventKind, Priority
from broker.schemas import DeviceEvent, Telemetry, Uplink, decode_uplink, encode, without_cosmetics

__all__ = ["LaneStats", "Pipeline", "RecentIds", "Seen"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
NO_ACK = -1  # token of a QoS 0 message: nothing to acknowledge
CLEARING_EVENTS = frozenset(k for k in EventKind if k.value.endswith("_clear"))  # events that end an alarm


def _transient(exc: BaseException) -> bool:
    """A failure of the outside world (the alarm store, the queue or a connection), not of this message."""
    return isinstance(exc, AlertingUnavailable | OperationalError | InterfaceError | ConnectionError | TimeoutError | OSError)


class Seen(enum.Enum):
    NEW = "new"
    REPEAT = "repeat"  # the same message again (at-least-once delivery): drop it
    REUSED = "reused"  # a known msg_id with different content: a different message, keep it and flag it


class _Delivery(enum.Enum):
    DONE = "done"  # handed over, or parked: mark it done in the journal
    RETRY = "retry"  # refused for its content: offered again (queued by _deliver)
    UNAVAILABLE = "unavailable"  # alerting is away: the lane puts it back with the rest of the round


class RecentIds:
    """The last `capacity` message keys seen, for de-duplication of at-least-once delivery.

    Keys are kept as 16-byte BLAKE2b digests in a set, oldest first in a deque: ~85 bytes a key instead of
    ~190 for the key strings in an OrderedDict (200,000 keys: ~17 MiB, was 36 MiB, measured). Two keys share a
    digest with probability ~2^-128 per pair: never, for any practical purpose (a false "seen" would drop a
    message as a duplicate).

    The window is full from the start (`prefill`): placeholder digests, hashed under their own BLAKE2b
    personalisation so no message key can produce one, stand in for keys not seen yet and leave oldest first
    like any. Its memory is therefore taken once, at start, rather than growing for the ~12 minutes a street's
    traffic needs to fill 200,000 keys: a process's memory after start is what it keeps (benchmarks/soak.py)."""

    _PLACEHOLDER = b"shouwang-unseen"

    def __init__(self, capacity: int = 200_000, *, prefill: bool = True) -> None:
        self._ids: set[bytes] = set()
        # Content digests of the keys that came with one (non-telemetry messages: a small share of the window),
        # to tell a redelivery from a msg_id reused for a different message.
        self._versions: dict[bytes, tuple[bytes, ...]] = {}
        self._order: deque[bytes] = deque()
        self._capacity = capacity
        self._placeholders = 0
        if prefill:
            for i in range(capacity):
                digest = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16, person=self._PLACEHOLDER).digest()
                self._ids.add(digest)
                self._order.append(digest)
            self._placeholders = capacity

    def seen(self, key: str) -> bool:
        """Record `key`; return True if it had been seen already."""
        return self.check(key) is not Seen.NEW

    def check(self, key: str, version: bytes | None = None) -> Seen:
        """Record `key` (with the digest of its content, if given) and say whether it is new, a repeat, or a
        key seen before with other content. A key known without a version (reloaded from the journal after a
        restart) counts any content as a repeat: it cannot tell."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        if digest in self._ids:
            known = self._versions.get(digest)
            if version is None or known is None or version in known:
                return Seen.REPEAT
            self._versions[digest] = (*known, version)
            return Seen.REUSED
        self._ids.add(digest)
        self._order.append(digest)
        if version is not None:
            self._versions[digest] = (version,)
        if len(self._order) > self._capacity:
            old = self._order.popleft()
            self._ids.discard(old)
            self._versions.pop(old, None)
            if self._placeholders:
                self._placeholders -= 1
        return Seen.NEW

    def __len__(self) -> int:
        """Message keys remembered (placeholders not counted)."""
        return len(self._order) - self._placeholders


@dataclass
class LaneStats:
    """What the lanes did; latencies are from intake to hand-off, in seconds (monotonic clock)."""

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
    alerting_down_since_ms: int | None = None  # alerting (alarm store / queue) unavailable since; None: up
    alerting_down_why: str = ""
    alerting_outages: int = 0
    life_safety_latency_s: list[float] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.life_safety_latency_s[-1000:])
        return {
            "telemetry_messages": self.telemetry_messages, "readings_stored": self.readings_stored, "readings_new": self.readings_new,
            "store_batches": self.store_batches, "store_failures": self.store_failures, "replayed_from_journal": self.replayed_from_journal,
            "uplinks_delivered": self.uplinks_delivered, "feed_failures": self.feed_failures, "dead_letters": self.dead_letters,
            "journal_failures": self.journal_failures, "raised_cleaned": self.raised_cleaned,
            "alerting_down": self.alerting_down_since_ms is not None, "alerting_down_since_ms": self.alerting_down_since_ms,
            "alerting_down_why": self.alerting_down_why or None, "alerting_outages": self.alerting_outages,
            "life_safety_p50_ms": round(lat[len(lat) // 2] * 1000, 3) if lat else None,
            "life_safety_max_ms": round(lat[-1] * 1000, 3) if lat else None,
        }


@dataclass(frozen=True, slots=True)
class _Item:
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


@dataclass(frozen=True, slots=True)
class _Batch:
    first_seq: int
    last_seq: int
    readings: list[Reading]


def _msg_id(uplink: Uplink) -> str:
    return str(getattr(uplink.message, "msg_id", ""))


def _version(uplink: Uplink) -> bytes:
    """A digest of what a message says, without the gateway's receive time (a redelivery may restamp it)."""
    msg = uplink.message
    body = encode(msgspec.structs.replace(msg, received_ts_ms=0) if hasattr(msg, "received_ts_ms") else msg)
    return hashlib.blake2b(body, digest_size=8).digest()


def _reused(uplink: Uplink) -> Uplink:
    """The message under a flagged id, `<msg_id>:<content digest>`: kept apart from the earlier message that used
    its id (the journal key, the cluster's queue key and the alarm's source message all differ)."""
    tag = _version(uplink).hex()
    flagged = f"{_msg_id(uplink)[:86]}:{tag[:8]}"
    return Uplink(uplink.topic, msgspec.structs.replace(uplink.message, msg_id=flagged))


def _gateway_of(topic: str) -> str | None:
    """The gateway level of a topic that may not parse (sw/v1/gw/<gateway>/...), to count rejections by sender."""
    parts = topic.split("/")
    return parts[3] if len(parts) > 3 else None


def readings_of(uplink: Uplink, received_ms: int) -> list[Reading]:
    msg = uplink.message
    assert isinstance(msg, Telemetry)
    assert uplink.topic.device is not None
    device, gateway = str(uplink.topic.device), str(uplink.topic.gateway)
    return [Reading(device, gateway, metric, value, msg.source_ts_ms, received_ms, msg.drill) for metric, value in msg.readings.items()]


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
        self._feed_attempts: dict[str, int] = {}
        self._outage_attempts = 0
        self.last_seen_ms: dict[str, int] = {}
        self.duplicates = 0
        self.stats = IngestStats()
        self.lanes = LaneStats()
        self.running = False
        self._acker: Callable[[Sequence[int]], None] = lambda tokens: None
        self._tg: asyncio.TaskGroup | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.journal_dir is None or self.store is None:
            raise ValueError("the fast path needs a journal folder and a time-series store")
        s = self.settings
        loop = asyncio.get_running_loop()
        self._loop = loop
        # One thread per durable resource: a slow store never delays a journal commit, and the uplink
        # journal never shares a thread (or a file) with telemetry.
        self._tj_exec = ThreadPoolExecutor(1, thread_name_prefix="journal-telemetry")
        self._uj_exec = ThreadPoolExecutor(1, thread_name_prefix="journal-uplink")
        self._store_exec = ThreadPoolExecutor(1, thread_name_prefix="ts-store")
        self.tjournal = await loop.run_in_executor(self._tj_exec, lambda: Journal(self.journal_dir / "telemetry.journal", keep=s.dedupe_window,  # type: ignore[operator]
                                                                                          synchronous_full=s.journal_synchronous_full))
        self.ujournal = await loop.run_in_executor(self._uj_exec, lambda: Journal(self.journal_dir / "uplink.journal", keep=s.dedupe_window,  # type: ignore[operator]
                                                                                          synchronous_full=s.journal_synchronous_full))
        for key in await loop.run_in_executor(self._tj_exec, self.tjournal.recent_keys):
            self.recent.seen(key)
        for entry in await loop.run_in_executor(self._uj_exec, self.ujournal.recent_entries):
            self._remember(entry)
        self._tseq = self.tjournal.last_seq
        self._useq = self.ujournal.last_seq
        self._journaled_through = self.tjournal.last_seq
        self._next_store_seq = self.tjournal.done_through + 1
        # Telemetry lane state (touched only on the event loop thread).
        self._t_rows: list[tuple[int, str, str, bytes, int]] = []
        self._t_readings: list[Reading] = []
        self._t_acks: list[int] = []
        self._t_first_seq = 0
        self._t_has_data = asyncio.Event()
        self._t_full = asyncio.Event()
        self._store_q: deque[_Batch] = deque()
        self._buffered_readings = 0
        self._store_wakeup = asyncio.Event()
        self._store_wakeup.set()  # the writer looks at the journal once at start: there may be a backlog
        self._uplink_q: asyncio.PriorityQueue[tuple[int, int, _Item]] = asyncio.PriorityQueue()
        self._uorder = 0
        for entry in await loop.run_in_executor(self._uj_exec, lambda: self.ujournal.pending(0, 1_000_000)):
            self._queue_replay(entry)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tasks = [
            self._tg.create_task(self._telemetry_lane(), name="ingest-telemetry-lane"),
            self._tg.create_task(self._store_writer(), name="ingest-store-writer"),
            self._tg.create_task(self._uplink_lane(), name="ingest-uplink-lane"),
            self._tg.create_task(self._pruner(), name="ingest-journal-pruner"),
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
        for ex, closer in ((self._tj_exec, self.tjournal.close), (self._uj_exec, self.ujournal.close)):
            ex.submit(closer)
            ex.shutdown(wait=True)
        self._store_exec.shutdown(wait=True)

    def bind(self, acker: Callable[[Sequence[int]], None]) -> None:
        """Where acknowledgement tokens go (the MQTT worker's `ack`)."""
        self._acker = acker

    # -- intake (called from the MQTT client's callback, on the event loop thread; never raises) --------

    def accept(self, topic: str, payload: bytes, token: int) -> None:
        now = self.clock.now_ms()
        try:
            if len(payload) > self.settings.max_payload_bytes:
                raise MessageRejected(RejectReason.TOO_LARGE, f"payload is {len(payload)} bytes; the limit is {self.settings.max_payload_bytes}", topic)
            uplink = decode_uplink(topic, payload)
            if self.settings.known_devices_only:
                self._check_known(uplink, topic)
        except MessageRejected as exc:
            rejection = self.stats.reject(exc, payload, now, _gateway_of(topic))
            log.warning("rejected %s: %s: %s", topic, rejection.reason, rejection.detail)
            self._ack([token])
            return
        except Exception as exc:  # a bug of ours on this input: park the message for a replay after the fix, go on
            log.exception("could not take the message on %s (%d bytes); parked in the dead letters", topic, len(payload))
            self.stats.reject(MessageRejected(RejectReason.INTERNAL, f"the backend failed on this message ({type(exc).__name__}: {exc}); "
                                              "it is kept in dead-letters.jsonl for a replay: report it", topic),
                              payload, now, _gateway_of(topic))
            self._park(topic, payload, now, exc, key="", attempts=1)
            self._ack([token])
            return
        msg = uplink.message
        key = f"{uplink.topic.gateway}/{msg.msg_id}"  # type: ignore[union-attr]
        telemetry = isinstance(msg, Telemetry)
        seen = self.recent.check(key, None if telemetry else _version(uplink))
        if seen is Seen.REUSED:
            uplink = _reused(uplink)
            msg = uplink.message
            key = f"{uplink.topic.gateway}/{msg.msg_id}"  # type: ignore[union-attr]
            self.stats.reused_ids += 1
            log.warning("%s reused msg_id %s for a different message: kept as %s", uplink.topic.gateway, _msg_id(uplink), key)
            if self.recent.seen(key):  # the same reuse redelivered
                seen = Seen.REPEAT
        if seen is Seen.REPEAT:
            self.duplicates += 1
            self.stats.duplicates += 1
            if telemetry:
                self._t_acks.append(token)
                self._t_has_data.set()
            else:
                self._put_uplink(_Item(0, key, topic, payload, None, now, token, time.monotonic()), uplink.priority)
            return
        self.stats.accepted += 1
        if uplink.topic.device is not None:
            self.last_seen_ms[uplink.topic.device] = now
        if telemetry:
            self._tseq += 1
            if not self._t_rows:
                self._t_first_seq = self._tseq
            self._t_rows.append((self._tseq, key, topic, payload, now))
            self._t_readings += readings_of(uplink, now)
            self._t_acks.append(token)
            self._t_has_data.set()
            if len(self._t_rows) >= self.settings.batch_max_messages:
                self._t_full.set()
        else:
            self._useq += 1
            self._put_uplink(_Item(self._useq, key, topic, payload, uplink, now, token, time.monotonic()), uplink.priority)

    def _put_uplink(self, item: _Item, priority: Priority) -> None:
        self._uorder += 1
        self._uplink_q.put_nowait((int(priority), self._uorder, item))

    def _dead_letter(self, item: _Item, exc: BaseException, attempts: int) -> None:
        self._park(item.topic, item.payload, item.received_ms, exc, key=item.key, attempts=attempts)
        log.error("alerting refused %s %d times: parked in the dead letters (%s: %s)", item.key, attempts, type(exc).__name__, exc)

    def _park(self, topic: str, payload: bytes, received_ms: int, exc: BaseException, *, key: str, attempts: int, outcome: str = "parked") -> None:
        """Append a message to dead-letters.jsonl beside the journal (fsynced), to look at and replay after a fix.
        `outcome` "raised_without_detail": its alarm was raised all the same (not counted as a dead letter)."""
        if outcome == "parked":
            self.lanes.dead_letters += 1
        record = {"outcome": outcome, "key": key, "topic": topic, "payload": payload.decode("utf-8", errors="replace"),
                  "payload_b64": base64.b64encode(payload).decode("ascii"),
                  "received_ms": received_ms, "attempts": attempts, "error": f"{type(exc).__name__}: {exc}"}
        path = (self.journal_dir or Path(".")) / "dead-letters.jsonl"
        try:
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            log.exception("could not write the dead letter of %s", key or topic)

    def _remember(self, entry: JournalEntry) -> None:
        """Put a journaled uplink back in the de-duplication window, with the digest of its content."""
        try:
            uplink = decode_uplink(entry.topic, entry.payload)
        except MessageRejected:
            self.recent.seen(entry.key)
            return
        key = f"{uplink.topic.gateway}/{_msg_id(uplink)}"
        self.recent.check(key, _version(uplink))
        if entry.key != key:  # journaled under a flagged id: it reused `key`
            self.recent.seen(entry.key)

    def _queue_replay(self, entry: JournalEntry) -> None:
        try:
            uplink = decode_uplink(entry.topic, entry.payload)
        except MessageRejected:  # journaled messages were valid; a contract change could make one invalid
            log.exception("journaled uplink %s no longer decodes; dropping it", entry.key)
            return
        if entry.key != f"{uplink.topic.gateway}/{_msg_id(uplink)}":  # journaled under a flagged id (a reused msg_id)
            uplink = _reused(uplink)
        item = _Item(entry.seq, entry.key, entry.topic, entry.payload, uplink, entry.received_ms, NO_ACK, time.monotonic(), replay=True)
        self._put_uplink(item, uplink.priority)

    def _check_known(self, uplink: Uplink, topic: str) -> None:
        """Is the device in the site directory, behind the gateway it came through? Raise MessageRejected if not.

        A life-safety event (smoke, SOS, tamper) is never rejected for this: a detector fitted before the
        directory was updated must still raise its alarm. It is counted (`unknown_device_events`) and logged,
        and its alarm shows the unknown device id for the duty officer to sort out. A *clear* is the exception:
        a gateway may not clear the alarm of a device the directory places behind another gateway (one
        gateway's login must not be able to silence another building's smoke alarm)."""
        device = uplink.topic.device
        if device is None:
            return
        known = self.sites.devices.get(device)
        if known is not None and known.gateway == uplink.topic.gateway:
            return
        message = uplink.message
        if known is not None and isinstance(message, DeviceEvent) and message.event in CLEARING_EVENTS:
            raise MessageRejected(RejectReason.WRONG_GATEWAY,
                                  f"gateway {uplink.topic.gateway!r} may not clear device {device!r}, which belongs to gateway {known.gateway!r}", topic)
        if uplink.priority is Priority.LIFE_SAFETY:
            self.stats.unknown_device_events += 1
            log.warning("life-safety event from %s device %s through gateway %s: raised all the same",
                        "unlisted" if known is None else "misrouted", device, uplink.topic.gateway)
            return
        if known is None:
            raise MessageRejected(RejectReason.UNKNOWN_DEVICE, f"device {device!r} is not in the site directory; add it there first", topic)
        raise MessageRejected(RejectReason.WRONG_GATEWAY,
                              f"device {device!r} belongs to gateway {known.gateway!r}, not {uplink.topic.gateway!r}; fix the edge configuration", topic)

    def _ack(self, tokens: Sequence[int]) -> None:
        real = [t for t in tokens if t != NO_ACK]
        if real:
            self._acker(real)

    async def _in(self, ex: ThreadPoolExecutor, fn: Callable[[], _T]) -> _T:
        return await self._loop.run_in_executor(ex, fn)

    async def _retry_delay(self, attempt: int) -> None:
        s = self.settings
        await asyncio.sleep(min(s.store_retry_min_s * 2 ** min(attempt, 20), s.store_retry_max_s))

    # -- uplink lane ------------------------------------------------------------------------------------

    async def _uplink_lane(self) -> None:
        while True:
            items = [(await self._uplink_q.get())[2]]
            while len(items) < 256 and not self._uplink_q.empty():
                items.append(self._uplink_q.get_nowait()[2])
            rows = [(i.seq, i.key, i.topic, i.payload, i.received_ms) for i in items if i.seq and not i.replay]
            attempt = 0
            while rows:
                try:
                    # On the loop thread, on purpose: a WAL commit without fsync costs ~0.1 ms, while a hop to a
                    # thread waits for the GIL behind the store writer (measured: p50 150 ms under full load).
                    self.ujournal.append(rows)
                    break
                except JournalError:
                    self.lanes.journal_failures += 1
                    log.exception("uplink journal refused a commit; retrying, not acknowledging")
                    await self._retry_delay(attempt)
                    attempt += 1
            self._ack([i.token for i in items])
            done: list[int] = []
            deliverable = [i for i in items if i.uplink is not None]  # already in priority order: the queue is a heap
            # Life-safety messages are decided and committed on their own, ahead of the rest of the burst: a smoke
            # alarm never waits for the commit of 200 availability changes that happened to arrive with it.
            urgent = [i for i in deliverable if i.uplink is not None and i.uplink.priority is Priority.LIFE_SAFETY]
            rest = [i for i in deliverable if i.uplink is not None and i.uplink.priority is not Priority.LIFE_SAFETY]
            handled: set[int] = set()  # seqs done, or queued again by _deliver
            outage = False
            for group in (urgent, rest):
                if outage:
                    break
                if len(group) > 1 and isinstance(self.feed, BatchFeed):
                    outcome = await self._deliver_batch(self.feed, group)
                    if outcome is _Delivery.DONE:
                        done += [i.seq for i in group]
                        handled.update(i.seq for i in group)
                        continue
                    if outcome is _Delivery.UNAVAILABLE:
                        outage = True
                        break
                for item in group:  # one at a time: also after a refused batch, so one bad message cannot hold back the others
                    outcome = await self._deliver(item)
                    if outcome is _Delivery.UNAVAILABLE:
                        outage = True
                        break
                    handled.add(item.seq)
                    if outcome is _Delivery.DONE:
                        done.append(item.seq)
            if outage:  # alerting is away: everything not handed over goes back in the queue, still journaled
                for item in deliverable:
                    if item.seq not in handled:
                        self._requeue(item)
                await self._retry_delay(self.lanes.alerting_outages)
            if done:
                try:
                    self.ujournal.mark_done(done)
                except JournalError:  # they are offered again after a restart: at least once, never lost
                    log.exception("could not mark %d uplinks as delivered", len(done))

    def _requeue(self, item: _Item) -> None:
        assert item.uplink is not None
        self._put_uplink(dataclasses.replace(item, token=NO_ACK, replay=True), item.uplink.priority)

    def _alerting_down(self, exc: BaseException) -> None:
        lanes = self.lanes
        lanes.alerting_outages += 1
        lanes.alerting_down_why = f"{type(exc).__name__}: {exc}"[:300]
        if lanes.alerting_down_since_ms is None:
            lanes.alerting_down_since_ms = self.clock.now_ms()
            log.error("alerting unavailable (%s): uplinks stay in the journal and are offered again until it is back", lanes.alerting_down_why)

    def _alerting_up(self) -> None:
        lanes = self.lanes
        if lanes.alerting_down_since_ms is not None:
            log.warning("alerting back after %.1f s", (self.clock.now_ms() - lanes.alerting_down_since_ms) / 1000)
            lanes.alerting_down_since_ms = None
            lanes.alerting_down_why = ""
        lanes.alerting_outages = 0

    async def _deliver_batch(self, feed: BatchFeed, items: list[_Item]) -> _Delivery:
        """Hand a burst over in one call (one decision, one commit). RETRY if the feed refused it: the caller
        then hands the items over one by one, so a single bad message is found and dealt with on its own."""
        handed = time.monotonic()  # measured at hand-off, as for single messages: time spent queued in ingest
        try:
            await feed.on_uplink_batch([(i.uplink, i.received_ms) for i in items if i.uplink is not None])
        except Exception as exc:
            self.lanes.feed_failures += 1
            if _transient(exc):
                self._alerting_down(exc)
                return _Delivery.UNAVAILABLE
            log.exception("alerting refused a batch of %d; handing them over one by one", len(items))
            return _Delivery.RETRY
        self._alerting_up()
        for item in items:
            assert item.uplink is not None
            if item.uplink.priority is Priority.LIFE_SAFETY:
                self.lanes.life_safety_latency_s.append(handed - item.intake_s)
        del self.lanes.life_safety_latency_s[:-10_000]
        self.lanes.uplinks_delivered += len(items)
        return _Delivery.DONE

    async def _deliver(self, item: _Item) -> _Delivery:
        """One uplink to alerting; every line logged meanwhile (here, in the alarm service, its store) carries the
        message's trace: its gateway, device and msg_id as the edge gave them (backend/ops/logs.py)."""
        assert item.uplink is not None
        topic = item.uplink.topic
        with log_fields(gateway=topic.gateway, device=topic.device, msg_id=_msg_id(item.uplink), trace=item.key):
            return await self._deliver_one(item)

    async def _deliver_one(self, item: _Item) -> _Delivery:
        assert item.uplink is not None
        if item.uplink.priority is Priority.LIFE_SAFETY:
            self.lanes.life_safety_latency_s.append(time.monotonic() - item.intake_s)
            del self.lanes.life_safety_latency_s[:-10_000]
        if self.feed is None:
            return _Delivery.DONE
        try:
            await self.feed.on_uplink(item.uplink, item.received_ms)
        except Exception as exc:
            self.lanes.feed_failures += 1
            if _transient(exc):  # the alarm store or the queue is away: wait for it, for as long as it takes
                self._alerting_down(exc)
                return _Delivery.UNAVAILABLE
            attempts = self._feed_attempts.get(item.key, 0) + 1
            if attempts >= self.settings.feed_max_attempts:
                # The same message failed every time: a poison message, not an outage. Park it where a person
                # can see it (and replay it after a fix) instead of retrying for ever and slowing every round.
                self._feed_attempts.pop(item.key, None)
                if await self._raise_cleaned(item, exc, attempts):
                    return _Delivery.DONE
                self._dead_letter(item, exc, attempts)
                return _Delivery.DONE  # done with it here; it is in the dead-letter file
            self._feed_attempts[item.key] = attempts
            log.exception("alerting refused %s (attempt %d); it stays in the journal and is offered again", item.key, attempts)
            await self._retry_delay(0)
            self._requeue(item)
            return _Delivery.RETRY
        self._feed_attempts.pop(item.key, None)
        self._alerting_up()
        self.lanes.uplinks_delivered += 1
        return _Delivery.DONE

    async def _raise_cleaned(self, item: _Item, exc: BaseException, attempts: int) -> bool:
        """A life-safety event alerting refused every time: offer it once more without its cosmetic fields (the
        text a store may refuse). True if that was taken; the original is kept in the dead letters all the same."""
        assert item.uplink is not None
        assert self.feed is not None
        if item.uplink.priority is not Priority.LIFE_SAFETY or not isinstance(item.uplink.message, DeviceEvent):
            return False
        cleaned = without_cosmetics(item.uplink)
        if cleaned is item.uplink:
            return False
        try:
            await self.feed.on_uplink(cleaned, item.received_ms)
        except Exception:
            log.exception("alerting refused %s even without its detail", item.key)
            return False
        self.lanes.raised_cleaned += 1
        self.lanes.uplinks_delivered += 1
        self._park(item.topic, item.payload, item.received_ms, exc, key=item.key, attempts=attempts, outcome="raised_without_detail")
        log.error("alerting refused %s %d times for its content; raised without its detail, original in the dead letters", item.key, attempts)
        return True

    # -- telemetry lane ---------------------------------------------------------------------------------

    async def _telemetry_lane(self) -> None:
        linger = self.settings.batch_linger_ms / 1000
        while True:
            await self._t_has_data.wait()
            if linger > 0 and not self._t_full.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger):
                        await self._t_full.wait()
            rows, readings, acks, first = self._t_rows, self._t_readings, self._t_acks, self._t_first_seq
            self._t_rows, self._t_readings, self._t_acks = [], [], []
            self._t_has_data.clear()
            self._t_full.clear()
            await asyncio.sleep(0)  # let a life-safety event that arrived meanwhile go first
            attempt = 0
            while rows:
                try:
                    await self._in(self._tj_exec, lambda rows=rows: self.tjournal.append(rows))  # type: ignore[misc]
                    break
                except JournalError:
                    self.lanes.journal_failures += 1
                    log.exception("telemetry journal refused a commit; retrying, not acknowledging")
                    await self._retry_delay(attempt)
                    attempt += 1
            self._ack(acks)
            if not rows:
                continue
            self.lanes.telemetry_messages += len(rows)
            self._journaled_through = rows[-1][0]
            if self._buffered_readings + len(readings) <= self.settings.max_buffered_readings:
                self._buffered_readings += len(readings)
                self._store_q.append(_Batch(first, rows[-1][0], readings))
            self._store_wakeup.set()  # dropped from memory: the writer re-reads it from the journal

    async def _next_batch(self) -> _Batch:
        """The next readings to store, in sequence order: from memory when they are there, else the journal."""
        limit = self.settings.store_batch_max_readings
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
                entries = await self._in(self._tj_exec, lambda after=after: self.tjournal.pending(after, max(1, limit // 4)))  # type: ignore[misc]
                if entries:
                    readings = []
                    for e in entries:
                        with contextlib.suppress(MessageRejected):
                            readings += readings_of(decode_uplink(e.topic, e.payload), e.received_ms)
                    self.lanes.replayed_from_journal += len(entries)
                    return _Batch(entries[0].seq, entries[-1].seq, readings)
            self._store_wakeup.clear()
            await self._store_wakeup.wait()

    async def _store_writer(self) -> None:
        assert self.store is not None
        store = self.store
        while True:
            batch = await self._next_batch()
            # Writes of at most store_batch_max_readings: one huge write would hold the GIL (building its rows)
            # long enough to delay the uplink lane on the loop thread. A crash between chunks replays the whole
            # batch, which the idempotent store absorbs.
            new, size = 0, self.settings.store_batch_max_readings
            for i in range(0, len(batch.readings), size):
                chunk = batch.readings[i:i + size]
                attempt = 0
                while True:
                    try:
                        new += await self._in(self._store_exec, lambda chunk=chunk: store.write(chunk))  # type: ignore[misc]
                        break
                    except StoreUnavailable as exc:
                        self.lanes.store_failures += 1
                        if attempt == 0:
                            log.warning("time-series store unavailable (%s); readings wait in the journal, retrying", exc.why)
                        await self._retry_delay(attempt)
                        attempt += 1
            # The feed goes BEFORE the watermark moves (issue 10): a worker killed in between replays the batch
            # from the journal, so a durable feed (backend/relay's PostgreSQL queue, idempotent per message)
            # never misses readings; the store write above is idempotent too.
            if self.feed is not None and batch.readings:
                attempt = 0
                while True:
                    try:
                        await self.feed.on_readings(batch.readings)
                        break
                    except Exception as exc:
                        self.lanes.feed_failures += 1
                        if not _transient(exc):
                            log.exception("alerting refused a batch of %d readings (they are stored)", len(batch.readings))
                            break
                        # Alerting is away: the watermark stays, the readings wait in the journal (as for the store).
                        self._alerting_down(exc)
                        await self._retry_delay(attempt)
                        attempt += 1
            await self._in(self._tj_exec, lambda batch=batch: self.tjournal.mark_done_through(batch.last_seq))  # type: ignore[misc]
            self._next_store_seq = batch.last_seq + 1
            self.lanes.store_batches += 1
            self.lanes.readings_stored += len(batch.readings)
            self.lanes.readings_new += new

    async def _pruner(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval_s)
            for j, ex in ((self.tjournal, self._tj_exec), (self.ujournal, self._uj_exec)):
                try:
                    await self._in(ex, j.prune)
                except JournalError:
                    log.exception("could not prune %s", j.path)

    def uplinks_waiting(self) -> int:
        """Uplinks (events, status) journaled or queued and not yet handed to alerting: grows while it is away."""
        return self._uplink_q.qsize() if self.running else 0

    def backlog(self) -> int:
        """Telemetry messages journaled but not yet stored."""
        return max(0, self._journaled_through - self._next_store_seq + 1) if self.running else 0

