"""The rules seat: exactly one backend process at a time runs the alerting core, fed from the uplink queue.

How this works: every `shouwang backend` process enters a `RulesSeat`. Its task `rules-seat` keeps one
PostgreSQL connection and tries `pg_try_advisory_lock(relay.lock_key)` every `relay.standby_poll_s`. The
process that gets it is the leader for one *term*:

1. it builds an AlarmService from the alarm store (open alarms + the last rule-state snapshot: every timer
   re-derived from stored state and `now`), attaches the escalation bridge, and starts the ladder of any
   alarm still `raised` without one (the old leader may have died between the alarm write and the start);
2. it consumes pending queue rows in (priority, id) order: readings in batches, uplinks and console/ladder
   moves one by one. Each alarm-store transaction also marks the rows consumed so far (backend.alarms.store
   IN_TRANSACTION hook) after a *fence*: the transaction checks in `pg_locks` that the lock is still held by
   this term's lock connection, and rolls back otherwise. So an alarm write and the consumption of the rows
   that caused it commit together or not at all: no alarm is written twice, no row is lost. Rows that caused
   no write are marked in a small transaction of their own at the end of the round (same fence);
3. a watchdog task checks the lock connection every `relay.lock_check_s`; a failure (or a fence that fails)
   ends the term. The lock is a *session* lock: when the leader dies (kill -9) PostgreSQL closes its session
   and releases the lock, and a standby takes it within `standby_poll_s`;
4. patrol (巡检, backend.patrol) runs for the term: one PatrolScheduler in the whole cluster, sending the
   commands through the backend's publisher, its `patrol_missed` alarms written through the term's store
   (fenced: its task is created while IN_TRANSACTION holds the fence) and told to the escalation bridge. The
   answers (PatrolHeartbeats with a patrol id) come through the queue: `_round` hands them to the scheduler
   before the alarm service. A new term starts a new schedule; the open `patrol_missed` alarms are loaded
   from the store, so a gateway still silent after a takeover counts another occurrence, not a second alarm.

A row the alarm store refuses for its content (backend.alarms.store.StoreRefused, or any error that is not an
outage) is tried `relay.row_max_attempts` times, `relay.row_retry_s` apart, within the round; a life-safety event
then once more without its detail and value (raised all the same, its result says `cleaned`); after that the
row is *parked*: consumed with the result `{"ok": false, "error": "parked", "reason": ...}`, counted, and the
rows after it flow on. (Before, one such row, a smoke alarm with a NUL in its detail, ended the term and was
retried for ever while every later alarm waited.) `RulesSeat.stuck()` says what is parked or being retried;
UplinkQueue.backlog() says how many rows wait and for how long: /readyz and the console read both. An outage
(StoreUnavailable, LostLeadership) still ends the term, and the next one waits it out.

What a takeover loses: only in-memory rule state newer than the last snapshot (debounce progress, baselines):
a debounce restarts, an alarm may come a debounce period later; no alarm is lost or duplicated. Patrols
outstanding at the takeover are forgotten: the new schedule patrols every gateway within one interval.

Exceptions: `LostLeadership` (backend.relay.queue) ends a term; anything else ending a term is logged and
the seat goes back to standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import msgspec
import psycopg
import sqlalchemy as sa

from backend.alarms.rules import deployment_rules
from backend.alarms.service import AlarmService, MoveRefused, NoSuchAlarm
from backend.alarms.store import IN_TRANSACTION, AlarmStore, StoreUnavailable, translated
from backend.centre import AlarmCore
from backend.escalation.runtime import EscalationRuntime
from backend.ingest.handoff import Reading
from backend.patrol.scheduler import PatrolScheduler
from backend.relay.queue import CHANNEL, LostLeadership, QueueRow, UplinkQueue, decode_readings, mark_consumed, pg_conninfo, record_results
from backend.settings import Settings
from backend.sites.model import SiteDirectory
from backend.stream import CentreStream
from broker.clock import Clock
from broker.errors import MessageRejected
from broker.kinds import Priority
from broker.schemas import PatrolHeartbeat, Uplink, decode_uplink, without_cosmetics

__all__ = ["MoveCommand", "RulesSeat", "WindowCommand"]

log = logging.getLogger(__name__)


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


def _why(exc: BaseException) -> str:
    """`Type: message` of an exception, or of each leaf of an exception group (whose own message names none)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_why(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _try_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


class MoveCommand(msgspec.Struct, frozen=True):
    alarm_id: str
    move: str
    actor: str
    note: str = ""
    until_ms: int | None = None


class WindowCommand(msgspec.Struct, frozen=True):
    subject: str
    until_ms: int
    author: str
    note: str = ""


_move_dec = msgspec.json.Decoder(MoveCommand)
_window_dec = msgspec.json.Decoder(WindowCommand)


def _fence(lock_pid: int, key: int) -> Callable[[sa.Connection], None]:
    def check(conn: sa.Connection) -> None:
        held = conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid AND classid = 0 AND objid = :key AND objsubid = 1"
        ), {"pid": lock_pid, "key": key}).scalar_one()
        if not held:
            raise LostLeadership(f"the rules lock is no longer held by session {lock_pid}")

    return check


