"""Maintenance windows (维护窗口) as records: stored, audited, listed, extended, ended early, re-derived at a restart.

How this works: a window is a row of `maintenance_windows` in the alarm database (migration
backend/alarms/migrations/versions/0002_maintenance_windows.py) with who opened it, why, its scope (a device,
a building, or one device kind within a building), its start and end, and how it ended; every create, extend,
end, expiry and end notice appends a row to `maintenance_audit`. The alerting core knows only per-subject
windows (alerting.book.MaintenanceWindow, keyed `device:<id>`, `building:<id>`, `gateway:<id>`): after every
change `_sync` works out, from the windows in force, which subjects are held and until when, and puts or ends
the core's windows to match, under the alarm service's lock and in the same transaction as the window's row
(`AlarmService.in_core`). Ending a subject's window re-evaluates its silenced alarms in the core (a smoke
detector still in alarm goes back to raised, live, and its ladder starts through the service's listeners;
one whose device cleared during the window awaits verification).

Nothing lives only in memory: `start()` (called by the service once its core is built) ends every window that
ran out while the backend was down (re-evaluating its alarms), re-puts the ones still in force, and re-derives
which silenced life-safety devices cleared during their window from the alarms' audit log. `tick()` (the
service's ticker) starts windows whose start has come, sends the duty room a notice `end_notice_minutes`
before a window ends and another when it ends, and ends windows on time.

Life safety: smoke detectors and SOS buttons (`LIFE_SAFETY_KINDS`) are silenced only by a window that carries
an explicit override with a reason, at most `life_safety_max_minutes` long; a building window without the
override leaves them live (the core refuses to silence a life-safety alarm under such a window, too).

Exceptions (messages in Chinese and English, for a person to act on):

    MaintenanceError
     ├── UnknownPlace     no such device, building or window (the API answers 404)
     └── WindowRefused    the request breaks a rule (end before start, too long, life safety without override...)
          └── WindowOver  the window has already ended (the API answers 409)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from alerting.book import IN_WINDOW_AGAIN, IN_WINDOW_CLEARED, AlarmBook, MaintenanceWindow
from alerting.lifecycle import AlarmState, Move
from alerting.model import AlarmKey, Persist
from backend.errors import BackendError
from backend.sites.model import SiteDirectory
from backend.stream import Bulletin
from broker.kinds import DeviceKind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from alerting.engine import Engine
    from alerting.model import Action
    from backend.alarms.store import AlarmStore
    from backend.stream import CentreStream
    from broker.clock import Clock


class AlarmCoreAccess(Protocol):
    """What the windows need of the alarm service that owns them (backend.alarms.service.AlarmService is it): its
    store, clock, core and stream, and one decision with its commit under the service's lock."""

    store: AlarmStore
    clock: Clock
    stream: CentreStream

    @property
    def engine(self) -> Engine: ...

    async def in_core(self, decide: Callable[[AlarmBook, int], Sequence[Action]], write: Callable[[sa.Connection], None]) -> list[Action]: ...

__all__ = [
    "LIFE_SAFETY_KINDS",
    "MaintenanceError",
    "MaintenanceSettings",
    "MaintenanceWindows",
    "Scope",
    "UnknownPlace",
    "WindowAudit",
    "WindowOver",
    "WindowRecord",
    "WindowRefused",
    "maintenance_audit",
    "maintenance_windows",
]

log = logging.getLogger(__name__)

LIFE_SAFETY_KINDS: Final = frozenset({DeviceKind.SMOKE, DeviceKind.SOS})
KIND_ZH: Final = {"smoke": "烟感", "sos": "一键呼救", "electrical": "电气", "camera": "摄像头", "water_leak": "水浸", "other": "其他"}
MINUTE_MS = 60_000
PAST_START_SLACK_MS = 60_000  # a start "now" typed a few seconds ago is still now

