"""Hazard work orders (隐患整改) as records: created, moved, photographed, escalated when overdue; all audited.

How this works: the rules are alerting.workorders (one transition table, the due time by severity, overdue and
escalation decided from (order, now), the supervisor of the assignee); this module stores and carries them out.
An order is a row of `work_orders` in the alarm database (its own migrations, version table
`alembic_version_workorders`); every create, move, photo and escalation appends a row to `work_order_audit`
in the SAME transaction as the order's change, and a move updates the row only if its `version` is the one
the move was decided on, so two people moving one order at once cannot both win (the second gets a 409).
Refusals (an illegal move, a missing reason, a due time out of range, a bad photo) raise before anything is
written; a photo's file is written first (photos.py) and removed again if its row cannot be committed.

Overdue: nothing is kept in memory. `check_overdue()` (run by `OverdueWatch` every `check_every_s` of the
injected clock, and once when it starts, so a restart catches up at once) escalates each active order whose
due time has passed and which has not been escalated for that due time (`escalated_for_due_ms`): it asks the
roster who sits in the supervisor's seat now, records the escalation on the order and in the audit, and hands
a notice to the duty room (the live feed). Doing it twice finds nothing to do.

Exceptions (Chinese and English sentences for a person to act on):

    WorkOrderServiceError
     ├── NoSuchOrder      no such order, photo or alarm (the API answers 404, like one outside the territory)
     ├── OrderRefused     the request breaks a rule: a missing reason, an unknown assignee, a due time out of range (422)
     ├── OrderConflict    the order is not in a state that allows this, or changed meanwhile (409)
     ├── PhotoRefused     too large (413), not a JPEG / PNG / WebP (415), or too many photos (422)
     └── PhotoStoreUnavailable  the photos folder cannot be written (also backend.errors.Unavailable: the API answers 503)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from alerting.directory import Seat
from alerting.ladder.targets import Roster, Where
from alerting.workorders import (
    MOVE_ZH,
    STATE_ZH,
    IllegalOrderMove,
    OrderMove,
    OrderMoveRefused,
    OrderState,
    check_move,
    due_ms,
    escalation_due,
    is_overdue,
    moves_from,
    supervisor_of,
)
from backend.alarms.store import AlarmStore, translated
from backend.errors import BackendError, Unavailable
from backend.sites.model import SiteDirectory
from backend.sites.roster import SiteRoster
from backend.store.migrations import upgrade
from backend.workorders.photos import PhotoFolder, sniff
from backend.workorders.schema import work_order_audit, work_order_photos, work_orders
from broker.clock import Clock

__all__ = ["NoSuchOrder", "OrderConflict", "OrderRefused", "OverdueWatch", "PhotoRefused", "PhotoStoreUnavailable", "WorkOrder", "WorkOrderService",
           "WorkOrderServiceError", "WorkOrderSettings", "migrate", "running_work_orders"]

log = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE: Final = "alembic_version_workorders"
DAY_MS: Final = 86_400_000
SEVERITY_ZH: Final = {"critical": "紧急", "major": "重要", "minor": "一般", "info": "提示"}
SEAT_ZH: Final = {Seat.GRID_WORKER: "网格员", Seat.DUTY_OFFICER: "社区值班员"}


def migrate(engine: sa.Engine) -> None:
    """Bring the work-order tables to the newest revision (idempotent; one process at a time on PostgreSQL)."""
    upgrade(engine, MIGRATIONS, VERSION_TABLE)


class WorkOrderServiceError(BackendError):
    def __init__(self, zh: str, en: str) -> None:
        self.zh, self.en = zh, en
        super().__init__(en)

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class NoSuchOrder(WorkOrderServiceError):
    pass


class OrderRefused(WorkOrderServiceError):
    pass


class OrderConflict(WorkOrderServiceError):
    pass


class PhotoStoreUnavailable(WorkOrderServiceError, Unavailable):
    """The photos folder cannot be written now (full disk, permissions): nothing was recorded."""


class PhotoRefused(WorkOrderServiceError):
    def __init__(self, zh: str, en: str, status: int) -> None:
        self.status = status
        super().__init__(zh, en)


@dataclass(frozen=True, slots=True)
class WorkOrderSettings:
    due_hours: dict[str, float] = dataclasses.field(default_factory=lambda: {"critical": 24.0, "major": 72.0, "minor": 168.0, "info": 168.0})
    default_due_hours: float = 72.0
    max_due_days: int = 90  # a due time further out is a typing mistake, not a plan
    check_every_s: float = 60.0
    photo_max_bytes: int = 10 * 1024 * 1024
    max_photos: int = 20
    require_photo_to_finish: bool = True
    time_zone: str = "Asia/Shanghai"

    @classmethod
    def of(cls, config: Any, time_zone: str) -> WorkOrderSettings:
        """From the [workorders] settings section (backend.settings.WorkOrderConfig) and the site's time zone."""
        return cls({"critical": config.due_hours_critical, "major": config.due_hours_major, "minor": config.due_hours_minor,
                    "info": config.due_hours_minor}, config.due_hours_minor, config.max_due_days, config.check_every_s,
                   config.photo_max_bytes, config.max_photos, config.require_photo_to_finish, time_zone)