class FencedAlarmStore(AlarmStore):
    """The alarm store of one term: the rule-state snapshot is written only while this term holds the lock
    (a deposed leader must not overwrite its successor's snapshot)."""

    def __init__(self, engine: sa.Engine, context: Callable[[str], tuple[str | None, str | None]], fence: Callable[[sa.Connection], None],
                 gateways: Callable[[str], tuple[str | None, str | None]] | None = None) -> None:
        super().__init__(engine, context, gateway_context=gateways)
        self.fence = fence

    def save_rule_state(self, name: str, data: bytes, now_ms: int) -> None:
        with translated("could not save the rule state"), self.engine.begin() as conn:
            self.fence(conn)
            self._write_rule_state_row(conn, name, data, now_ms)


@dataclass
class _Marks:
    """Rows processed in this round and not yet marked consumed (marked by the next alarm transaction)."""

    ids: list[int] = field(default_factory=list)
    flushed: int = 0


class RulesSeat:
    """`publish` sends the leader's patrol commands (the backend's MqttPublisher.publish; None: this seat runs no
    patrol), `broker` names the broker behind it (host, port) in the scheduler's messages."""

    def __init__(self, settings: Settings, db: sa.Engine, sites: SiteDirectory, clock: Clock, escalation: EscalationRuntime,
                 *, stream: CentreStream | None = None, name: str = "backend", on_change: Callable[[bool], None] | None = None,
                 publish: Callable[[str, bytes, int], Awaitable[None]] | None = None, broker: tuple[str, int] = ("", 0)) -> None:
        self.settings = settings
        self.rules = deployment_rules(settings)  # defaults + alerting.rules_file, checked now, not at the first term
        self.relay = settings.relay
        url = settings.relay.queue_db_url or settings.storage.alarm_db_url
        if not url:
            raise ValueError("the rules seat needs PostgreSQL: set storage.alarm_db_url (or relay.queue_db_url)")
        self.conninfo = pg_conninfo(url)
        self.queue = UplinkQueue(url)
        self.db = db
        self.sites = sites
        self.clock = clock
        self.escalation = escalation
        self.stream = stream or CentreStream()  # each term's alarm service publishes its commits here
        self.name = name
        self.on_change = on_change
        self.publish = publish
        self.broker = broker
        self.leader = False
        self.terms = 0
        self.service: AlarmService | None = None
        self.patrol: PatrolScheduler | None = None  # this term's, while leader
        self.stats: dict[str, int] = {"rows": 0, "readings": 0, "uplinks": 0, "commands": 0, "rounds": 0, "parked": 0, "cleaned": 0}
        self.parked: deque[dict[str, Any]] = deque(maxlen=50)  # the most recent parked rows: key, reason, when
        self._retrying: dict[str, Any] | None = None  # the row being retried now, if any
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.queue.ensure_tables)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._seat(), name="rules-seat")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._task.cancel()
        with contextlib.suppress(BaseExceptionGroup, asyncio.CancelledError):
            assert self._tg is not None
            await self._tg.__aexit__(None, None, None)
        await asyncio.to_thread(self.queue.close)

    def stuck(self) -> dict[str, Any]:
        """What this seat could not apply: rows parked since start (with the latest reasons) and the row it is
        retrying now. For /readyz and the console (with UplinkQueue.backlog() for rows still waiting)."""
        return {"leader": self.leader, "parked": self.stats["parked"], "cleaned": self.stats["cleaned"],
                "recent_parked": list(self.parked)[-10:], "retrying": dict(self._retrying) if self._retrying else None}

    def _set_leader(self, leader: bool) -> None:
        if leader != self.leader:
            self.leader = leader
            log.info("%s: %s the rules leader", self.name, "now" if leader else "no longer")
            if self.on_change is not None:
                self.on_change(leader)

    # -- standby ------------------------------------------------------------------------------------------
    async def _seat(self) -> None:
        key = self.relay.lock_key
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = await asyncio.to_thread(_connect, self.conninfo)
                lock_conn = conn
                while not self._stop.is_set():
                    if await asyncio.to_thread(_try_lock, lock_conn, key):
                        self.terms += 1
                        await self._term(lock_conn)
                        break  # leave the session: closing it releases the lock whatever happened
                    await asyncio.sleep(self.relay.standby_poll_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an ExceptionGroup from the term's tasks: its leaves say what ended it
                log.warning("%s: rules term ended: %s", self.name, _why(exc))
                await asyncio.sleep(self.relay.standby_poll_s)
            finally:
                self._set_leader(False)
                self.service = None
                self.patrol = None
                if conn is not None:
                    await asyncio.to_thread(conn.close)

    # -- one term as leader ---------------------------------------------------------------------------------
    async def _term(self, lock_conn: psycopg.Connection[Any]) -> None:
        fence = _fence(lock_conn.info.backend_pid, self.relay.lock_key)
        sites = self.sites
        store = await asyncio.to_thread(FencedAlarmStore, self.db, sites.place_of_building, fence, sites.place_of_gateway)
        # readings_chunk=None: each on_readings call is one transaction, which also marks the rows it consumed
        service = AlarmService(store, sites, self.clock, rules=self.rules, retention_days=self.settings.storage.audit_retention_days,
                               readings_chunk=None, stream=self.stream)
        try:
            # The same core as the single process (backend.centre): the alarm service, the ladder's bridge (entering it
            # re-derives every live alarm's ladder: a previous leader may have died between an alarm and its ladder, life
            # safety first) and this term's patrol, sending the commands through the backend's publisher, every write fenced.
            async with AlarmCore(service, self.escalation, self.settings, sites, publish=self.publish, broker=self.broker, fence=fence) as core, \
                    asyncio.TaskGroup() as tg:
                self.service = service
                self.patrol = core.patrol
                self._set_leader(True)
                tg.create_task(self._watch_lock(lock_conn), name="rules-lock-watch")
                tg.create_task(self._consume(service, fence), name="rules-consumer")
                tg.create_task(self._prune(), name="rules-queue-prune")
        except* LostLeadership as eg:
            log.warning("%s: %s", self.name, eg.exceptions[0])

    async def _watch_lock(self, conn: psycopg.Connection[Any]) -> None:
        while True:
            await asyncio.sleep(self.relay.lock_check_s)
            try:
                await asyncio.to_thread(lambda: conn.execute("SELECT 1").fetchone())
            except psycopg.Error as exc:
                raise LostLeadership(f"the lock connection failed: {exc}") from exc

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(3600)
            cutoff = self.clock.now_ms() - int(self.relay.retain_consumed_h * 3_600_000)
            n = await asyncio.to_thread(self.queue.prune, cutoff)
            log.info("pruned %d consumed queue rows", n)

    async def _wait_for_rows(self, listen: psycopg.Connection[Any]) -> None:
        def wait() -> None:
            for _ in listen.notifies(timeout=self.relay.idle_poll_s, stop_after=1):
                pass

        await asyncio.to_thread(wait)

    async def _consume(self, service: AlarmService, fence: Callable[[sa.Connection], None]) -> None:
        listen = await asyncio.to_thread(_connect, self.conninfo)
        try:
            await asyncio.to_thread(listen.execute, f"LISTEN {CHANNEL}")
            while True:
                rows = await asyncio.to_thread(self.queue.pending, self.relay.batch_max_rows)
                if not rows:
                    await self._wait_for_rows(listen)
                    continue
                await self._round(service, fence, rows)
        finally:
            await asyncio.to_thread(listen.close)

    async def _round(self, service: AlarmService, fence: Callable[[sa.Connection], None], rows: Sequence[QueueRow]) -> None:
        marks = _Marks()
        results: dict[int, str] = {}

        def in_tx(conn: sa.Connection) -> None:
            fence(conn)
            ids = marks.ids[marks.flushed:]
            mark_consumed(conn, ids, self.clock.now_ms())
            record_results(conn, {i: results[i] for i in ids if i in results})
            marks.flushed = len(marks.ids)

        token = IN_TRANSACTION.set(in_tx)
        try:
            i = 0
            while i < len(rows):
                row = rows[i]
                if row.kind == "readings":
                    readings: list[Reading] = []
                    while i < len(rows) and rows[i].kind == "readings":
                        readings += decode_readings(rows[i].body)
                        marks.ids.append(rows[i].id)
                        i += 1
                    await service.on_readings(readings)
                    self.stats["readings"] += len(readings)
                    continue
                marks.ids.append(row.id)
                i += 1
                if row.kind == "uplink" and row.topic is not None:
                    try:
                        uplink = decode_uplink(row.topic, row.body)
                    except MessageRejected:
                        log.exception("queue row %s no longer decodes; consumed without effect", row.key)
                        continue
                    msg = uplink.message
                    if self.patrol is not None and isinstance(msg, PatrolHeartbeat) and msg.patrol_id:
                        # Fenced but consuming no row: the row is consumed with the alarm service's decision on it.
                        # Replayed by a next leader, its patrol id is unknown to that term's schedule: no effect.
                        patrol_token = IN_TRANSACTION.set(fence)
                        try:
                            await self.patrol.heartbeat(uplink.topic.gateway, msg.patrol_id, row.received_ms)
                        finally:
                            IN_TRANSACTION.reset(patrol_token)
                    if (result := await self._apply_uplink(service, row, uplink, marks)) is not None:
                        results[row.id] = result
                    self.stats["uplinks"] += 1
                elif row.kind in ("move", "window"):
                    results[row.id] = await self._command(service, row)
                    self.stats["commands"] += 1
            if marks.flushed < len(marks.ids):
                rest = marks.ids[marks.flushed:]

                def mark_rest() -> None:
                    with self.db.begin() as conn:
                        fence(conn)
                        mark_consumed(conn, rest, self.clock.now_ms())
                        record_results(conn, {i: results[i] for i in rest if i in results})

                await asyncio.to_thread(mark_rest)
        finally:
            IN_TRANSACTION.reset(token)
        if results:  # the rest: a row raised without its detail has its result only after the commit that consumed it
            await asyncio.to_thread(self.queue.set_results, results)
        self.stats["rows"] += len(rows)
        self.stats["rounds"] += 1

    async def _apply_uplink(self, service: AlarmService, row: QueueRow, uplink: Uplink, marks: _Marks) -> str | None:
        """Hand one uplink row to the alarm service; on a refusal of its content, retry a bounded number of times,
        then (a life-safety event) without its cosmetic fields, then park it. Returns the row's result, if any.
        An outage or a lost lock is raised: the term ends and the row stays pending."""
        attempts, candidate = 0, uplink
        while True:
            flushed = marks.flushed
            try:
                await service.on_uplink(candidate, row.received_ms)
            except (LostLeadership, StoreUnavailable):
                marks.flushed = flushed  # the transaction that would have marked them was rolled back
                raise
            except Exception as exc:
                marks.flushed = flushed
                attempts += 1
                why = _why(exc)[:500]
                self._retrying = {"key": row.key, "attempts": attempts, "reason": why}
                if attempts < self.relay.row_max_attempts:
                    log.warning("%s: queue row %s refused (attempt %d of %d): %s", self.name, row.key, attempts, self.relay.row_max_attempts, why)
                    await asyncio.sleep(self.relay.row_retry_s)
                    continue
                if candidate is uplink and uplink.priority is Priority.LIFE_SAFETY and (bare := without_cosmetics(uplink)) is not uplink:
                    candidate = bare
                    continue
                self._retrying = None
                self.stats["parked"] += 1
                self.parked.append({"key": row.key, "reason": why, "at_ms": self.clock.now_ms()})
                log.exception("%s: queue row %s parked after %d tries: %s", self.name, row.key, attempts, why)
                return msgspec.json.encode({"ok": False, "error": "parked", "reason": why}).decode()
            self._retrying = None
            if candidate is not uplink:
                self.stats["cleaned"] += 1
                log.error("%s: queue row %s raised without its detail after %d refusals", self.name, row.key, attempts)
                return msgspec.json.encode({"ok": True, "cleaned": "raised without detail and value: the store refused them"}).decode()
            return None

    async def _command(self, service: AlarmService, row: QueueRow) -> str:
        try:
            if row.kind == "move":
                m = _move_dec.decode(row.body)
                alarm = await service.move(m.alarm_id, m.move, m.actor, note=m.note, until_ms=m.until_ms)
                return msgspec.json.encode({"ok": True, "alarm_id": alarm.id}).decode()
            w = _window_dec.decode(row.body)
            n = await service.add_window(w.subject, w.until_ms, w.author, w.note)
            return msgspec.json.encode({"ok": True, "silenced": n}).decode()
        except NoSuchAlarm as exc:
            return msgspec.json.encode({"ok": False, "error": "no_such_alarm", "reason": str(exc)}).decode()
        except MoveRefused as exc:
            return msgspec.json.encode({"ok": False, "error": "refused", "move": exc.move, "reason": exc.reason}).decode()
        except (msgspec.DecodeError, ValueError) as exc:
            return msgspec.json.encode({"ok": False, "error": "invalid", "reason": str(exc)}).decode()

