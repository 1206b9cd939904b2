"""转警 119: a fire verified as real, or treated as real because nobody verified it in its window, is forwarded to the
fire brigade's receiving system within 3 s (GB 50440), once, with the receiver's receipt on the alarm's timeline.

How this works: `Forwarder` is an async context manager subscribed to the centre's stream (backend.stream). The
ladder's `LadderStep` of kind `verified` (a person verified it) or `treated_real` (its verify window ran out) names
the alarm; if the alarm is a fire (`forward.alarm_types`), the forwarder opens its forward in the store (one per
alarm, its id made from the alarm id) with the body built once, claims a round and sends it:

    primary ──fail/timeout──▶ fallback ──fail──▶ primary … until a receipt or `budget_s` (3 s) is spent

Each attempt is bounded by `attempt_timeout_s` and by what is left of the budget. A receipt (2xx with a receipt
number) ends it: stored with the round's attempts, published as a `Bulletin("forward")` (the live feed shows it on
the console at once) and on the alarm's timeline. A round in which every channel failed is a critical system
alarm on the console (the same bulletin, status `failed`, in Chinese) and the next round follows `retry_every_s`
later, with the same forward id, until a receipt. A drill is not forwarded (recorded as such) unless `forward.drills`
is on, and then only to `forward.drill_url`.

The stream is the fast path. The store is the durable one: on entry and every `scan_every_s` the forwarder reads
the ladder's step log for verifications it has not opened (made before a restart, or in another backend of a
cluster, whose stream this process does not hear) and the forwards whose round is due (failed, or a lease that ran
out), so a restart between verification and receipt sends once more with the same id and nothing is lost.
Sending never blocks the stream: each alarm's round runs in its own named task of the forwarder's TaskGroup.

The wire (docs/forward.md): POST JSON, headers `Idempotency-Key: <forward id>`, `Authorization: Bearer` (forward.
token) and `X-Shouwang-Signature: sha256=<hex>` over `<X-Shouwang-Timestamp>.<body>` (forward.hmac_secret). The
answer's `receipt` (or `receipt_no`, `id`) is the receipt. httpx's exceptions stay here.

Exceptions (backend.errors draws the whole tree):

    ForwardError
     └── ChannelFailed   one channel gave no receipt: `outcome` (timeout, unreachable, http_error, no_receipt), `detail`, `status_code`
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa

from alerting.model import Alarm
from backend.alarms.store import AlarmStore
from backend.errors import BackendError
from backend.escalation.store import escalation_log
from backend.forward.settings import ForwardSettings
from backend.forward.store import Attempt, ForwardRecord, ForwardStore, Status, forward_id_of
from backend.forward.timeline import why
from backend.sites.model import Role, SiteDirectory
from backend.stream import Bulletin, CentreStream, Event, LadderStep
from broker.clock import Clock

__all__ = ["VERIFIED_KINDS", "ChannelFailed", "ForwardError", "Forwarder", "RoundResult", "forward_body", "is_fire"]

log = logging.getLogger(__name__)

VERIFIED_KINDS: Final = ("verified", "treated_real")  # alerting.ladder NoteKind values that make a fire real
_TREATED_REAL_TEXT: Final = "unverified: treated as real"
_PAUSE_BETWEEN_PASSES_S: Final = 0.1  # after every channel failed once, a breath before the next pass (a refused connection fails in µs)
_SCAN_OVERLAP_MS: Final = 5_000  # log rows committed out of order by another process are still read
_DB_THREADS: Final = 4  # the forwarder's own threads: a storm of notices waiting on SQLite's write lock holds the shared pool, not these

P = ParamSpec("P")
T = TypeVar("T")


def is_fire(alarm_type: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(alarm_type, p) for p in patterns)


def _verifier(how: str, detail: str) -> str | None:
    """Who verified it, from the ladder's note ("confirmed by duty1", "gw-1 is on scene"); None when treated as real."""
    if how != "verified":
        return None
    if detail.startswith("confirmed by "):
        return detail.removeprefix("confirmed by ").strip() or None
    if detail.endswith(" is on scene"):
        return detail.removesuffix(" is on scene").strip() or None
    return detail or None


@dataclass(frozen=True, slots=True)
class _Job:
    alarm_id: str
    how: str  # verified | treated_real
    detail: str
    at_ms: int
    drill: bool
    from_store: bool = False  # found by the scan (a restart, another process), not heard on the stream


@dataclass(frozen=True, slots=True)
class RoundResult:
    status: str  # receipted | failed | skipped
    channel: str | None = None
    receipt: str | None = None
    reason: str = ""


