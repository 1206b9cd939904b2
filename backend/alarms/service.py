"""The alarm service: the one async component around the pure alerting core.

How this works: `AlarmService` implements backend.ingest.handoff.AlertingFeed. Each uplink or batch of
readings goes into the core (alerting.engine.Engine) with `now` from the injected clock (or the receive time
ingest hands over); the actions the core returns are written to the `AlarmStore` in one transaction, off the
event loop, before the call returns. One asyncio.Lock keeps the core and the store in the same order.

A commit that fails leaves the core's alarm book exactly as it was before the decision (a copy taken under
the lock is put back), so the caller's retry decides the same message again from the same book: the alarm is
raised once, with its `raise` audit entry, and its ladder starts from the stream (backend.stream) after that commit. (Before
this, a failed commit left the alarm open in memory only; the retry stored it as a repeat: `raised`,
occurrences 6, no timeline, no ladder.) A store that is away (backend.alarms.store.StoreUnavailable) is
recorded in `store_health()` until a commit succeeds again, for the console and /readyz; the ticker keeps
running through an outage.

Entering the service (async context manager) loads the open alarms and the last rule-state snapshot from
the store, so every timer (debounce start, last seen, welfare quiet time, silence expiry, suppressed effects)
is re-derived from stored state and `now`; then it starts one TaskGroup with a named task, `alarm-ticker`,
that runs `tick()` every `tick_s`, saves a snapshot every `snapshot_s`, and purges records past retention
once a day. `ready` is set once all that is done. Maintenance windows are stored records
(`self.maintenance`, backend/alarms/maintenance.py): started with the core, ticked before it, and changed
through `in_core` (the window's row and the alarms it holds or releases in one transaction). Leaving stops the ticker and saves a final snapshot.

Exceptions (from the core and the store, translated for callers such as the HTTP API):

    AlarmServiceError
     ├── NoSuchAlarm       the id names no alarm
     └── MoveRefused       the lifecycle refused the move (illegal, or a person is required); carries the reason
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import numpy as np
import sqlalchemy as sa

from alerting.book import AlarmBook, UnknownAlarm, transition
from alerting.config import RuleConfig
from alerting.engine import Engine
from alerting.lifecycle import LifecycleError, Move
from alerting.model import Action, Alarm, AuditEntry, Persist, Signal
from backend.alarms.adapter import SiteAdapter
from backend.alarms.maintenance import MaintenanceError, MaintenanceSettings, MaintenanceWindows, Scope
from backend.alarms.rules import load_rules
from backend.alarms.store import IN_TRANSACTION, AlarmStore, StoreError, StoreUnavailable
from backend.errors import BackendError
from backend.ingest.handoff import Reading
from backend.sites.model import SiteDirectory
from backend.stream import CentreStream
from broker.clock import Clock
from broker.kinds import GatewayState, Priority
from broker.schemas import DeviceAvailability, DeviceEvent, GatewayStatus, PatrolHeartbeat, Telemetry, Uplink

__all__ = ["AlarmService", "AlarmServiceError", "MoveRefused", "NoSuchAlarm"]

_T = TypeVar("_T")
log = logging.getLogger(__name__)
SNAPSHOT_NAME = "engine"
DAY_MS = 86_400_000
SNAPSHOT_DEFER_S = 10.0  # the ticker puts its snapshot off at most this long while life-safety intake is busy
QUIET_S = 0.05  # `intake_busy`: the life-safety intake counts as busy until this long after its last round (the gap between a storm's rounds)
# A real life-safety round of at most this many messages is committed on the event loop when the file is free
# (`_commit_now`): a lone smoke alarm then waits for no thread's wake-up and for no fsync before the console. A bigger
# one (a storm's) is committed from the commit thread without its fsync (`_commit_unsynced`), so the loop goes on
# reading and telling meanwhile and the next round is not held back by this one's fsync.
COMMIT_ON_LOOP_MAX = 16
LOG_WAIT_S = 1.0  # a storm's alarm log lines wait at most this long for its life-safety intake to go quiet (`_tell_after`)


class AlarmServiceError(BackendError):
    pass


class NoSuchAlarm(AlarmServiceError):
    def __init__(self, alarm_id: str) -> None:
        self.alarm_id = alarm_id
        super().__init__(f"no alarm with id {alarm_id!r}")


class MoveRefused(AlarmServiceError):
    def __init__(self, alarm_id: str, move: str, reason: str) -> None:
        self.alarm_id, self.move, self.reason = alarm_id, move, reason
        super().__init__(f"alarm {alarm_id}: {move} refused: {reason}")


def one_persist_per_alarm(actions: Sequence[Action]) -> list[Action]:
    """A batch's actions with each alarm's Persists made one: the alarm as the last of them left it, with the audit
    entries of them all in order, in the place of the last (issue 19: in a storm, a building's confirmed fire counted
    again by each of its smoke alarms was one row write, one stream event and one feed event per smoke, not one per
    commit). Other actions keep their places; nothing is dropped: the feed shows an alarm as it now is."""
    last = {a.alarm.id: i for i, a in enumerate(actions) if isinstance(a, Persist)}
    if len(last) == sum(1 for a in actions if isinstance(a, Persist)):
        return list(actions)
    audits: dict[str, list[AuditEntry]] = {}
    out: list[Action] = []
    for i, a in enumerate(actions):
        if not isinstance(a, Persist):
            out.append(a)
            continue
        audits.setdefault(a.alarm.id, []).extend(a.audit)
        if last[a.alarm.id] == i:
            out.append(Persist(a.alarm, tuple(audits.pop(a.alarm.id))))
    return out


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("publishing committed alarm changes failed", exc_info=task.exception())


def _log_changes(actions: Sequence[Action]) -> None:
    """One line per committed change, with the fields that trace it back to the device's message."""
    for action in actions:
        if isinstance(action, Persist):
            a = action.alarm
            gw, msg = a.place.gateway, a.source_msg_id
            fields = {"alarm_id": a.id, "device": a.place.device, "gateway": gw, "msg_id": msg, "trace": f"{gw}/{msg}" if gw and msg else None}
            for e in action.audit:
                log.info("alarm %s (%s%s): %s -> %s by %s%s", a.id, a.alarm_type, ", drill" if a.drill else "",
                         e.from_state or "new", e.to_state, e.actor, f": {e.note}" if e.note else "", extra=fields)