@dataclass(frozen=True, slots=True)
class WorkOrder:
    id: str
    title: str
    description: str
    severity: str
    state: OrderState
    building_id: str | None
    grid_id: str | None
    community_id: str | None
    device_id: str | None
    alarm_id: str | None
    alarm_type: str | None
    drill: bool
    assignee_id: str | None
    assignee_name: str | None
    assignee_role: str | None
    created_by: str
    created_ms: int
    due_ms: int
    updated_ms: int
    version: int
    escalated_for_due_ms: int | None = None
    escalated_ms: int | None = None
    escalated_to: str | None = None

    @property
    def row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _order(row: Any) -> WorkOrder:
    m = dict(row._mapping)
    m["state"] = OrderState(m["state"])
    m["drill"] = bool(m["drill"])
    return WorkOrder(**m)


class WorkOrderService:
    """The work orders of one backend, on the alarm database's engine."""

    def __init__(self, engine: sa.Engine, sites: SiteDirectory | None, clock: Clock, photos_dir: Path,
                 settings: WorkOrderSettings | None = None, *, alarms: AlarmStore | None = None, roster: Roster | None = None) -> None:
        self.engine = engine
        self.sites = sites
        self.clock = clock
        self.settings = settings or WorkOrderSettings()
        self.tz = ZoneInfo(self.settings.time_zone)
        self.photos = PhotoFolder(photos_dir)
        self.alarms = alarms
        self.roster: Roster | None = roster if roster is not None else (SiteRoster(sites) if sites is not None else None)
        self.notice_sinks: list[Callable[[dict[str, Any]], None]] = []
        self._lock = asyncio.Lock()  # one change at a time in this process; the version column guards across processes
        with translated("cannot migrate the work-order store"):
            migrate(engine)

    # -- reading ----------------------------------------------------------------------------------------------------------
    def get(self, order_id: str) -> WorkOrder | None:
        with translated("could not read the work orders"), self.engine.connect() as conn:
            row = conn.execute(sa.select(work_orders).where(work_orders.c.id == order_id)).first()
        return _order(row) if row is not None else None

    def records(self, *, state: OrderState | None = None, community: str | None = None, overdue: bool | None = None,
                alarm_id: str | None = None, limit: int = 500) -> list[WorkOrder]:
        t = work_orders
        q = sa.select(t).order_by(t.c.created_ms.desc()).limit(limit)
        if state is not None:
            q = q.where(t.c.state == state.value)
        if community is not None:
            q = q.where(t.c.community_id == community)
        if alarm_id is not None:
            q = q.where(t.c.alarm_id == alarm_id)
        with translated("could not read the work orders"), self.engine.connect() as conn:
            rows = [_order(r) for r in conn.execute(q)]
        if overdue is not None:
            now = self.clock.now_ms()
            rows = [o for o in rows if is_overdue(o.state, o.due_ms, now) == overdue]
        return rows

    def audit(self, order_id: str) -> list[dict[str, Any]]:
        t = work_order_audit
        with translated("could not read the work orders"), self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t).where(t.c.order_id == order_id).order_by(t.c.id))]

    def photo_rows(self, order_id: str) -> list[dict[str, Any]]:
        t = work_order_photos
        with translated("could not read the work orders"), self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t).where(t.c.order_id == order_id).order_by(t.c.uploaded_ms, t.c.id))]

    def photo_file(self, order_id: str, photo_id: str) -> tuple[dict[str, Any], Path]:
        row = next((p for p in self.photo_rows(order_id) if p["id"] == photo_id), None)
        if row is None:
            raise NoSuchOrder(f"工单 {order_id} 没有编号为 {photo_id} 的照片", f"work order {order_id} has no photo {photo_id!r}")
        path = self.photos.path(row["file_name"])
        if not path.is_file():
            raise NoSuchOrder(f"照片 {photo_id} 的文件已不在数据目录中，请联系管理员", f"the file of photo {photo_id} is missing; tell the administrator")
        return row, path

    def local(self, ms: int) -> str:
        """A time as people read it: the site's time zone, to the minute."""
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    # -- people's acts ------------------------------------------------------------------------------------------------------
    async def create(self, actor: str, *, description: str, title: str | None = None, severity: str | None = None,
                     alarm_id: str | None = None, building_id: str | None = None, device_id: str | None = None,
                     assignee_id: str | None = None, due_at_ms: int | None = None, place_check: Callable[[str | None, str | None, str | None], bool]
                     | None = None) -> WorkOrder:
        """A new order from an alarm (its place, severity and title) or standalone on a building or device.
        `place_check(building, grid, community)` is the caller's territory: a place outside it is unknown."""
        now = self.clock.now_ms()
        alarm_type: str | None = None
        drill = False
        if alarm_id is not None:
            if self.alarms is None:
                raise NoSuchOrder(f"没有编号为 {alarm_id} 的告警", f"no alarm {alarm_id!r}")
            alarm = await asyncio.to_thread(self.alarms.get, alarm_id)
            if alarm is None:
                raise NoSuchOrder(f"您的辖区内没有编号为 {alarm_id} 的告警；请核对编号", f"no alarm {alarm_id!r} in your territory; check the id")
            building_id, device_id = alarm.place.building, alarm.place.device
            severity = severity or alarm.severity.value
            title = title or alarm.title
            alarm_type, drill = alarm.alarm_type, alarm.drill
        elif device_id is not None:
            d = self.sites.devices.get(device_id) if self.sites else None
            if d is None:
                raise NoSuchOrder(f"您的辖区内没有编号为 {device_id} 的设备；请核对设备标签上的编号", f"no device {device_id!r} in your territory")
            if building_id is not None and building_id != d.building:
                raise OrderRefused(f"设备 {device_id} 不在楼栋 {building_id}", f"device {device_id} is not in building {building_id}")
            building_id = d.building
        elif building_id is None or self.sites is None or building_id not in self.sites.buildings:
            raise NoSuchOrder(f"您的辖区内没有编号为 {building_id} 的楼栋；请核对编号（或从告警创建工单）",
                              f"no building {building_id!r} in your territory; check the id (or create the order from an alarm)")
        grid, community = self.sites.place_of_building(building_id) if self.sites else (None, None)
        if place_check is not None and not place_check(building_id, grid, community):  # outside: said exactly as for an unknown id
            if alarm_id is not None:
                raise NoSuchOrder(f"您的辖区内没有编号为 {alarm_id} 的告警；请核对编号", f"no alarm {alarm_id!r} in your territory; check the id")
            if device_id is not None:
                raise NoSuchOrder(f"您的辖区内没有编号为 {device_id} 的设备；请核对设备标签上的编号", f"no device {device_id!r} in your territory")
            raise NoSuchOrder(f"您的辖区内没有编号为 {building_id} 的楼栋；请核对编号（或从告警创建工单）",
                              f"no building {building_id!r} in your territory; check the id (or create the order from an alarm)")
        severity = severity or "minor"
        if severity not in SEVERITY_ZH:
            raise OrderRefused(f"等级 {severity} 无效，可选：{', '.join(SEVERITY_ZH)}", f"unknown severity {severity!r}; one of {', '.join(SEVERITY_ZH)}")
        due = self._due(due_at_ms, now) if due_at_ms is not None else due_ms(severity, now, self.settings.due_hours, self.settings.default_due_hours)
        if not title:
            b = self.sites.buildings.get(building_id or "") if self.sites else None
            title = f"{b.name if b else building_id} 隐患整改"
        order = WorkOrder(id=f"WO{uuid.uuid4().hex[:12]}", title=title[:200], description=description, severity=severity,
                          state=OrderState.OPEN, building_id=building_id, grid_id=grid, community_id=community, device_id=device_id,
                          alarm_id=alarm_id, alarm_type=alarm_type, drill=drill, assignee_id=None, assignee_name=None, assignee_role=None,
                          created_by=actor, created_ms=now, due_ms=due, updated_ms=now, version=1)
        rows = [self._audit_row(order, now, actor, "create", None, note=description)]
        if assignee_id is not None:
            assigned = self._assigned(order, assignee_id)
            check_move(order.state, OrderMove.ASSIGN, actor=actor, assignee=assignee_id)
            order = dataclasses.replace(assigned, state=OrderState.ASSIGNED)
            rows.append(self._audit_row(order, now, actor, OrderMove.ASSIGN.value, OrderState.OPEN, note=""))
        async with self._lock:
            if alarm_id is not None:
                live = [o for o in await asyncio.to_thread(self.records, alarm_id=alarm_id) if o.state not in (OrderState.CLOSED, OrderState.CANCELLED)]
                if live:
                    raise OrderConflict(f"该告警已有整改工单 {live[0].id}（{STATE_ZH[live[0].state]}），请在原工单上处理",
                                        f"this alarm already has work order {live[0].id} ({live[0].state.value}); work on that one")
            await asyncio.to_thread(self._write, order, rows, insert=True)
        return order

    async def move(self, order_id: str, move: OrderMove | str, actor: str, *, note: str = "", assignee_id: str | None = None,
                   due_at_ms: int | None = None) -> WorkOrder:
        try:
            m = OrderMove(move)
        except ValueError:
            raise OrderRefused(f"未知操作 {move}，可选：{', '.join(OrderMove)}", f"unknown move {move!r}; one of {', '.join(OrderMove)}") from None
        now = self.clock.now_ms()
        async with self._lock:
            order = await asyncio.to_thread(self.get, order_id)
            if order is None:
                raise NoSuchOrder(f"没有编号为 {order_id} 的工单", f"no work order {order_id!r}")
            photos = len(await asyncio.to_thread(self.photo_rows, order_id)) if m is OrderMove.FINISH else 0
            try:
                new_state = check_move(order.state, m, actor=actor, note=note, assignee=assignee_id, photos=photos,
                                       require_photo_to_finish=self.settings.require_photo_to_finish)
            except IllegalOrderMove as exc:
                raise OrderConflict(exc.zh, exc.en) from exc
            except OrderMoveRefused as exc:
                raise OrderRefused(exc.zh, exc.en) from exc
            new = order
            if assignee_id is not None and m in (OrderMove.ASSIGN, OrderMove.REASSIGN):
                new = self._assigned(order, assignee_id)
            elif assignee_id is not None:
                raise OrderRefused(f"只有派单或改派时可指定责任人（本次为“{MOVE_ZH[m]}”）", f"an assignee goes only with assign or reassign, not {m.value}")
            if due_at_ms is not None:
                if m not in (OrderMove.ASSIGN, OrderMove.REASSIGN, OrderMove.REJECT):
                    raise OrderRefused(f"只有派单、改派或退回整改时可改期限（本次为“{MOVE_ZH[m]}”）",
                                       f"a new due time goes only with assign, reassign or reject, not {m.value}")
                new = dataclasses.replace(new, due_ms=self._due(due_at_ms, now))
            new = dataclasses.replace(new, state=new_state, updated_ms=now, version=order.version + 1)
            audit = self._audit_row(new, now, actor, m.value, order.state, note=note)
            await asyncio.to_thread(self._write, new, [audit], expected_version=order.version)
        return new

    async def add_photo(self, order_id: str, actor: str, data: bytes, caption: str = "") -> dict[str, Any]:
        if len(data) > self.settings.photo_max_bytes:
            raise PhotoRefused(f"照片过大（{len(data) / 1048576:.1f} MB），上限 {self.settings.photo_max_bytes / 1048576:.0f} MB：请压缩后再传",
                               f"the photo is too large ({len(data)} bytes; at most {self.settings.photo_max_bytes}): shrink it", 413)
        kind = sniff(data[:16])
        if kind is None:
            raise PhotoRefused("只接受 JPEG、PNG 或 WebP 格式的照片（按文件内容判断，与文件名无关）",
                               "only JPEG, PNG or WebP photos are taken (judged by the file's bytes, not its name)", 415)
        now = self.clock.now_ms()
        async with self._lock:
            order = await asyncio.to_thread(self.get, order_id)
            if order is None:
                raise NoSuchOrder(f"没有编号为 {order_id} 的工单", f"no work order {order_id!r}")
            if order.state in (OrderState.CLOSED, OrderState.CANCELLED):
                raise OrderConflict(f"工单已{STATE_ZH[order.state][1:]}，不能再上传照片", f"the work order is {order.state.value}: no more photos")
            existing = await asyncio.to_thread(self.photo_rows, order_id)
            if len(existing) >= self.settings.max_photos:
                raise PhotoRefused(f"每张工单最多 {self.settings.max_photos} 张照片", f"at most {self.settings.max_photos} photos per work order", 422)
            try:
                stored = await asyncio.to_thread(self.photos.put, order_id, data, kind)
            except OSError as exc:
                log.warning("work orders: cannot store a photo under %s: %s", self.photos.root, exc)
                raise PhotoStoreUnavailable("照片存储暂时不可用，本次照片未保存：请稍后重试，并告知管理员检查数据目录",
                                            "the photo store is unavailable, so the photo was not saved: try again, and tell the administrator") from exc
            dup = next((p for p in existing if p["sha256"] == stored.sha256), None)
            if dup is not None:
                return dup
            row = {"id": f"PH{uuid.uuid4().hex[:12]}", "order_id": order_id, "sha256": stored.sha256, "content_type": kind,
                   "size_bytes": stored.size_bytes, "file_name": stored.file_name, "uploaded_by": actor[:64], "uploaded_ms": now,
                   "stage": order.state.value, "caption": caption[:200]}
            new = dataclasses.replace(order, updated_ms=now, version=order.version + 1)
            audit = self._audit_row(new, now, actor, "photo", order.state, note=f"{row['id']} sha256:{stored.sha256[:16]} {caption}".strip())
            try:
                await asyncio.to_thread(self._write, new, [audit], expected_version=order.version, photo=row)
            except BaseException:
                self.photos.discard(stored)
                raise
        return row

    # -- time ---------------------------------------------------------------------------------------------------------------
    async def check_overdue(self) -> list[WorkOrder]:
        """Escalate every overdue order not yet escalated for its due time; the orders escalated now."""
        now = self.clock.now_ms()
        out: list[WorkOrder] = []
        async with self._lock:
            t = work_orders
            q = sa.select(t).where(t.c.state.in_([s.value for s in (OrderState.OPEN, OrderState.ASSIGNED, OrderState.IN_PROGRESS)]),
                                   t.c.due_ms <= now)

            def due_orders() -> list[WorkOrder]:
                with translated("could not read the work orders"), self.engine.connect() as conn:
                    return [_order(r) for r in conn.execute(q)]

            for order in await asyncio.to_thread(due_orders):
                if not escalation_due(order.state, order.due_ms, order.escalated_for_due_ms, now):
                    continue
                to = self._supervisors(order, now)
                new = dataclasses.replace(order, escalated_for_due_ms=order.due_ms, escalated_ms=now, escalated_to=to[:500], version=order.version + 1)
                note = f"逾期未整改（期限 {self.local(order.due_ms)}），升级至 {to}"
                try:
                    await asyncio.to_thread(self._write, new, [self._audit_row(new, now, "system", "escalate", order.state, note=note)],
                                            expected_version=order.version)
                except OrderConflict:
                    continue  # changed meanwhile (a person moved it, or another backend escalated it): the next check decides again
                out.append(new)
        for order in out:
            self._notify(order, now)
        return out

    def _supervisors(self, order: WorkOrder, now: int) -> str:
        sup = supervisor_of(order.assignee_role, order.grid_id, order.community_id)
        if sup is None:
            return "值班控制台"
        who = SEAT_ZH.get(sup.seat, sup.seat.value)
        if self.roster is None:
            return f"{who}（{sup.scope}）"
        where = Where(community=order.community_id, grid=order.grid_id, building=order.building_id)
        fill = self.roster.fill(sup.seat, where, now)
        names = "、".join(c.name for c in fill.contacts)
        return f"{who}（{sup.scope}）{names}" if names else f"{who}（{sup.scope}）当前无人在岗，已提示值班控制台"

    def _notify(self, order: WorkOrder, now: int) -> None:
        notice = {"type": "workorder", "event": "overdue_escalated", "order_id": order.id, "at_ms": now, "title": order.title,
                  "text": f"整改工单逾期：{order.title}（期限 {self.local(order.due_ms)}），已升级至 {order.escalated_to}",
                  "text_en": f"Work order overdue: {order.title} (due {self.local(order.due_ms)}), escalated to {order.escalated_to}",
                  "building_id": order.building_id, "grid_id": order.grid_id, "community_id": order.community_id}
        for sink in self.notice_sinks:
            try:
                sink(notice)
            except Exception:
                log.exception("a work-order notice sink failed")

    # -- helpers --------------------------------------------------------------------------------------------------------------
    def _due(self, due_at_ms: int, now: int) -> int:
        if due_at_ms <= now:
            raise OrderRefused(f"整改期限 {self.local(due_at_ms)} 已过去，请设在现在之后", f"the due time {self.local(due_at_ms)} is in the past")
        if due_at_ms > now + self.settings.max_due_days * DAY_MS:
            raise OrderRefused(f"整改期限最长 {self.settings.max_due_days} 天（{self.local(due_at_ms)} 超出），请核对日期",
                               f"a due time is at most {self.settings.max_due_days} days ahead ({self.local(due_at_ms)} is not)")
        return due_at_ms

    def _assigned(self, order: WorkOrder, assignee_id: str) -> WorkOrder:
        r = self.sites.responders.get(assignee_id) if self.sites else None
        if r is None or (order.community_id is not None and r.community != order.community_id):
            raise OrderRefused(f"本社区没有编号为 {assignee_id} 的人员，请从名单中选择整改责任人",
                               f"no person {assignee_id!r} in this community; pick the assignee from the list")
        return dataclasses.replace(order, assignee_id=r.id, assignee_name=r.name, assignee_role=r.role.value)

    def assignees(self, community: str | None) -> list[dict[str, Any]]:
        """The people an order in `community` may be assigned to (the console's list)."""
        if self.sites is None:
            return []
        return [{"id": r.id, "name": r.name, "role": r.role.value, "grid": r.grid, "building": r.building}
                for r in sorted(self.sites.responders.values(), key=lambda r: r.id) if community is None or r.community == community]

    def _audit_row(self, o: WorkOrder, at_ms: int, actor: str, action: str, from_state: OrderState | None, *, note: str) -> dict[str, Any]:
        return {"order_id": o.id, "at_ms": at_ms, "actor": actor[:64], "action": action, "from_state": from_state.value if from_state else None,
                "to_state": o.state.value, "assignee_id": o.assignee_id, "due_ms": o.due_ms, "note": note[:1000]}

    def _write(self, order: WorkOrder, audit_rows: list[dict[str, Any]], *, insert: bool = False, expected_version: int | None = None,
               photo: dict[str, Any] | None = None) -> None:
        t = work_orders
        row = {k: (v.value if isinstance(v, OrderState) else v) for k, v in order.row.items()}
        with translated("could not write the work order"), self.engine.begin() as conn:
            if insert:
                conn.execute(sa.insert(t), [row])
            else:
                done = conn.execute(sa.update(t).where(t.c.id == order.id, t.c.version == expected_version)
                                    .values(**{k: v for k, v in row.items() if k != "id"}))
                if done.rowcount != 1:
                    raise OrderConflict(f"工单 {order.id} 刚被他人改动，请刷新后再操作", f"work order {order.id} has just been changed; reload and try again")
            if photo is not None:
                conn.execute(sa.insert(work_order_photos), [photo])
            conn.execute(sa.insert(work_order_audit), audit_rows)

    # -- what people read ---------------------------------------------------------------------------------------------------------
    def view(self, o: WorkOrder, now_ms: int | None = None) -> dict[str, Any]:
        now = self.clock.now_ms() if now_ms is None else now_ms
        b = self.sites.buildings.get(o.building_id or "") if self.sites else None
        return {
            **{k: (v.value if isinstance(v, OrderState) else v) for k, v in o.row.items()},
            "state_zh": STATE_ZH[o.state], "severity_zh": SEVERITY_ZH.get(o.severity, o.severity), "building_name": b.name if b else o.building_id,
            "overdue": is_overdue(o.state, o.due_ms, now), "moves": [{"move": m.value, "zh": MOVE_ZH[m]} for m in moves_from(o.state)],
            "created_local": self.local(o.created_ms), "due_local": self.local(o.due_ms), "updated_local": self.local(o.updated_ms),
            "escalated_local": self.local(o.escalated_ms) if o.escalated_ms is not None else None, "time_zone": self.settings.time_zone,
        }

    def audit_view(self, order_id: str) -> list[dict[str, Any]]:
        out = []
        for a in self.audit(order_id):
            action = a["action"]
            zh = {"create": "创建工单", "photo": "上传照片", "escalate": "逾期升级"}.get(action) or MOVE_ZH.get(OrderMove(action), action)
            out.append({**a, "action_zh": zh, "at_local": self.local(a["at_ms"]),
                        "to_state_zh": STATE_ZH[OrderState(a["to_state"])], "due_local": self.local(a["due_ms"])})
        return out

    def photo_view(self, p: dict[str, Any]) -> dict[str, Any]:
        stage = OrderState(p["stage"])
        return {k: v for k, v in p.items() if k != "file_name"} | {"uploaded_local": self.local(p["uploaded_ms"]), "stage_zh": STATE_ZH[stage],
                                                                   "url": f"/api/workorders/{p['order_id']}/photos/{p['id']}"}