metadata = sa.MetaData()
maintenance_windows = sa.Table(
    "maintenance_windows",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("scope", sa.String(20), nullable=False),  # device, building, kind
    sa.Column("building_id", sa.String(64), nullable=False),
    sa.Column("device_id", sa.String(64)),
    sa.Column("device_kind", sa.String(20)),
    sa.Column("grid_id", sa.String(64)),
    sa.Column("community_id", sa.String(64)),
    sa.Column("starts_ms", sa.BigInteger, nullable=False),
    sa.Column("ends_ms", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("life_safety_override", sa.Boolean, nullable=False),
    sa.Column("override_reason", sa.String(500)),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("end_notice_ms", sa.BigInteger),
    sa.Column("ended_ms", sa.BigInteger),
    sa.Column("ended_by", sa.String(64)),
    sa.Column("end_reason", sa.String(500)),
)
maintenance_audit = sa.Table(
    "maintenance_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("window_id", sa.String(40), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),  # create, extend, end, expire, end_notice
    sa.Column("starts_ms", sa.BigInteger, nullable=False),
    sa.Column("ends_ms", sa.BigInteger, nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
)
sa.Index("ix_maintenance_open", maintenance_windows.c.ended_ms)
sa.Index("ix_maintenance_audit_window", maintenance_audit.c.window_id)


class MaintenanceError(BackendError):
    def __init__(self, zh: str, en: str) -> None:
        self.zh, self.en = zh, en
        super().__init__(en)

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class UnknownPlace(MaintenanceError):
    pass


class WindowRefused(MaintenanceError):
    pass


class WindowOver(WindowRefused):
    """The window has already ended."""


class Scope(StrEnum):
    DEVICE = "device"
    BUILDING = "building"
    KIND = "kind"  # one device kind within a building


@dataclass(frozen=True, slots=True)
class MaintenanceSettings:
    max_minutes: int = 7 * 24 * 60  # the longest window (a renovation); longer work is a new window
    life_safety_max_minutes: int = 120  # a silenced smoke detector is a risk: short, and renewed by a person
    end_notice_minutes: float = 10.0  # the duty room is told this long before a window ends
    time_zone: str = "Asia/Shanghai"  # times shown to people

    @classmethod
    def of(cls, config: Any) -> MaintenanceSettings:
        """From the [maintenance] settings section (backend.settings.MaintenanceConfig)."""
        return cls(config.max_minutes, config.life_safety_max_minutes, config.end_notice_minutes, config.time_zone)


@dataclass(frozen=True, slots=True)
class WindowRecord:
    id: str
    scope: Scope
    building_id: str
    device_id: str | None
    device_kind: str | None
    grid_id: str | None
    community_id: str | None
    starts_ms: int
    ends_ms: int
    author: str
    reason: str
    life_safety_override: bool
    override_reason: str | None
    created_ms: int
    end_notice_ms: int | None = None
    ended_ms: int | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    def in_force(self, now_ms: int) -> bool:
        return self.ended_ms is None and self.starts_ms <= now_ms < self.ends_ms

    @property
    def row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class WindowAudit:
    window_id: str
    at_ms: int
    actor: str
    action: str
    starts_ms: int
    ends_ms: int
    note: str


def _record(row: Any) -> WindowRecord:
    m = dict(row._mapping)
    m["scope"] = Scope(m["scope"])
    m["life_safety_override"] = bool(m["life_safety_override"])
    return WindowRecord(**m)


class MaintenanceWindows:
    """The windows of one alarm service (its `maintenance` attribute)."""

    def __init__(self, service: AlarmCoreAccess, sites: SiteDirectory, settings: MaintenanceSettings | None = None) -> None:
        self.service = service
        self.sites = sites
        self.settings = settings or MaintenanceSettings()
        self.tz = ZoneInfo(self.settings.time_zone)
        self.windows: dict[str, WindowRecord] = {}  # not ended (in force, or starting later); the store is the truth
        self._applied: frozenset[str] = frozenset()  # ids of the windows in force at the last sync with the core
        self._changing = asyncio.Lock()  # one change at a time: each works from the windows the last one left

    @property
    def engine(self) -> sa.Engine:
        return self.service.store.engine

    # -- reading --------------------------------------------------------------------------------------------------------
    def records(self, *, include_ended: bool = False, limit: int | None = 200) -> list[WindowRecord]:
        t = maintenance_windows
        q = sa.select(t).order_by(t.c.ends_ms.desc()).limit(limit)
        if not include_ended:
            q = q.where(t.c.ended_ms.is_(None))
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(q)]

    def get(self, window_id: str) -> WindowRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(maintenance_windows).where(maintenance_windows.c.id == window_id)).first()
        return _record(row) if row is not None else None

    def audit(self, window_id: str) -> list[WindowAudit]:
        t = maintenance_audit
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.window_id == window_id).order_by(t.c.id))
            return [WindowAudit(r.window_id, r.at_ms, r.actor, r.action, r.starts_ms, r.ends_ms, r.note) for r in rows]

    def local(self, ms: int) -> str:
        """A time as people read it: the site's time zone, to the minute."""
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def subjects(self, w: WindowRecord) -> list[str]:
        """The core subjects a window holds (life-safety devices only under the override)."""
        if w.scope is Scope.DEVICE:
            return [f"device:{w.device_id}"]
        devices = self.sites.devices_by_building.get(w.building_id, ())
        out = [f"device:{d.id}" for d in devices
               if (w.scope is Scope.BUILDING or d.kind.value == w.device_kind)
               and (w.life_safety_override or d.kind not in LIFE_SAFETY_KINDS)]
        # A gateway, or the building's link, going quiet leaves every detector behind it unheard: while life-safety
        # detectors stay live (no override), their gateway's and building's alarms (offline, devices unknown) stay live too.
        if w.scope is Scope.BUILDING and (w.life_safety_override or not any(d.kind in LIFE_SAFETY_KINDS for d in devices)):
            out.append(f"building:{w.building_id}")
            out += [f"gateway:{g.id}" for g in self.sites.gateways.values() if g.building == w.building_id]
        return out

    def left_live(self, w: WindowRecord) -> int:
        """Life-safety devices in the window's building scope that it does not silence."""
        if w.life_safety_override or w.scope is Scope.DEVICE:
            return 0
        return sum(1 for d in self.sites.devices_by_building.get(w.building_id, ())
                   if d.kind in LIFE_SAFETY_KINDS and (w.scope is Scope.BUILDING or d.kind.value == w.device_kind))

    # -- people's acts ----------------------------------------------------------------------------------------------------
    async def create(self, *, building_id: str, scope: Scope | str, author: str, reason: str, ends_ms: int,
                     starts_ms: int | None = None, device_id: str | None = None, device_kind: str | None = None,
                     override_reason: str | None = None) -> WindowRecord:
        now = self.service.clock.now_ms()
        scope = Scope(scope)
        building = self.sites.buildings.get(building_id)
        if building is None:
            raise UnknownPlace(f"没有编号为 {building_id} 的楼栋，请核对楼栋编号", f"no building {building_id!r}; check the building id")
        life_safety = False
        if scope is Scope.DEVICE:
            d = self.sites.devices.get(device_id or "")
            if d is None or d.building != building_id:
                raise UnknownPlace(f"楼栋 {building_id} 中没有编号为 {device_id} 的设备，请核对设备标签上的编号",
                                   f"no device {device_id!r} in building {building_id}; check the id on the device's label")
            life_safety = d.kind in LIFE_SAFETY_KINDS
            device_kind = None
        elif scope is Scope.KIND:
            kinds = {k.value for k in DeviceKind}
            if device_kind not in kinds:
                raise WindowRefused(f"设备类型 {device_kind} 无效，可选：{', '.join(sorted(kinds))}",
                                    f"unknown device kind {device_kind!r}; one of {', '.join(sorted(kinds))}")
            life_safety = DeviceKind(device_kind) in LIFE_SAFETY_KINDS
            device_id = None
        else:
            device_id = device_kind = None
            life_safety = override_reason is not None
        starts = now if starts_ms is None else starts_ms
        if starts < now - PAST_START_SLACK_MS:
            raise WindowRefused(f"开始时间 {self.local(starts)} 已过去；不填开始时间即从现在开始",
                                f"the start {self.local(starts)} is in the past; leave it out to start now")
        if ends_ms <= starts:
            raise WindowRefused(f"结束时间 {self.local(ends_ms)} 早于或等于开始时间 {self.local(starts)}，请把结束时间设在开始之后",
                                f"the end {self.local(ends_ms)} is not after the start {self.local(starts)}; set an end after the start")
        if life_safety and not override_reason:
            what = KIND_ZH.get(device_kind or "", "") or ("该设备" if scope is Scope.DEVICE else "")
            raise WindowRefused(
                f"{what}是生命安全设备（烟感 / 一键呼救），静默它须填写“生命安全例外”及理由，且不超过 {self.settings.life_safety_max_minutes} 分钟",
                f"this is a life-safety device (smoke / SOS): silencing it needs the life_safety_override with a reason, "
                f"and at most {self.settings.life_safety_max_minutes} minutes")
        w = WindowRecord(
            id=f"MW{uuid.uuid4().hex[:12]}", scope=scope, building_id=building_id, device_id=device_id, device_kind=device_kind,
            grid_id=building.grid, community_id=self.sites.community_of_building(building_id), starts_ms=starts, ends_ms=ends_ms,
            author=author, reason=reason, life_safety_override=override_reason is not None, override_reason=override_reason, created_ms=now,
        )
        self._check_length(w, starts, ends_ms)
        note = reason + (f"；生命安全例外：{override_reason}" if override_reason else "")
        await self._change(w, self._audit_row(w, now, author, "create", note), insert=True)
        return w

    async def extend(self, window_id: str, ends_ms: int, actor: str, reason: str) -> WindowRecord:
        w = self._open_window(window_id)
        now = self.service.clock.now_ms()
        if ends_ms <= max(now, w.starts_ms):
            raise WindowRefused(f"新的结束时间 {self.local(ends_ms)} 不在开始和现在之后；要提前结束请用“提前结束”",
                                f"the new end {self.local(ends_ms)} is not after the start and now; to stop it, end it early")
        self._check_length(w, w.starts_ms, ends_ms)
        new = dataclasses.replace(w, ends_ms=ends_ms, end_notice_ms=None)
        await self._change(new, self._audit_row(new, now, actor, "extend", f"{self.local(w.ends_ms)} → {self.local(ends_ms)}：{reason}"))
        return new

    async def end(self, window_id: str, actor: str, reason: str) -> WindowRecord:
        w = self._open_window(window_id)
        now = self.service.clock.now_ms()
        new = dataclasses.replace(w, ended_ms=now, ended_by=actor, end_reason=reason)
        await self._change(new, self._audit_row(new, now, actor, "end", reason))
        await self._notify(new, "ended", self.service.clock.now_ms())
        return new

    def _open_window(self, window_id: str) -> WindowRecord:
        w = self.windows.get(window_id)
        if w is None:
            stored = self.get(window_id)
            if stored is None:
                raise UnknownPlace(f"没有编号为 {window_id} 的维护窗口", f"no maintenance window {window_id!r}")
            raise WindowOver(f"维护窗口 {window_id} 已于 {self.local(stored.ended_ms or stored.ends_ms)} 结束；需要时请新建一个",
                                f"maintenance window {window_id} already ended at {self.local(stored.ended_ms or stored.ends_ms)}; open a new one")
        return w

    def _check_length(self, w: WindowRecord, starts_ms: int, ends_ms: int) -> None:
        minutes = (ends_ms - starts_ms) / MINUTE_MS
        if w.life_safety_override and minutes > self.settings.life_safety_max_minutes:
            raise WindowRefused(
                f"静默生命安全设备最长 {self.settings.life_safety_max_minutes} 分钟（本次 {minutes:.0f} 分钟）；到时仍需维护请届时再延长",
                f"a window silencing life-safety devices lasts at most {self.settings.life_safety_max_minutes} minutes (this one {minutes:.0f}); "
                f"extend it later if the work needs more")
        if minutes > self.settings.max_minutes:
            raise WindowRefused(f"维护窗口最长 {self.settings.max_minutes} 分钟（本次 {minutes:.0f} 分钟）；更长的工作请分段开窗口",
                                f"a maintenance window lasts at most {self.settings.max_minutes} minutes (this one {minutes:.0f}); split longer work")

    # -- time -------------------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Called by the service once its core is loaded: end what ran out while down, re-put what is in force."""
        now = self.service.clock.now_ms()
        self.windows = {w.id: w for w in await asyncio.to_thread(lambda: self.records(limit=None))}
        self.service.engine.book.cleared_in_window |= await asyncio.to_thread(self._cleared_in_window)
        ended = await self._expire(now, "后台停机期间到期", "{end} 到期（当时后台停机），启动时结束", force_sync=True)
        log.info("maintenance: %d windows in force or pending, %d ended while down", len(self.windows), len(ended))

    async def tick(self) -> None:
        now = self.service.clock.now_ms()
        lead_ms = round(self.settings.end_notice_minutes * MINUTE_MS)
        for w in [w for w in self.windows.values() if w.end_notice_ms is None and w.starts_ms <= now < w.ends_ms <= now + lead_ms]:
            new = dataclasses.replace(w, end_notice_ms=now)
            await self._change(new, self._audit_row(new, now, "system", "end_notice", f"将于 {self.local(w.ends_ms)} 结束，已提醒值班室"), sync=False)
            await self._notify(new, "ending_soon", now)
        starting = {w.id for w in self.windows.values() if w.in_force(now)} - self._applied
        await self._expire(now, "到期", "{end} 到期结束", force_sync=bool(starting))

    async def _expire(self, now: int, reason: str, note: str, *, force_sync: bool) -> list[WindowRecord]:
        """End every window whose end has come, re-evaluating what it held (also syncs when `force_sync`)."""
        ended = [dataclasses.replace(w, ended_ms=now, ended_by="system", end_reason=reason) for w in self.windows.values() if w.ends_ms <= now]
        if not ended and not force_sync:
            return []
        rows = [self._audit_row(w, now, "system", "expire", note.format(end=self.local(w.ends_ms))) for w in ended]
        await self._commit_sync(ended, rows)
        for w in ended:
            await self._notify(w, "ended", now)
        return ended

    # -- the core and the store together ------------------------------------------------------------------------------------
    async def _change(self, w: WindowRecord, audit_row: dict[str, Any], *, insert: bool = False, sync: bool = True) -> None:
        if not sync:
            async with self._changing:
                await asyncio.to_thread(self._write, [w], [audit_row], insert)
                self.windows[w.id] = w
            return
        await self._commit_sync([w], [audit_row], insert=insert)

    async def _commit_sync(self, changed: Sequence[WindowRecord], audit_rows: Sequence[dict[str, Any]], *, insert: bool = False) -> None:
        """Store `changed` (and its audit rows) and bring the core's windows in line, in one transaction; the
        subjects of windows that end are released (re-evaluated) unless another window still holds them."""
        async with self._changing:
            windows = dict(self.windows)
            for w in changed:
                if not insert and w.id not in windows:  # ended meanwhile (two people ending it at once)
                    raise WindowOver(f"维护窗口 {w.id} 刚刚已结束", f"maintenance window {w.id} has just ended")
                if w.ended_ms is None:
                    windows[w.id] = w
                else:
                    windows.pop(w.id, None)
            ended = {s for w in changed if w.ended_ms is not None for s in self.subjects(w)}

            def decide(book: AlarmBook, now_ms: int) -> list[Persist]:
                return self._sync(book, windows, now_ms, ended)

            def write(conn: sa.Connection) -> None:
                self._write_in(conn, changed, audit_rows, insert)

            await self.service.in_core(decide, write)
            self.windows = windows

    def _sync(self, book: AlarmBook, windows: dict[str, WindowRecord], now_ms: int, ended_subjects: set[str]) -> list[Persist]:
        """Put or end the core's per-subject windows to match the windows in force (longest, override first)."""
        want: dict[str, MaintenanceWindow] = {}
        in_force = [w for w in windows.values() if w.in_force(now_ms)]
        self._applied = frozenset(w.id for w in in_force)
        for w in in_force:
            for subject in self.subjects(w):
                cand = MaintenanceWindow(subject, w.ends_ms, w.author, f"{w.reason} [{w.id}]", w.life_safety_override)
                cur = want.get(subject)
                if cur is None or (cand.life_safety, cand.until_ms) > (cur.life_safety, cur.until_ms):
                    want[subject] = cand
        out: list[Persist] = []
        for subject in sorted((set(book.windows) | ended_subjects) - set(want)):
            out += book.end_window(subject, now_ms)
        for subject, mw in want.items():
            if book.windows.get(subject) != mw:
                out += book.add_window(mw, now_ms)
        return out

    def _write(self, changed: Sequence[WindowRecord], audit_rows: Sequence[dict[str, Any]], insert: bool) -> None:
        with self.engine.begin() as conn:
            self._write_in(conn, changed, audit_rows, insert)

    @staticmethod
    def _write_in(conn: sa.Connection, changed: Sequence[WindowRecord], audit_rows: Sequence[dict[str, Any]], insert: bool) -> None:
        t = maintenance_windows
        for w in changed:
            if insert:
                conn.execute(sa.insert(t), [w.row])
            else:
                conn.execute(sa.update(t).where(t.c.id == w.id).values(**{k: v for k, v in w.row.items() if k != "id"}))
        if audit_rows:
            conn.execute(sa.insert(maintenance_audit), list(audit_rows))

    @staticmethod
    def _audit_row(w: WindowRecord, at_ms: int, actor: str, action: str, note: str) -> dict[str, Any]:
        return {"window_id": w.id, "at_ms": at_ms, "actor": actor[:64], "action": action, "starts_ms": w.starts_ms, "ends_ms": w.ends_ms,
                "note": note[:500]}

    def _cleared_in_window(self) -> set[AlarmKey]:
        """Silenced life-safety alarms whose device cleared during the window (the last such annotation since the silence)."""
        out: set[AlarmKey] = set()
        for a in self.service.store.open_alarms():
            if a.state is not AlarmState.SILENCED or not a.life_safety:
                continue
            cleared = False
            for e in sorted(self.service.store.audit(a.id), key=lambda e: e.seq):
                if e.move in (Move.SILENCE.value, IN_WINDOW_AGAIN):
                    cleared = False
                elif e.move == IN_WINDOW_CLEARED:
                    cleared = True
            if cleared:
                out.add(a.key)
        return out

    # -- the duty room ------------------------------------------------------------------------------------------------------
    def view(self, w: WindowRecord, now_ms: int | None = None) -> dict[str, Any]:
        now = self.service.clock.now_ms() if now_ms is None else now_ms
        lead_ms = round(self.settings.end_notice_minutes * MINUTE_MS)
        state = "ended" if w.ended_ms is not None else "pending" if now < w.starts_ms else "in_force"
        return {
            **w.row, "scope": w.scope.value, "state": state, "ending_soon": state == "in_force" and w.ends_ms - now <= lead_ms,
            "starts_local": self.local(w.starts_ms), "ends_local": self.local(w.ends_ms),
            "ended_local": self.local(w.ended_ms) if w.ended_ms is not None else None, "time_zone": self.settings.time_zone,
            "what": self.describe(w), "life_safety_devices_left_live": self.left_live(w),
        }

    def describe(self, w: WindowRecord) -> str:
        b = self.sites.buildings.get(w.building_id)
        where = b.name if b else w.building_id
        if w.scope is Scope.DEVICE:
            d = self.sites.devices.get(w.device_id or "")
            return f"{where} · {KIND_ZH.get(d.kind.value, '') if d else ''}设备 {w.device_id}"
        if w.scope is Scope.KIND:
            return f"{where} · 全部{KIND_ZH.get(w.device_kind or '', w.device_kind or '')}"
        return f"{where} · 整栋"

    async def _notify(self, w: WindowRecord, event: str, now_ms: int) -> None:
        if event == "ending_soon":
            zh = f"维护窗口即将结束（{self.local(w.ends_ms)}）：{self.describe(w)}。到时将重新检查范围内设备，仍在报警的将立即告警并通知。"
            en = f"Maintenance window ends at {self.local(w.ends_ms)}: {self.describe(w)}. Devices still in alarm then will alarm and page."
        else:
            zh = f"维护窗口已结束：{self.describe(w)}。范围内设备已重新检查，仍在报警的已告警。"
            en = f"Maintenance window ended: {self.describe(w)}. Devices in it were re-checked; those still in alarm are live again."
        notice = {"type": "maintenance", "event": event, "window_id": w.id, "text": zh, "text_en": en, "at_ms": now_ms,
                  "building_id": w.building_id, "grid_id": w.grid_id, "community_id": w.community_id,
                  "life_safety_override": w.life_safety_override}
        await self.service.stream.publish([Bulletin("maintenance", notice, w.building_id, w.grid_id, w.community_id)])