def _book_state(book: object) -> dict[str, Any]:
    """A copy of the alarm book's state (its containers copied, its values frozen), to put back if the
    commit of what was decided from it fails."""
    return {k: (v.copy() if isinstance(v, dict | list | set) else v) for k, v in vars(book).items()}


class AlarmService:
    def __init__(self, store: AlarmStore, sites: SiteDirectory, clock: Clock, *, rules: RuleConfig | None = None,
                 tick_s: float = 1.0, snapshot_s: float = 60.0, retention_days: int = 400, readings_chunk: int | None = 500,
                 maintenance: MaintenanceSettings | None = None, stream: CentreStream | None = None) -> None:
        self.store = store
        self.stream = stream or CentreStream()  # committed alarm changes go out here (backend.stream)
        self.sites = sites
        self.clock = clock
        base = rules or load_rules()
        # The site directory's per-device settings (what the installer set on each detector) join the rules here,
        # checked now: a wrong one stops the start naming the device, not the device's first reading.
        self.rules = base.with_device_settings(sites.rule_settings) if sites.rule_settings else base
        self.tick_s, self.snapshot_s, self.retention_days = tick_s, snapshot_s, retention_days
        self.readings_chunk = readings_chunk
        self.ready = asyncio.Event()
        self.stats: dict[str, int] = {"uplinks": 0, "readings": 0, "actions": 0, "ticks": 0, "commits_on_loop": 0, "sync_failures": 0}
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._engine: Engine | None = None
        self.maintenance = MaintenanceWindows(self, sites, maintenance)  # stored maintenance windows (backend/alarms/maintenance.py)
        self._store_down_since_ms: int | None = None
        self._store_down_why = ""
        self._failed_commits = 0
        self._health_listeners: list[Callable[[dict[str, Any]], None]] = []
        # The alarm commits' own thread: asyncio's shared pool (6 threads on 2 cores) also runs the notices', the
        # ladder's and the feed's store calls, and in a storm an alarm's commit queued behind them there.
        self._commit_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._sync_pool: concurrent.futures.ThreadPoolExecutor | None = None  # `_sync_soon`
        self._intake = 0  # rounds of device messages waiting for the lock or being decided (`intake_quiet`)
        self._intake_quiet = asyncio.Event()
        self._intake_quiet.set()
        self._intake_ended = -QUIET_S  # time.monotonic() when the last such round ended
        self._telling: asyncio.Task[None] | None = None  # the last `_tell_later`: every later `_tell` waits for it
        self._unlogged: list[Sequence[Action]] = []  # a storm's committed changes, told, whose log lines wait (`_tell_after`)
        self._logging: asyncio.Task[None] | None = None

    async def _in_commit_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a commit of alarm state in the service's own thread (with this task's context: IN_TRANSACTION)."""
        if self._commit_pool is None:
            self._commit_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-commit")
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._commit_pool, functools.partial(ctx.run, fn, *args))

    def add_health_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener(store_health())` when the store goes down and when it is back (e.g. a status event on
        the console's live feed). Called on the event loop; it must not block."""
        self._health_listeners.append(listener)

    def _health_changed(self) -> None:
        health = self.store_health()
        for listener in self._health_listeners:
            try:
                listener(health)
            except Exception:
                log.exception("a store-health listener failed")

    def store_health(self) -> dict[str, Any]:
        """Is the alarm store taking writes? `down` stays true from the first failed commit of an outage to the
        next successful one; the console and /readyz show it (alarms meanwhile wait in ingest's journal)."""
        return {"down": self._store_down_since_ms is not None, "down_since_ms": self._store_down_since_ms,
                "why": self._store_down_why or None, "failed_commits": self._failed_commits}

    @contextlib.contextmanager
    def _book_kept(self) -> Iterator[None]:
        """Under the lock, around a decision and its commit: if anything fails, the book is as it was before, and the
        rule flags are made to agree with it again (`Engine.reconcile`): a threshold the failed decision marked
        active, a device it marked lost, is raised again by the retry instead of being taken as already raised."""
        book = self.engine.book
        saved = _book_state(book)
        try:
            yield
        except BaseException:
            vars(book).clear()
            vars(book).update(saved)
            self.engine.reconcile()
            raise

    @contextlib.asynccontextmanager
    async def _book_kept_async(self) -> AsyncIterator[None]:
        with self._book_kept():
            yield

    async def _tell(self, actions: Sequence[Action]) -> None:
        """Publish and log committed actions, after everything told before them (the last `_tell_later`)."""
        await self._tell_after(self._telling, actions)

    async def _tell_after(self, before: asyncio.Task[None] | None, actions: Sequence[Action], *, storm: bool = False) -> None:
        """Out on the centre's stream (the console's feed, the ladder) first, after the lock is released (a subscriber
        may ask for a move, as the ladder does); then one log line per committed change. A storm's rounds (`storm`:
        more life-safety messages wait behind them) have their lines logged once its intake is over (at most
        `LOG_WAIT_S` later), in order, and anything told after them waits behind them: ~25 µs a line on the event
        loop, 50 ms of a 2,000-alarm storm the alarms are not held for (issue 19). The alarms and their audit are
        stored already; only the lines come a moment later."""
        if before is not None and not before.done():
            await asyncio.wait({before})
        if not actions:
            return
        await self.stream.publish([a for a in actions if isinstance(a, Persist)])
        if self._unlogged or storm:
            self._unlogged.append(actions)
            if self._logging is None or self._logging.done():
                self._logging = asyncio.get_running_loop().create_task(self._log_when_quiet(), name="alarm-log")
                self._logging.add_done_callback(_log_failure)
            return
        _log_changes(actions)

    async def _log_when_quiet(self) -> None:
        await self.intake_quiet(LOG_WAIT_S)
        self._log_waiting()

    def _log_waiting(self) -> None:
        waiting, self._unlogged = self._unlogged, []
        for actions in waiting:
            _log_changes(actions)

    @classmethod
    def for_sites(cls, store_engine: Any, sites: SiteDirectory, clock: Clock, **kwargs: Any) -> AlarmService:
        """A service with its own AlarmStore on a SQLAlchemy engine, filing alarms by grid and community."""
        return cls(AlarmStore(store_engine, sites.place_of_building, gateway_context=sites.place_of_gateway), sites, clock, **kwargs)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise AlarmServiceError("the alarm service is not running: use `async with AlarmService(...)`")
        return self._engine

    # -- lifecycle of the component ------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tg.create_task(self._ticker(), name="alarm-ticker")
        self.ready.set()
        return self

    async def start(self) -> None:
        """Build the core from stored state (also usable without the ticker, e.g. in tests)."""
        now = self.clock.now_ms()
        open_alarms = await asyncio.to_thread(self.store.open_alarms)
        snapshot = await asyncio.to_thread(self.store.load_rule_state, SNAPSHOT_NAME)
        ran_before = snapshot is None and await asyncio.to_thread(self.store.has_history)
        # Built in a worker thread: the core's columns for a district (447 k devices) held the event loop ~18 s (issue 19).
        engine, restored = await asyncio.to_thread(self._build_engine, now, open_alarms, snapshot, ran_before)
        self._engine = engine
        await self.maintenance.start()  # windows that ran out while down end now, re-evaluated; the others hold again
        log.info("alarm service: %d open alarms, rule state %s", len(open_alarms), "restored" if restored else "fresh")

    def _build_engine(self, now: int, open_alarms: list[Alarm], snapshot: bytes | None, ran_before: bool) -> tuple[Engine, bool]:
        """The core from the open alarms and the snapshot (in a worker thread: nothing else sees it yet); and whether
        the snapshot was restored. `ran_before`: no snapshot, but the store has alarms or device records."""
        engine = Engine(self.rules, SiteAdapter(self.sites), now, id_prefix=f"A{now:x}.")
        engine.book.load(open_alarms)
        restored = False
        if snapshot is not None:
            try:
                with np.load(io.BytesIO(snapshot), allow_pickle=False) as npz:
                    engine.restore({k: npz[k] for k in npz.files})
                restored = True
            except Exception:  # a damaged snapshot must not stop the start: the rules run on, from stored alarms
                log.exception("alarm service: the stored rule state could not be read; starting without it")
                engine = Engine(self.rules, SiteAdapter(self.sites), now, id_prefix=f"A{now:x}.")
                engine.book.load(open_alarms)
        if not restored:
            # a damaged snapshot, or none where alarms or device records were kept: the site ran before
            if snapshot is not None or ran_before:
                log.warning("alarm service: no usable rule state for a site that ran before: every device is taken as heard once "
                            "(a silent detector is comm_lost, not 'not yet online')")
                engine.assume_heard()
            else:
                engine.reconcile()
        return engine, restored

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._telling is not None:
            await asyncio.wait({self._telling})
        if self._logging is not None:
            self._logging.cancel()
        self._log_waiting()
        if self._tg is not None:
            await self._tg.__aexit__(exc_type, exc, tb)
            self._tg = None
        if self._engine is not None:
            await self.save_state()
        for pool in (self._commit_pool, self._sync_pool):
            if pool is not None:
                pool.shutdown(wait=False)
        self._commit_pool = self._sync_pool = None

    async def _ticker(self) -> None:
        last_snapshot = last_purge = self.clock.now_ms()
        # tick_s is in the clock's time: a drill's compressed clock ticks as often in drill time as a real one
        # (offline detection, debounce), with a 50 ms floor in wall time so a fast drill does not spin.
        wait_s = max(0.05, self.clock.real_seconds(self.tick_s * 1000))
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(wait_s):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            now = self.clock.now_ms()
            try:  # an outage of the store must not stop the ticker: it retries on its next round
                await self.tick()
                # The snapshot (~10 MB at street scale) copies and serialises the core's arrays (CPU the intake needs;
                # on PostgreSQL also a big row): not in the middle of a storm's intake; put off to a later tick, for
                # at most SNAPSHOT_DEFER_S (a flood that never ends does not stop the snapshots).
                overdue = now - last_snapshot >= (self.snapshot_s + SNAPSHOT_DEFER_S) * 1000
                if now - last_snapshot >= self.snapshot_s * 1000 and (not self.intake_busy() or overdue):
                    await self.save_state()
                    last_snapshot = now
                if now - last_purge >= DAY_MS:
                    await asyncio.to_thread(self.store.purge, now, self.retention_days)
                    last_purge = now
            except StoreError as exc:
                log.warning("alarm ticker: %s; retrying next round", exc)
            except Exception:  # whatever a round meets (a maintenance write, a bug), device-lost detection must go on
                log.exception("alarm ticker: a round failed; retrying next round")

    async def _commit(self, actions: Sequence[Action]) -> list[Action]:
        """Store the actions (the caller holds the lock, inside `_book_kept`)."""
        if actions:
            with self._storing():
                await self._in_commit_thread(self.store.apply, actions)
            self.stats["actions"] += len(actions)
        return list(actions)

    async def _commit_now(self, actions: Sequence[Action]) -> asyncio.Future[None] | None:
        """Store a small round of life-safety actions (at most COMMIT_ON_LOOP_MAX messages) right here on the event loop
        when the file is free (`AlarmStore.apply_now`), and return the future of their sync to the disk (durable against
        a power cut), which `on_uplink_batch` returns once they are told; None when they were committed from the commit
        thread instead, synced, as `_commit` does (the file busy, PostgreSQL, a cluster's transaction hook). The caller
        holds the lock, inside `_book_kept`."""
        if not actions:
            return None
        try:
            now = self.store.apply_now(actions)
        except StoreUnavailable as exc:
            self._store_failed(exc)
            raise
        if not now:  # the file was busy: nothing written, nothing learnt about the store
            await self._commit(actions)
            return None
        self._store_worked()
        self.stats["actions"] += len(actions)
        self.stats["commits_on_loop"] += 1
        return self._sync_soon()

    async def _commit_unsynced(self, actions: Sequence[Action]) -> asyncio.Future[None] | None:
        """`_commit` without the fsync inside the commit (SQLite: synchronous=NORMAL for this transaction, `AlarmStore.apply`
        with `synced=False`): return the future of the sync to the disk, as `_commit_now` does; None on PostgreSQL (its
        commit is durable when it returns)."""
        if not actions:
            return None
        with self._storing():
            unsynced = await self._in_commit_thread(functools.partial(self.store.apply, actions, synced=False))
        self.stats["actions"] += len(actions)
        return self._sync_soon() if unsynced else None

    def _sync_soon(self) -> asyncio.Future[None]:
        """The sync of what was committed without it, from a thread of its own: the commit thread goes on with the next
        round's commit meanwhile (one fdatasync covers every commit before it)."""
        return self._in_sync_thread(self._sync)

    def _in_sync_thread(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        if self._sync_pool is None:
            self._sync_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-sync")
        return asyncio.get_running_loop().run_in_executor(self._sync_pool, functools.partial(fn, *args))

    def _sync(self) -> None:
        try:
            self.store.sync()
        except OSError:  # committed and told already: not taken back, but said loudly, and raised to the caller
            self.stats["sync_failures"] += 1
            log.exception("alarm store: could not flush the alarm file to the disk: the last alarms are stored and survive a "
                          "restart of the process, not yet a power cut; check the disk")
            raise

    @contextlib.contextmanager
    def _storing(self) -> Iterator[None]:
        """A commit of alarm state: a failure marks the store down (the alarms wait in the ingest journal) and the
        first success after it marks it back."""
        try:
            yield
        except StoreUnavailable as exc:
            self._store_failed(exc)
            raise
        self._store_worked()

    def _store_failed(self, exc: StoreUnavailable) -> None:
        self._failed_commits += 1
        if self._store_down_since_ms is None:
            self._store_down_since_ms = self.clock.now_ms()
            log.warning("alarm store unavailable: %s; alarms wait in the ingest journal until it is back", exc.why)
            self._store_down_why = exc.why
            self._health_changed()
        self._store_down_why = exc.why

    def _store_worked(self) -> None:
        if self._store_down_since_ms is not None:
            log.warning("alarm store back after %.1f s", (self.clock.now_ms() - self._store_down_since_ms) / 1000)
            self._store_down_since_ms = None
            self._store_down_why = ""
            self._health_changed()

    # -- AlertingFeed ----------------------------------------------------------------------------------------
    def _tell_later(self, actions: Sequence[Action]) -> None:
        """Log and publish committed actions from a task of their own, in order with everything else told (each
        `_tell` first waits for the one before it): the caller goes on meanwhile."""
        task = asyncio.get_running_loop().create_task(self._tell_after(self._telling, actions, storm=True), name="alarm-tell")
        task.add_done_callback(_log_failure)
        self._telling = task

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        """One message; returns once it is committed and on the disk (or its sync failed: logged and counted in `_sync`;
        committed, it survives a crash of the process)."""
        synced = await self.on_uplink_batch([(uplink, received_ms)])
        if synced is not None:
            with contextlib.suppress(OSError):
                await synced

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> asyncio.Future[None] | None:
        """Decide on messages that arrived together, in order, under one lock and in ONE transaction; return once that
        is committed (it survives a crash of the process). A storm of 200 smoke alarms is then a few commits, not 200
        (backend.ingest.handoff BatchFeed; the ingest lane hands over what it has queued).

        What it returns is None when the commit was synced to the disk within it (it survives a power cut), else the
        future of that sync (a real life-safety round: committed on the event loop, `_commit_now`, or without the fsync
        inside the commit, `_commit_unsynced`), done once it is, or failed with the OSError the disk gave: the caller
        marks the messages done in its journal only then, and hands over its next batch meanwhile (issue 19: in a storm
        of 2,000, each round's fsync inside its commit held the next round back).

        `more_coming` (a storm: more life-safety messages wait behind these): the committed alarms are logged and
        published (on the console, to the ladder) from a task, in order, after this returns, so that the next batch's
        decision and commit (a thread) overlap that work on the event loop (issue 19: in a 2,000-alarm storm each
        round's publishing took 10-35 ms that the next round's commit waited for). Alone, they are published
        before this returns, as every other change is."""
        # Only real life-safety rounds hold the ladder back (`intake_quiet`): a reconnect flood of availability messages
        # must not delay a fire's paging, nor a drill's storm a real alarm's page (a drill holds nothing real without a
        # person's decision); a storm of smoke alarms goes on the console before the ladders' work.
        urgent = any(uplink.priority is Priority.LIFE_SAFETY and not (isinstance(uplink.message, DeviceEvent) and uplink.message.drill)
                     for uplink, _ in items)
        if urgent:
            self._intake += 1
            self._intake_quiet.clear()
        try:
            synced: asyncio.Future[None] | None = None
            async with self._lock:
                with self._book_kept():
                    actions = one_persist_per_alarm([a for uplink, received_ms in items for a in self._decide(uplink, received_ms)])
                    if urgent and len(items) <= COMMIT_ON_LOOP_MAX:
                        synced = await self._commit_now(actions)
                    elif urgent:
                        synced = await self._commit_unsynced(actions)
                    else:
                        await self._commit(actions)
            if more_coming:
                self._tell_later(actions)
            else:
                await self._tell(actions)
            return synced  # on the console and the ladder already (or queued to be); done for the journal once on the disk
        finally:
            if urgent:
                self._intake -= 1
                if not self._intake:
                    self._intake_ended = time.monotonic()
                    self._intake_quiet.set()

    def intake_busy(self) -> bool:
        """A round of real (not drill) life-safety messages waits for the service or is being decided and committed, or
        one ended less than `QUIET_S` ago (`intake_quiet`)."""
        return not self._intake_quiet.is_set() or time.monotonic() - self._intake_ended < QUIET_S

    async def intake_quiet(self, max_wait_s: float) -> None:
        """Return once the life-safety intake is not busy (`intake_busy`), or after `max_wait_s` (wall time: a yield of
        the event loop, not a domain timer). The ladder's work and a storm's log lines wait on it so that in a storm
        the alarms' own intake (decide, commit, on the console) goes first; the wait is bounded so a flood that never
        ends delays them by at most that much per round.

        Busy lasts `QUIET_S` past the last round: in a storm the ingest lane hands over its next round in the same
        turn as the last one ends, or once MQTT's next packets are read (5-10 ms later under load), and that gap is not
        the end of the storm. With a 5 ms grace (and `intake_busy` true only while a round was in flight) the ladder
        took such gaps for the end and started its batches and sent its notices in them, and their commits took the GIL
        from the storm's next rounds (issue 19: a profile of the GIL's holders over a 2,000 storm and the second
        after it found the ladder's `create_many` among them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while True:
            remaining = deadline - loop.time()
            if not self.intake_busy() or remaining <= 0:
                return
            if self._intake_quiet.is_set():  # between rounds: quiet once QUIET_S has passed since the last one
                await asyncio.sleep(min(remaining, QUIET_S - (time.monotonic() - self._intake_ended)))
                continue
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancellation that comes as the wait ends, and
                # the ladder's worker, cancelled at shutdown just as a round ended, then waited for its queue for ever
                async with asyncio.timeout(remaining):
                    await self._intake_quiet.wait()
            except TimeoutError:
                return

    def _decide(self, uplink: Uplink, received_ms: int) -> list[Action]:
        """Run one uplink message through the core (the caller holds the lock)."""
        msg = uplink.message
        gateway, device = uplink.topic.gateway, uplink.topic.device
        self.stats["uplinks"] += 1
        eng = self.engine
        if isinstance(msg, DeviceEvent) and device is not None:
            return eng.on_event(device, gateway, msg.event, received_ms, seen_ms=msg.source_ts_ms, drill=msg.drill,
                                needs_callback=msg.needs_callback, msg_id=msg.msg_id, value=msg.value, detail=msg.detail)
        if isinstance(msg, DeviceAvailability) and device is not None:
            return eng.on_availability(device, msg.state, received_ms, seen_ms=msg.source_ts_ms, reason=msg.reason, drill=msg.drill)
        if isinstance(msg, GatewayStatus):
            return eng.on_gateway_status(gateway, msg.state is GatewayState.ONLINE, received_ms, drill=msg.drill)
        if isinstance(msg, PatrolHeartbeat):
            return eng.on_patrol(gateway, msg.period_s, received_ms, source_ms=msg.source_ts_ms)
        if isinstance(msg, Telemetry) and device is not None:
            readings = [Reading(device, gateway, k, v, msg.source_ts_ms, received_ms, msg.drill) for k, v in msg.readings.items()]
            return eng.on_readings(readings, received_ms)
        return []

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        """Telemetry, already stored: decided in chunks of `readings_chunk`, the lock released between them, so
        a smoke alarm waiting for the lock waits for one chunk (a few ms), not for a whole store batch (a
        batch of 5,000 readings of new series holds the loop ~150 ms on this machine). `readings_chunk` None: the
        whole call is one decision and one transaction (the rules leader of a cluster needs that: its transaction
        also marks the queue rows the call consumed, backend/relay/leader.py)."""
        size = self.readings_chunk or max(1, len(readings))
        for i in range(0, len(readings), size):
            chunk = readings[i:i + size]
            async with self._lock:
                self.stats["readings"] += len(chunk)
                with self._book_kept():
                    actions = await self._commit(self.engine.on_readings(chunk, self.clock.now_ms()))
            await self._tell(actions)
            await asyncio.sleep(0)  # a life-safety batch queued for the lock goes next (asyncio.Lock is first come, first served)

    # -- time ------------------------------------------------------------------------------------------------
    async def tick(self) -> list[Action]:
        await self.maintenance.tick()  # windows first: one that ends now is ended (and noticed) by its record, not by the book alone
        async with self._lock:
            self.stats["ticks"] += 1
            with self._book_kept():
                actions = await self._commit(self.engine.tick(self.clock.now_ms()))
        await self._tell(actions)
        return actions

    async def save_state(self) -> None:
        """Snapshot the rule state under the lock (copies: the core's arrays are views that keep changing), then
        serialise and store it in a thread: at street scale the file is ~10 MB, and writing it on the event
        loop held the loop for ~400 ms (found by backend.loopwatch in benchmarks/e2e.py)."""
        async with self._lock:
            arrays = {k: v.copy() for k, v in self.engine.snapshot().items()}
            now = self.clock.now_ms()

        def write() -> None:
            buf = io.BytesIO()
            np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs type every keyword as allow_pickle
            self.store.save_rule_state(SNAPSHOT_NAME, buf.getvalue(), now)

        await asyncio.to_thread(write)

    # -- people ----------------------------------------------------------------------------------------------
    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm:
        """A person's (or the ladder's) move on an alarm; open or closed (archiving a closed one)."""
        m = Move(move)
        now = self.clock.now_ms()
        async with self._lock, self._book_kept_async():
            try:
                if self.engine.book.get(alarm_id) is not None:
                    actions = self.engine.move(alarm_id, m, actor, now, note=note, until_ms=until_ms)
                else:
                    stored = await asyncio.to_thread(self.store.get, alarm_id)
                    if stored is None:
                        raise NoSuchAlarm(alarm_id)
                    new, entry = transition(stored, m, actor, now, note)
                    actions = [Persist(new, (entry,))]
            except (LifecycleError, UnknownAlarm) as exc:
                raise MoveRefused(alarm_id, m.value, str(exc)) from exc
            await self._commit(actions)
        await self._tell(actions)
        return next(a.alarm for a in actions if isinstance(a, Persist) and a.alarm.id == alarm_id)

    async def move_each(self, alarm_ids: Sequence[str], move: Move | str, actor: str) -> list[Alarm]:
        """The same move on several open alarms in ONE transaction (the ladder's `notify` for a storm's ladders started
        together: one commit, one copy of the book, not one per alarm). An alarm the book no longer holds or whose
        state refuses the move is left out (moved on meanwhile: the move is not owed); returns the alarms moved."""
        m = Move(move)
        now = self.clock.now_ms()
        async with self._lock, self._book_kept_async():
            actions: list[Action] = []
            for alarm_id in dict.fromkeys(alarm_ids):
                try:
                    actions += self.engine.move(alarm_id, m, actor, now)
                except (LifecycleError, UnknownAlarm) as exc:
                    log.debug("%s on %s not made: %s", m.value, alarm_id, exc)
            await self._commit(actions)
        await self._tell(actions)
        wanted = set(alarm_ids)
        return [a.alarm for a in actions if isinstance(a, Persist) and a.alarm.id in wanted]

    async def signal(self, sig: Signal, now_ms: int | None = None) -> list[Action]:
        """A signal decided outside the rules (the patrol scheduler's `patrol_missed`), through the same book, lock,
        transaction and stream as everything else, so a ladder's or a person's move on that alarm and the
        next signal never work from two copies of it."""
        async with self._lock:
            with self._book_kept():
                actions = await self._commit(self.engine.book.signal(sig, self.clock.now_ms() if now_ms is None else now_ms))
        await self._tell(actions)
        return actions

    async def add_window(self, subject: str, until_ms: int, author: str, note: str = "") -> int:
        """A maintenance window on a device (`device:xyz`), stored as a record (backend/alarms/maintenance.py);
        returns how many of its alarms are silenced now. A life-safety device is refused here: its window needs
        the override, which only the maintenance API takes."""
        kind, _, device_id = subject.partition(":")
        d = self.sites.devices.get(device_id)
        if kind != "device" or d is None:
            raise MoveRefused(subject, "silence", "a maintenance window here names a known device (device:<id>); use /api/buildings/<id>/maintenance")
        try:
            await self.maintenance.create(building_id=d.building, scope=Scope.DEVICE, device_id=device_id, ends_ms=until_ms, author=author,
                                          reason=note)
        except MaintenanceError as exc:
            raise MoveRefused(subject, "silence", str(exc)) from exc
        return sum(1 for k, a in self.engine.book.open.items() if k.subject.partition("@")[0] == subject and a.state.value == "silenced")

    async def in_core(self, decide: Callable[[AlarmBook, int], Sequence[Action]], write: Callable[[sa.Connection], None]) -> list[Action]:
        """Decide on the alarm book under the lock and commit it with `write` in ONE transaction (the maintenance
        windows' rows go with the alarms they silence or release); the stream hears of it after."""
        async with self._lock, self._book_kept_async():
            actions = list(decide(self.engine.book, self.clock.now_ms()))
            outer = IN_TRANSACTION.get()

            def both(conn: sa.Connection) -> None:
                write(conn)
                if outer is not None:
                    outer(conn)

            token = IN_TRANSACTION.set(both)
            try:
                if actions:
                    await self._commit(actions)
                else:
                    await self._in_commit_thread(self._write_alone, both)
            finally:
                IN_TRANSACTION.reset(token)
        await self._tell(actions)
        return actions

    def _write_alone(self, write: Callable[[sa.Connection], None]) -> None:
        with self.store.engine.begin() as conn:
            write(conn)