def _iso(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="milliseconds")


def _clock(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")


def forward_body(alarm: Alarm, sites: SiteDirectory | None, settings: ForwardSettings, zone: ZoneInfo, *, how: str, verifier: str | None,
                 verified_ms: int, grid_id: str | None, community_id: str | None) -> dict[str, Any]:
    """The JSON the receiving system gets (docs/forward.md): place in words and ids, type, raise time, contact, verifier."""
    p = alarm.place
    community = sites.communities.get(community_id) if sites is not None and community_id else None
    grid = sites.grids.get(grid_id) if sites is not None and grid_id else None
    building = sites.buildings.get(p.building) if sites is not None and p.building else None
    household = sites.households.get(p.household) if sites is not None and p.household else None
    device = sites.devices.get(p.device) if sites is not None and p.device else None
    words = [community.name if community else "", grid.name if grid else "", building.name if building else (p.building or ""),
             f"{p.unit}单元" if p.unit is not None else "", household.room if household else "",
             getattr(device, "location", "") if device is not None else ""]
    phone = settings.community_phones.get(community_id or "") or settings.duty_phone
    if not phone and sites is not None and community_id:
        phone = next((r.phone for r in sites.responders.values() if r.role is Role.DUTY_OFFICER and r.community == community_id and r.phone), "")
    return {
        "forward_id": forward_id_of(alarm.id),
        "alarm_id": alarm.id,
        "alarm_type": alarm.alarm_type,
        "title": alarm.title,
        "severity": alarm.severity.value,
        "drill": alarm.drill,
        "place": {
            "text": " ".join(w for w in words if w) or "位置未知",
            "community_id": community_id, "community": community.name if community else None,
            "grid_id": grid_id, "grid": grid.name if grid else None,
            "building_id": p.building, "building": building.name if building else None,
            "unit": p.unit, "household_id": p.household, "room": household.room if household else None,
            "device_id": p.device,
        },
        "raised_at": _iso(alarm.raised_at_ms, zone),
        "raised_at_ms": alarm.raised_at_ms,
        "time_zone": zone.key,
        "contact": {"phone": phone, "name": (community.name + "值班室") if community else "值班室"},
        "verification": {
            "how": how, "by": verifier, "at": _iso(verified_ms, zone), "at_ms": verified_ms,
            "text": f"verified by {verifier}" if how == "verified" else _TREATED_REAL_TEXT,
        },
    }


class ForwardError(BackendError):
    """Base of the 119 hand-off's errors."""


class ChannelFailed(ForwardError):
    def __init__(self, outcome: str, detail: str, status_code: int | None = None) -> None:
        self.outcome, self.detail, self.status_code = outcome, detail, status_code
        super().__init__(detail)


class Forwarder:
    def __init__(self, settings: ForwardSettings, engine: sa.Engine, alarms: AlarmStore, *, sites: SiteDirectory | None, stream: CentreStream,
                 clock: Clock, time_zone: str = "Asia/Shanghai", worker_id: str = "backend", http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.alarms = alarms
        self.sites = sites
        self.stream = stream
        self.clock = clock
        self.zone = ZoneInfo(time_zone)
        self.worker_id = worker_id
        self._own_http = http is None
        self._http = http
        self.store: ForwardStore | None = None
        self.ready = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._inflight: dict[str, asyncio.Task[RoundResult]] = {}
        self._done: set[str] = set()  # alarms settled here (receipted, not a fire, not forwarded): the scan skips them
        self._wake = asyncio.Event()
        self._closing = False
        self._watermark_ms = 0
        self._pool = ThreadPoolExecutor(_DB_THREADS, thread_name_prefix="forward-119")

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        s = self.settings
        self.store = await self._db(ForwardStore, self.engine)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(s.attempt_timeout_s, connect=s.connect_timeout_s))
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._watermark_ms = self.clock.now_ms() - round(s.recover_hours * 3_600_000)
        self.stream.subscribe(self.on_events, name="forward-119")
        self._tg.create_task(self._scan_loop(), name="forward-119-scan")
        await self.scan()  # what was verified before a restart and has no receipt goes now
        self.ready.set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closing = True
        self.stream.unsubscribe(self.on_events)
        self._wake.set()
        try:
            if self._tg is not None:
                await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            if self._own_http and self._http is not None:
                await self._http.aclose()
            self._pool.shutdown(wait=False)

    async def _db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call on the forwarder's own threads (never queued behind the rest of the process's store work)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    @property
    def closing(self) -> bool:
        return self._closing

    # -- the ways in ------------------------------------------------------------------------------------------
    async def on_events(self, events: Sequence[Event]) -> None:
        """The stream's subscriber: a verification (or a verify window that ran out) starts the alarm's forward."""
        for ev in events:
            if isinstance(ev, LadderStep) and ev.kind in VERIFIED_KINDS:
                self._start(_Job(ev.alarm_id, ev.kind, ev.detail, ev.at_ms, ev.drill))

    def _start(self, job: _Job) -> None:
        if self._closing or self._tg is None or job.alarm_id in self._done:
            return
        if len(self._done) > 100_000:  # bounded: an alarm forgotten here is found settled in the store on its next mention
            self._done.clear()
        running = self._inflight.get(job.alarm_id)
        if running is not None and not running.done():
            return
        task = self._tg.create_task(self._forward(job), name=f"forward-119-{job.alarm_id}")
        self._inflight[job.alarm_id] = task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[RoundResult]) -> None:
        for alarm_id, t in list(self._inflight.items()):
            if t is task:
                del self._inflight[alarm_id]

    async def settle(self) -> None:
        """Wait until every round started here has ended (tests and the benchmark)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def scan(self) -> int:
        """Read the store: verifications not opened yet (another process, before a restart) and rounds due now."""
        assert self.store is not None
        now = self.clock.now_ms()
        since = self._watermark_ms - _SCAN_OVERLAP_MS
        rows = await self._db(self._verifications, since)
        fresh = [r for r in rows if r.alarm_id not in self._done and r.alarm_id not in self._inflight]
        known = await self._db(self.store.known, [r.alarm_id for r in fresh])
        started = 0
        for r in fresh:
            self._watermark_ms = max(self._watermark_ms, r.at_ms)
            if r.alarm_id not in known:
                self._start(r)
                started += 1
        for alarm_id in await self._db(self.store.due, now):
            if alarm_id not in self._inflight:
                self._start(_Job(alarm_id, "", "", now, False))
                started += 1
        return started

    def _verifications(self, since_ms: int) -> list[_Job]:
        log_ = escalation_log
        q = (sa.select(log_.c.alarm_id, log_.c.kind, log_.c.detail, log_.c.at_ms, log_.c.drill)
             .where(log_.c.kind.in_(VERIFIED_KINDS), log_.c.rung.is_(None), log_.c.at_ms >= since_ms).order_by(log_.c.at_ms))
        with self.engine.connect() as conn:
            return [_Job(a, k, d or "", t, bool(dr), from_store=True) for a, k, d, t, dr in conn.execute(q)]

    async def _scan_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(self.settings.scan_every_s):
                    await self._wake.wait()
            self._wake.clear()
            if self.closing:
                return
            try:
                await self.scan()
            except Exception:  # a database hiccup must not end the hand-off: log, wait, read again
                log.exception("119 hand-off: reading the store failed")

    # -- one alarm ----------------------------------------------------------------------------------------------
    async def _forward(self, job: _Job) -> RoundResult:
        try:
            return await self._round(job)
        except Exception:
            log.exception("119 hand-off of %s failed unexpectedly; the next scan tries again", job.alarm_id)
            return RoundResult("failed", reason="internal error")

    def _lease_ms(self) -> int:
        return round(max(self.settings.budget_s * 2, 5.0) * 1000)  # a round lasts at most the budget plus one attempt

    async def _fresh(self, job: _Job, t0: float) -> RoundResult:
        """The first round of a verification this process heard of: read the alarm, build the body, and send it while
        the forward (already claimed by this worker) is written, so no write stands before the POST. A crash before the
        write is seen by the next scan (a verification with no forward) and sent again with the same id."""
        assert self.store is not None
        alarm = await self._db(self.alarms.get, job.alarm_id)
        if alarm is None or not is_fire(alarm.alarm_type, self.settings.alarm_types):
            self._done.add(job.alarm_id)
            return RoundResult("skipped")
        if job.from_store and not alarm.is_open:
            # found after the fact (a restart, the hand-off just enabled) and already closed: the fire is over, 119 is not told now
            log.warning("119 hand-off: %s was verified at %d but is closed; not forwarded after the fact", alarm.id, job.at_ms)
            self._done.add(job.alarm_id)
            return RoundResult("skipped")
        grid_id, community_id = self.alarms.place_of(alarm.place)
        verifier = _verifier(job.how, job.detail)
        body = forward_body(alarm, self.sites, self.settings, self.zone, how=job.how, verifier=verifier, verified_ms=job.at_ms,
                            grid_id=grid_id, community_id=community_id)
        now = self.clock.now_ms()
        drill_sent = alarm.drill and self.settings.drills and bool(self.settings.drill_url)
        status, reason = Status.SENDING, ""
        if alarm.drill and not drill_sent:
            status = Status.NOT_FORWARDED
            reason = "not forwarded: drill" if not self.settings.drills else "not forwarded: drill (no forward.drill_url)"
        rec = ForwardRecord(
            forward_id=forward_id_of(alarm.id), alarm_id=alarm.id, alarm_type=alarm.alarm_type, how=job.how, verifier=verifier, verified_ms=job.at_ms,
            drill=alarm.drill, status=status, channel=None, receipt=None, reason=reason, rounds=1 if status == Status.SENDING else 0,
            payload=json.dumps(body, ensure_ascii=False), building_id=alarm.place.building, grid_id=grid_id, community_id=community_id,
            created_ms=now, updated_ms=now, next_try_ms=None, receipted_ms=None,
        )
        if status == Status.NOT_FORWARDED:
            if await self._db(self.store.open, rec):
                log.info("119 hand-off: %s is a drill: %s", alarm.id, reason)
                await self._bulletin(rec, status=Status.NOT_FORWARDED, reason=reason, at_ms=now)
            self._done.add(alarm.id)
            return RoundResult("skipped")
        opened, (tried, got) = await asyncio.gather(
            self._db(self.store.open, rec, worker=self.worker_id, lease_until_ms=now + self._lease_ms()), self._send(rec, t0))
        if not opened:  # another process opened it first: it records its own round (ours went with the same id)
            log.info("119 hand-off of %s: another process holds it; this round's %d attempt(s) went with the same id", alarm.id, len(tried))
            return RoundResult("skipped")
        return await self._finish(rec, tried, got, t0)

    async def _round(self, job: _Job) -> RoundResult:
        assert self.store is not None
        t0 = time.monotonic()
        rec = await self._db(self.store.get, job.alarm_id)
        if rec is None:
            return await self._fresh(job, t0) if job.how else RoundResult("skipped")
        if rec.status in (Status.RECEIPTED, Status.NOT_FORWARDED):
            self._done.add(rec.alarm_id)
            return RoundResult("skipped")
        claimed = await self._db(self.store.claim, rec.alarm_id, self.worker_id, self.clock.now_ms(), self._lease_ms())
        if claimed is None:
            return RoundResult("skipped")
        tried, got = await self._send(claimed, t0)
        return await self._finish(claimed, tried, got, t0)

    async def _send(self, rec: ForwardRecord, t0: float) -> tuple[list[Attempt], tuple[str, str] | None]:
        """One round: each channel in turn, again and again, until a receipt or the budget (counted from t0) is spent."""
        s = self.settings
        channels = [("drill", s.drill_url)] if rec.drill else [("primary", s.primary_url), ("fallback", s.fallback_url)]
        urls = [(name, url) for name, url in channels if url]
        body = rec.payload.encode()
        deadline = t0 + s.budget_s
        tried: list[Attempt] = []
        first_pass = True
        while urls:
            for name, url in urls:
                left = deadline - time.monotonic()
                if left <= 0.01 and not first_pass:
                    break
                # every channel is tried at least once a round, even when reading the store ate the budget (a loaded machine)
                timeout = min(s.attempt_timeout_s, left) if left > s.connect_timeout_s else s.attempt_timeout_s if first_pass else left
                started_ms = self.clock.now_ms()
                a0 = time.monotonic()
                try:
                    receipt, code = await self._post(url, body, rec.forward_id, timeout)
                except ChannelFailed as f:
                    tried.append(Attempt(rec.forward_id, rec.alarm_id, rec.rounds, len(tried) + 1, name, started_ms,
                                         round((time.monotonic() - a0) * 1000), f.outcome, f.status_code, None, f.detail[:300]))
                    log.warning("119 hand-off of %s via %s: %s", rec.alarm_id, name, f.detail)
                    continue
                tried.append(Attempt(rec.forward_id, rec.alarm_id, rec.rounds, len(tried) + 1, name, started_ms,
                                     round((time.monotonic() - a0) * 1000), "receipt", code, receipt, ""))
                return tried, (name, receipt)
            first_pass = False
            if deadline - time.monotonic() <= _PAUSE_BETWEEN_PASSES_S:
                break
            await asyncio.sleep(_PAUSE_BETWEEN_PASSES_S)
        return tried, None

    async def _finish(self, rec: ForwardRecord, tried: list[Attempt], got: tuple[str, str] | None, t0: float) -> RoundResult:
        assert self.store is not None
        s = self.settings
        now = self.clock.now_ms()
        if got is not None:
            await self._db(self.store.finish, rec.alarm_id, self.worker_id, tried, now, receipt=got)
            self._done.add(rec.alarm_id)
            log.info("119 hand-off of %s: receipt %s via %s, %.0f ms after the round began", rec.alarm_id, got[1], got[0], (time.monotonic() - t0) * 1000)
            await self._bulletin(rec, status=Status.RECEIPTED, channel=got[0], receipt=got[1], at_ms=now)
            return RoundResult(Status.RECEIPTED, got[0], got[1])
        reason = "; ".join(f"{a.channel}: {a.detail}" for a in tried[-2:]) or "no channel configured"
        next_try = now + round(s.retry_every_s * 1000)
        await self._db(self.store.finish, rec.alarm_id, self.worker_id, tried, now, receipt=None, reason=reason, next_try_ms=next_try)
        log.error("119 hand-off of %s failed on every channel (round %d): %s; next round in %.0f s", rec.alarm_id, rec.rounds, reason, s.retry_every_s)
        await self._bulletin(rec, status=Status.FAILED, reason=why(tried, "zh"), at_ms=now, next_try_ms=next_try)
        return RoundResult(Status.FAILED, reason=reason)

    async def _post(self, url: str, body: bytes, forward_id: str, timeout_s: float) -> tuple[str, int]:
        assert self._http is not None
        s = self.settings
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": forward_id}
        if s.token is not None:
            headers["Authorization"] = f"Bearer {s.token.get_secret_value()}"
        if s.hmac_secret is not None:
            ts = str(self.clock.now_ms())
            mac = hmac.new(s.hmac_secret.get_secret_value().encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers |= {"X-Shouwang-Timestamp": ts, "X-Shouwang-Signature": f"sha256={mac}"}
        timeout = httpx.Timeout(timeout_s, connect=min(s.connect_timeout_s, timeout_s))
        try:
            async with asyncio.timeout(timeout_s):  # the whole answer, not only each read, within what is left of the budget
                resp = await self._http.post(url, content=body, headers=headers, timeout=timeout)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ChannelFailed("timeout", f"no answer within {timeout_s:.2f} s") from exc
        except httpx.HTTPError as exc:
            raise ChannelFailed("unreachable", f"{exc.__class__.__name__}: {exc}"[:300]) from exc
        if not resp.is_success:
            raise ChannelFailed("http_error", f"HTTP {resp.status_code}: {resp.text[:200]}", resp.status_code)
        try:
            data = resp.json()
        except ValueError:
            data = None
        receipt = None
        if isinstance(data, dict):
            receipt = next((str(data[k]) for k in ("receipt", "receipt_no", "id") if data.get(k) not in (None, "")), None)
        if receipt is None:
            raise ChannelFailed("no_receipt", f"HTTP {resp.status_code} without a receipt number", resp.status_code)
        return receipt, resp.status_code

    async def _bulletin(self, rec: ForwardRecord, *, status: str, at_ms: int, channel: str | None = None, receipt: str | None = None,
                        reason: str = "", next_try_ms: int | None = None) -> None:
        data = forward_view(rec, status=status, at_ms=at_ms, channel=channel, receipt=receipt, reason=reason, next_try_ms=next_try_ms, zone=self.zone)
        await self.stream.publish([Bulletin("forward", data, rec.building_id, rec.grid_id, rec.community_id)])


def forward_view(rec: ForwardRecord, *, status: str, at_ms: int, channel: str | None, receipt: str | None, reason: str, next_try_ms: int | None,
                 zone: ZoneInfo) -> dict[str, Any]:
    """What the console shows of a forward (the feed's `forward` event): `text` in Chinese, times in the site's zone."""
    when = _clock(at_ms, zone)
    if status == Status.RECEIPTED:
        text = f"已转警119（{when}，回执号 {receipt}）"
    elif status == Status.FAILED:
        retry = f"，{_clock(next_try_ms, zone)} 重试" if next_try_ms is not None else "，重试中"
        text = f"转警119失败（{when}，{reason}{retry}）"
    else:
        text = f"未转警119：演练（{when}）"
    return {"type": "forward", "alarm_id": rec.alarm_id, "forward_id": rec.forward_id, "status": status, "channel": channel, "receipt": receipt,
            "reason": reason, "at_ms": at_ms, "next_try_ms": next_try_ms, "drill": rec.drill, "critical": status == Status.FAILED, "text": text}