@contextlib.asynccontextmanager
async def running_work_orders(settings: Any, engine: sa.Engine, sites: SiteDirectory | None, clock: Clock, *, alarms: AlarmStore | None,
                              roster: Roster | None = None) -> AsyncIterator[WorkOrderService]:
    """The server's work orders from its settings (backend.settings.Settings), with the overdue watch running."""
    photos = settings.workorders.photos_dir or settings.storage.data_dir / "workorder-photos"
    service = WorkOrderService(engine, sites, clock, photos, WorkOrderSettings.of(settings.workorders, settings.site.time_zone),
                               alarms=alarms, roster=roster)
    async with OverdueWatch(service):
        yield service


class OverdueWatch:
    """Runs `check_overdue()` at once (a restart catches up) and then every `check_every_s` of the service's clock."""

    def __init__(self, service: WorkOrderService) -> None:
        self.service = service
        self.started = asyncio.Event()
        self.checks = 0  # checks finished so far
        self._checked = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._stack = contextlib.AsyncExitStack()
        tg = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.callback(self._halt)  # runs before the TaskGroup waits for the task
        self._task = tg.create_task(self._run(), name="workorders-overdue")
        await self.started.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def _halt(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        every_ms = round(self.service.settings.check_every_s * 1000)
        while True:
            try:
                await self.service.check_overdue()
            except BackendError:
                log.warning("work orders: the overdue check failed; trying again in %.0f s", every_ms / 1000, exc_info=True)
            self.started.set()
            async with self._checked:
                self.checks += 1
                self._checked.notify_all()
            await self.service.clock.sleep_ms(every_ms)

    async def checked_after(self, count: int) -> int:
        """Wait until more than `count` checks have finished (tests move a virtual clock, then wait for the check)."""
        async with self._checked:
            await self._checked.wait_for(lambda: self.checks > count)
            return self.checks
