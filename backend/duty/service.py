"""The command room's duty work: roster overrides, officers' shifts, the shift handover, and the audit view (issue 17).

How this works:

- **Rosters.** An override (leave, sickness, away, a swap, a one-off assignment; each with a time range and a
  reason) is checked against the site directory and the caller's territory, written with its audit row in one
  transaction (backend.duty.store), and then the ladder's roster (backend.sites.roster.SiteRoster, the same
  object the escalation service asks) gets the new set of live overrides at once: the next alarm's ladder
  resolves from it, no restart. At start the set is loaded from the table, so a restart keeps it; `roster.refresh`
  reloads it when older than `reload_ms`, so a change made through another backend process reaches this one too.
- **Shifts.** A duty officer logs in to a shift (start) and out (end); who is logged in now is "on duty now",
  per community, checked against GB 25506's floor of two officers per shift.
- **Handover (交接班).** The outgoing officer writes one: what is open, what is overdue (alarms unacknowledged past
  their rung's deadline; hazard work orders past their due time), maintenance windows and silences in force, devices offline, and their notes, all as they
  were when written. Another officer accepts it once (objections noted); a second accept is refused.
- **Audit.** Roster, shift, handover and admin actions have rows in `duty_audit`; `audit_view` merges them with
  the login audit, the maintenance windows' audit and the console's silences into one list, newest first.

Times a person reads are in the site's time zone (`utc_offset_min`, from the escalation settings).

Exceptions (each carries a Chinese and an English sentence; the API answers with the status in brackets):

    BackendError
     └── DutyError
          ├── DutyNotFound   no such person, place, override or handover, or one outside the caller's territory (404)
          ├── DutyRefused    the request makes no sense: reversed or out-of-range times, missing people (422)
          └── DutyConflict   already done: a second accept, a second cancel, a shift already open (409)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Protocol

import sqlalchemy as sa

from alerting.directory import Seat
from backend.duty.store import AuditRow, DutyStore, HandoverRecord, OverrideRecord, ShiftRecord
from backend.errors import BackendError
from backend.sites.model import Responder, SiteDirectory
from backend.sites.roster import OverrideKind, RosterOverride, SiteRoster
from broker.clock import Clock

__all__ = [
    "MIN_OFFICERS_PER_SHIFT",
    "DutyConflict",
    "DutyError",
    "DutyNotFound",
    "DutyRefused",
    "DutyService",
    "OverrideRequest",
    "Place",
    "Snapshot",
    "overdue_rungs",
]

MIN_OFFICERS_PER_SHIFT: Final = 2  # GB 25506-2010: the fire control room is staffed by at least two officers per shift
MINUTE_MS: Final = 60_000
DAY_MS: Final = 86_400_000
MAX_OVERRIDE_DAYS: Final = 92  # a quarter: a longer absence is a change to the site file's roster, not an override
MAX_AHEAD_DAYS: Final = 366  # overrides are planned at most a year ahead
PAST_SLACK_MS: Final = 5 * MINUTE_MS  # a start "now" typed a few minutes ago is still now
SEAT_ZH: Final = {Seat.GRID_WORKER: "网格员", Seat.BUILDING_LEADER: "楼栋长", Seat.FIRE_STATION: "微型消防站", Seat.VOLUNTEER: "志愿者",
                  Seat.DUTY_OFFICER: "值班员", Seat.FAMILY: "家属"}
KIND_ZH: Final = {OverrideKind.LEAVE: "请假", OverrideKind.SICK: "病假", OverrideKind.AWAY: "不在岗", OverrideKind.SWAP: "换班",
                  OverrideKind.ASSIGN: "临时指定"}
OFFLINE_TYPES: Final = frozenset({"comm_lost", "gateway_offline", "device_fault", "power_outage", "patrol_missed"})


class DutyError(BackendError):
    status = 400

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class DutyNotFound(DutyError):
    status = 404


class DutyRefused(DutyError):
    status = 422


class DutyConflict(DutyError):
    status = 409


class Place(Protocol):
    """Where the caller may act (backend.api.auth.Territory)."""

    def covers(self, building_id: str | None, grid_id: str | None = None, community_id: str | None = None) -> bool: ...


@dataclass(frozen=True, slots=True)
class OverrideRequest:
    kind: OverrideKind
    start_ms: int
    end_ms: int
    reason: str
    responder: str | None = None
    substitute: str | None = None
    seat: Seat | None = None
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a handover hands over, as it was when written."""

    open_alarms: list[dict[str, Any]]
    overdue: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    silenced: list[dict[str, Any]]
    offline: list[dict[str, Any]]
    work_orders: list[dict[str, Any]]  # hazard work orders past their due time, not finished (backend/workorders' table)
    work_orders_available: bool  # False: this database has no work-order table (a build without them)

    def as_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def overdue_rungs(rungs: list[dict[str, Any]], now_ms: int) -> list[str]:
    """The labels of the rungs (backend.escalation.service.rungs_json) whose acknowledgement deadline has passed
    unanswered: missed already, or waiting for it with the climb due by now."""
    return [r["label"] for r in rungs if "acknowledged" in r["missed"]
            or (r["waits_for"] == "acknowledged" and r["climbs_at_ms"] is not None and r["climbs_at_ms"] <= now_ms)]


class Overdue(Protocol):
    async def __call__(self, alarm_id: str, now_ms: int) -> list[str]:
        """The rungs whose acknowledgement deadline passed unanswered (empty: not overdue)."""
        ...


class DutyService:
    """Blocking calls to the store go through `asyncio.to_thread` in the API; the methods here are plain."""

    def __init__(self, store: DutyStore, sites: SiteDirectory, roster: SiteRoster, clock: Clock, *, utc_offset_min: int = 480,
                 reload_ms: int = 5_000) -> None:
        self.store = store
        self.sites = sites
        self.roster = roster
        self.clock = clock
        self.tz = timezone(timedelta(minutes=utc_offset_min))
        self.reload_ms = reload_ms
        self._loaded_ms: int | None = None
        self.load()
        roster.refresh = self._refresh

    # -- the roster the ladder reads ----------------------------------------------------------------------------
    def load(self) -> None:
        now = self.clock.now_ms()
        self.roster.set_overrides(r.override for r in self.store.overrides(live_at_ms=now, limit=10_000))
        self._loaded_ms = now

    def _refresh(self) -> None:
        if self._loaded_ms is None or self.clock.now_ms() - self._loaded_ms >= self.reload_ms:
            self.load()

    # -- words and places ------------------------------------------------------------------------------------------
    def local(self, ms: int | None) -> str | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def person(self, responder_id: str | None) -> dict[str, Any] | None:
        if responder_id is None:
            return None
        r = self.sites.responders.get(responder_id)
        return {"id": responder_id, "name": r.name if r else responder_id}

    def _place_of_person(self, r: Responder) -> tuple[str | None, str | None, str]:
        grid = r.grid
        if r.building and r.building in self.sites.buildings and grid is None:
            grid = self.sites.buildings[r.building].grid
        return r.building, grid, r.community

    def _place_of_scope(self, seat: Seat, scope: str) -> tuple[str | None, str | None, str] | None:
        d = self.sites
        if seat is Seat.GRID_WORKER and scope in d.grids:
            return None, scope, d.grids[scope].community
        if seat is Seat.BUILDING_LEADER and scope in d.buildings:
            grid, community = d.place_of_building(scope)
            return (scope, grid, community) if community else None
        if seat is Seat.FIRE_STATION and scope in d.fire_stations:
            return None, None, d.fire_stations[scope].community
        if seat is Seat.VOLUNTEER and scope in d.volunteer_teams:
            return None, None, d.volunteer_teams[scope].community
        if seat is Seat.DUTY_OFFICER and scope in d.communities:
            return None, None, scope
        return None

    def scope_name(self, seat: Seat, scope: str) -> str:
        d = self.sites
        names: dict[Seat, Mapping[str, object]] = {
            Seat.GRID_WORKER: d.grids, Seat.BUILDING_LEADER: d.buildings, Seat.FIRE_STATION: d.fire_stations,
            Seat.VOLUNTEER: d.volunteer_teams, Seat.DUTY_OFFICER: d.communities}
        item = names.get(seat, {}).get(scope)
        return str(getattr(item, "name", scope))

    def _someone(self, responder_id: str | None, field: str, territory: Place) -> Responder:
        if not responder_id:
            raise DutyRefused(f"请填写{field}", f"name the {field}")
        r = self.sites.responders.get(responder_id)
        if r is None or not territory.covers(*self._place_of_person(r)):
            raise DutyNotFound(f"人员 {responder_id} 不存在（或不在您的辖区内）；请从名单中选择",
                               f"there is no person {responder_id} (or not in your territory); pick one from the list")
        return r

    # -- overrides ---------------------------------------------------------------------------------------------------
    def check(self, req: OverrideRequest, territory: Place) -> tuple[RosterOverride, str]:
        """The override the request asks for and its community, or DutyError saying why not. Writes nothing."""
        now = self.clock.now_ms()
        if req.end_ms <= req.start_ms:
            raise DutyRefused("结束时间必须晚于开始时间", "the end must be after the start")
        if req.end_ms - req.start_ms > MAX_OVERRIDE_DAYS * DAY_MS:
            raise DutyRefused(f"一次调整最长 {MAX_OVERRIDE_DAYS} 天；更长的变动请修改站点排班表",
                              f"an override lasts at most {MAX_OVERRIDE_DAYS} days; change the site file's roster for longer")
        if req.end_ms <= now:
            raise DutyRefused("结束时间已过；请填写尚未结束的时间段", "the end is in the past; give a range that has not ended")
        if req.start_ms < now - PAST_SLACK_MS and req.kind is OverrideKind.ASSIGN:
            raise DutyRefused("临时指定不能从过去开始；请从现在开始", "an assignment cannot start in the past; start it now")
        if req.start_ms > now + MAX_AHEAD_DAYS * DAY_MS:
            raise DutyRefused("开始时间超出一年；请填写一年以内的时间", "the start is more than a year ahead")
        if len(req.reason.strip()) < 2:
            raise DutyRefused("请填写原因（至少两个字）", "give a reason (two characters at least)")
        substitute = responder = None
        community: str
        if req.kind is OverrideKind.ASSIGN:
            if req.seat is None or not req.scope:
                raise DutyRefused("临时指定需要岗位和范围（网格、楼栋、消防站、志愿队或社区）", "an assignment needs a seat and a scope")
            if req.seat is Seat.FAMILY:
                raise DutyRefused("家属不是排班岗位", "family is not a roster seat")
            place = self._place_of_scope(req.seat, req.scope)
            if place is None or not territory.covers(*place):
                raise DutyNotFound(f"{SEAT_ZH[req.seat]}范围 {req.scope} 不存在（或不在您的辖区内）；请从列表中选择",
                                   f"there is no {req.seat.value} scope {req.scope} (or not in your territory); pick one from the list")
            community = place[2]
            substitute = self._someone(req.substitute, "顶岗人员", territory)
            if req.responder:
                raise DutyRefused("临时指定只需填写顶岗人员", "an assignment names only who stands in")
        else:
            responder = self._someone(req.responder, "请假或换班的人员", territory)
            community = responder.community
            if req.kind is OverrideKind.SWAP or req.substitute:
                substitute = self._someone(req.substitute, "替班人员", territory)
                if substitute.id == responder.id:
                    raise DutyRefused("替班人员不能是本人", "the substitute cannot be the same person")
            if req.seat is not None and req.seat not in {s.seat for s in self.sites.shifts if s.responder == responder.id}:
                raise DutyRefused(f"{responder.name} 没有{SEAT_ZH.get(req.seat, req.seat.value)}的班次", f"{responder.id} has no {req.seat.value} shift")
        o = RosterOverride(uuid.uuid4().hex[:16], req.kind, req.start_ms, req.end_ms, responder.id if responder else None,
                           substitute.id if substitute else None, req.seat, req.scope if req.kind is OverrideKind.ASSIGN else None, req.reason.strip())
        return o, community

    def describe(self, o: RosterOverride) -> str:
        def name(rid: str | None) -> str:
            p = self.person(rid)
            return p["name"] if p else ""

        span = f"{self.local(o.start_ms)} 至 {self.local(o.end_ms)}"
        if o.kind is OverrideKind.ASSIGN and o.seat is not None and o.scope is not None:
            return f"临时指定 {name(o.substitute)} 担任{self.scope_name(o.seat, o.scope)}{SEAT_ZH.get(o.seat, '')}，{span}，原因：{o.reason}"
        sub = f"，由 {name(o.substitute)} 顶替" if o.substitute else ""
        return f"{name(o.responder)} {KIND_ZH[o.kind]}{sub}，{span}，原因：{o.reason}"

    def add_override(self, req: OverrideRequest, actor: str, territory: Place) -> OverrideRecord:
        o, community = self.check(req, territory)
        now = self.clock.now_ms()
        rec = OverrideRecord(o, community, actor, now)
        self.store.add_override(rec, AuditRow(now, actor, "roster", f"override_{o.kind.value}", o.id, community, self.describe(o)))
        self.load()
        return rec

    def cancel_override(self, override_id: str, actor: str, reason: str, territory: Place) -> OverrideRecord:
        rec = self.visible_override(override_id, territory)
        if rec.cancelled_ms is not None:
            raise DutyConflict(f"此调整已于 {self.local(rec.cancelled_ms)} 由 {rec.cancelled_by} 取消", "this override is already cancelled")
        if len(reason.strip()) < 2:
            raise DutyRefused("请填写取消原因（至少两个字）", "give a reason (two characters at least)")
        now = self.clock.now_ms()
        detail = f"取消：{self.describe(rec.override)}；取消原因：{reason.strip()}"
        audit = AuditRow(now, actor, "roster", "override_cancel", override_id, rec.community, detail)
        if not self.store.cancel_override(override_id, actor, reason.strip(), now, audit):
            raise DutyConflict("此调整已被取消", "this override is already cancelled")
        self.load()
        return replace(rec, cancelled_ms=now, cancelled_by=actor, cancel_reason=reason.strip())

    def visible_override(self, override_id: str, territory: Place) -> OverrideRecord:
        rec = self.store.get_override(override_id)
        if rec is None or not self._override_covered(rec.override, territory):
            raise DutyNotFound(f"排班调整 {override_id} 不存在；请从列表中选择", f"there is no roster override {override_id}; pick one from the list")
        return rec

    def _override_covered(self, o: RosterOverride, territory: Place) -> bool:
        if o.kind is OverrideKind.ASSIGN and o.seat is not None and o.scope is not None:
            place = self._place_of_scope(o.seat, o.scope)
            return place is not None and territory.covers(*place)
        r = self.sites.responders.get(o.responder or "")
        return r is not None and territory.covers(*self._place_of_person(r))

    def override_view(self, rec: OverrideRecord) -> dict[str, Any]:
        o = rec.override
        now = self.clock.now_ms()
        state = "cancelled" if rec.cancelled_ms is not None else "ended" if o.end_ms <= now else "in_force" if o.start_ms <= now else "planned"
        return {**rec.as_json(), "state": state, "state_zh": {"cancelled": "已取消", "ended": "已结束", "in_force": "生效中", "planned": "待生效"}[state],
                "kind_zh": KIND_ZH[o.kind], "responder_name": (self.person(o.responder) or {}).get("name"),
                "substitute_name": (self.person(o.substitute) or {}).get("name"), "start_local": self.local(o.start_ms), "end_local": self.local(o.end_ms),
                "text": self.describe(o)}

    def overrides(self, territory: Place, include_past: bool = False) -> list[dict[str, Any]]:
        now = self.clock.now_ms()
        recs = self.store.overrides(live_at_ms=None if include_past else now)
        return [self.override_view(r) for r in recs if self._override_covered(r.override, territory)]

    # -- who is on duty for each rung ---------------------------------------------------------------------------------
    def seats(self, territory: Place) -> Iterable[tuple[Seat, str, tuple[str | None, str | None, str]]]:
        d = self.sites
        for seat, scopes in ((Seat.GRID_WORKER, d.grids), (Seat.BUILDING_LEADER, d.buildings), (Seat.FIRE_STATION, d.fire_stations),
                             (Seat.VOLUNTEER, d.volunteer_teams), (Seat.DUTY_OFFICER, d.communities)):
            for scope in sorted(scopes):
                place = self._place_of_scope(seat, scope)
                if place is not None and territory.covers(*place):
                    yield seat, scope, place

    def roster_now(self, territory: Place, at_ms: int | None = None, seat: Seat | None = None) -> list[dict[str, Any]]:
        at = self.clock.now_ms() if at_ms is None else at_ms
        out = []
        for s, scope, _place in self.seats(territory):
            if seat is not None and s is not seat:
                continue
            fill = self.roster.fill_scope(s, scope, at)
            out.append({"seat": s.value, "seat_zh": SEAT_ZH[s], "scope": scope, "scope_name": self.scope_name(s, scope),
                        "via": fill.via.value, "note": fill.note, "on_duty": [{"id": c.id, "name": c.name} for c in fill.contacts],
                        "rostered": [self.person(r) for r in self.roster.rostered(s, scope, at)],
                        "overrides": [o.id for o in self.roster.overrides if o.in_force(at) and self._touches(o, s, scope)]})
        return out

    def people(self, territory: Place) -> list[dict[str, Any]]:
        """Everyone on the site file inside the territory, for the console's pickers (no phone numbers)."""
        return [{"id": r.id, "name": r.name, "role": r.role.value} for r in sorted(self.sites.responders.values(), key=lambda r: r.id)
                if territory.covers(*self._place_of_person(r))]

    def _touches(self, o: RosterOverride, seat: Seat, scope: str) -> bool:
        if o.kind is OverrideKind.ASSIGN:
            return o.seat is seat and o.scope == scope
        return any(sh.responder == o.responder and sh.seat is seat and sh.scope == scope for sh in self.sites.shifts)

    # -- officers' shifts -------------------------------------------------------------------------------------------------
    def community_of(self, asked: str | None, user_scope: str | None, territory: Place) -> str:
        d = self.sites
        c = asked or (user_scope if user_scope in d.communities else None)
        if c is None and len(d.communities) == 1:
            c = next(iter(d.communities))
        if c is None:
            raise DutyRefused("请选择社区", "pick a community")
        if c not in d.communities or not territory.covers(None, None, c):
            raise DutyNotFound(f"社区 {c} 不存在（或不在您的辖区内）", f"there is no community {c} (or not in your territory)")
        return c

    def start_shift(self, username: str, display_name: str, community: str) -> ShiftRecord:
        now = self.clock.now_ms()
        rec = ShiftRecord(uuid.uuid4().hex[:16], username, display_name or username, community, now, None)
        where = self.scope_name(Seat.DUTY_OFFICER, community)
        audit = AuditRow(now, username, "shift", "shift_start", username, community, f"{display_name or username} 开始值班（{where}）")
        if not self.store.start_shift(rec, audit):
            open_ = self.store.open_shift(username)
            since = self.local(open_.started_ms) if open_ else ""
            raise DutyConflict(f"您已在值班中（自 {since} 起）；请先交班或结束值班", "you are already on a shift; end it first")
        return rec

    def end_shift(self, username: str, display_name: str) -> ShiftRecord:
        now = self.clock.now_ms()
        open_ = self.store.open_shift(username)
        if open_ is None:
            raise DutyConflict("您当前没有在值班", "you are not on a shift")
        audit = AuditRow(now, username, "shift", "shift_end", username, open_.community, f"{display_name or username} 结束值班")
        rec = self.store.end_shift(username, now, audit)
        if rec is None:
            raise DutyConflict("您当前没有在值班", "you are not on a shift")
        return rec

    def on_duty(self, territory: Place) -> list[dict[str, Any]]:
        """Per community in the territory: who is logged in to a shift now, who the site file rosters, and GB 25506's check."""
        now = self.clock.now_ms()
        shifts = self.store.open_shifts()
        out = []
        for c in sorted(self.sites.communities):
            if not territory.covers(None, None, c):
                continue
            officers = [{"username": s.username, "display_name": s.display_name, "since_ms": s.started_ms, "since_local": self.local(s.started_ms)}
                        for s in shifts if s.community == c]
            ok = len(officers) >= MIN_OFFICERS_PER_SHIFT
            warning = None if ok else f"当前在岗值班员 {len(officers)} 人，少于 GB 25506 要求的每班不少于 {MIN_OFFICERS_PER_SHIFT} 人"
            warning_en = None if ok else f"{len(officers)} officer(s) on shift, fewer than the {MIN_OFFICERS_PER_SHIFT} per shift of GB 25506"
            out.append({"community": c, "name": self.scope_name(Seat.DUTY_OFFICER, c), "officers": officers, "count": len(officers),
                        "required": MIN_OFFICERS_PER_SHIFT, "ok": ok, "warning": warning, "warning_en": warning_en,
                        "rostered": [self.person(r) for r in self.roster.rostered(Seat.DUTY_OFFICER, c, now)]})
        return out

    # -- handovers ----------------------------------------------------------------------------------------------------------
    async def snapshot(self, community: str, alarms_engine: sa.Engine | None, open_alarms: list[Any], overdue: Overdue | None) -> Snapshot:
        now = self.clock.now_ms()
        mine = [a for a in open_alarms if a.community_id == community and not a.drill]
        mine.sort(key=lambda a: a.raised_at_ms)

        def row(a: Any) -> dict[str, Any]:
            b = self.sites.buildings.get(a.building_id or "")
            return {"id": a.id, "title": a.title, "alarm_type": a.alarm_type, "severity": a.severity, "state": a.state,
                    "building": b.name if b else a.building_id, "device_id": a.device_id, "raised_ms": a.raised_at_ms,
                    "raised_local": self.local(a.raised_at_ms)}

        overdue_rows = []
        if overdue is not None:
            for a in mine:
                if a.state in ("raised", "notified"):
                    rungs = await overdue(a.id, now)
                    if rungs:
                        overdue_rows.append({**row(a), "rungs": rungs})
        windows = self._windows(community, alarms_engine, now)
        silenced = [{**row(a), "until_local": self.local(a.silenced_until_ms), "by": a.silenced_by} for a in mine if a.state == "silenced"]
        offline = [row(a) for a in mine if a.alarm_type in OFFLINE_TYPES]
        orders = self._overdue_orders(community, alarms_engine, now)
        return Snapshot([row(a) for a in mine if a.state != "silenced"], overdue_rows, windows, silenced, offline, orders or [], orders is not None)

    def _overdue_orders(self, community: str, engine: sa.Engine | None, now: int) -> list[dict[str, Any]] | None:
        """Work orders of the community past their due time and not yet done; None when the table does not exist."""
        if engine is None or not sa.inspect(engine).has_table("work_orders"):
            return None
        q = sa.text("SELECT id, title, state, building_id, assignee_name, due_ms FROM work_orders WHERE community_id = :c AND NOT drill "
                    "AND state IN ('open', 'assigned', 'in_progress') AND due_ms <= :now ORDER BY due_ms")
        with engine.connect() as conn:
            rows = list(conn.execute(q, {"c": community, "now": now}))
        out = []
        for r in rows:
            b = self.sites.buildings.get(r.building_id or "")
            out.append({"id": r.id, "title": r.title, "state": r.state, "building": b.name if b else r.building_id, "assignee": r.assignee_name,
                        "due_ms": r.due_ms, "due_local": self.local(r.due_ms)})
        return out

    def _windows(self, community: str, engine: sa.Engine | None, now: int) -> list[dict[str, Any]]:
        if engine is None or not sa.inspect(engine).has_table("maintenance_windows"):
            return []
        from backend.alarms.maintenance import maintenance_windows as mw

        q = sa.select(mw).where(mw.c.ended_ms.is_(None), mw.c.starts_ms <= now, mw.c.ends_ms > now, mw.c.community_id == community).order_by(mw.c.ends_ms)
        with engine.connect() as conn:
            rows = list(conn.execute(q))
        out = []
        for r in rows:
            b = self.sites.buildings.get(r.building_id)
            what = {"building": "整栋", "device": f"设备 {r.device_id}", "kind": f"全部 {r.device_kind}"}.get(r.scope, r.scope)
            out.append({"id": r.id, "building": b.name if b else r.building_id, "what": what, "author": r.author, "reason": r.reason,
                        "ends_ms": r.ends_ms, "ends_local": self.local(r.ends_ms)})
        return out

    def write_handover(self, community: str, author: str, notes: str, snapshot: Snapshot) -> HandoverRecord:
        if len(notes) > 4000:
            raise DutyRefused("交班说明最多 4000 字", "notes are at most 4000 characters")
        now = self.clock.now_ms()
        rec = HandoverRecord(uuid.uuid4().hex[:16], community, author, now, notes.strip(), snapshot.as_json(), None, None, None)
        s = snapshot
        self.store.add_handover(rec, AuditRow(now, author, "handover", "handover_write", rec.id, community,
                                              f"交班：未结警报 {len(s.open_alarms)}，超时未确认 {len(s.overdue)}，维护窗口 {len(s.windows)}，"
                                              f"静默 {len(s.silenced)}，离线设备 {len(s.offline)}"))
        return rec

    def visible_handover(self, handover_id: str, territory: Place) -> HandoverRecord:
        rec = self.store.get_handover(handover_id)
        if rec is None or not territory.covers(None, None, rec.community):
            raise DutyNotFound(f"交班记录 {handover_id} 不存在；请从列表中选择", f"there is no handover {handover_id}; pick one from the list")
        return rec

    def accept_handover(self, handover_id: str, by: str, objections: str, territory: Place) -> HandoverRecord:
        rec = self.visible_handover(handover_id, territory)
        if rec.accepted_by is not None:
            raise DutyConflict(f"此交班已于 {self.local(rec.accepted_ms)} 由 {rec.accepted_by} 接班，不能重复接班", "this handover is already accepted")
        if rec.author == by:
            raise DutyConflict("不能接收自己写的交班；请由接班的值班员接收", "you cannot accept your own handover; the incoming officer accepts it")
        if len(objections) > 2000:
            raise DutyRefused("异议最多 2000 字", "objections are at most 2000 characters")
        now = self.clock.now_ms()
        detail = "接班" + (f"，异议：{objections.strip()}" if objections.strip() else "，无异议")
        audit = AuditRow(now, by, "handover", "handover_accept", handover_id, rec.community, detail)
        if not self.store.accept_handover(handover_id, by, objections.strip(), now, audit):
            raise DutyConflict("此交班已被接收，不能重复接班", "this handover is already accepted")
        return replace(rec, accepted_by=by, accepted_ms=now, objections=objections.strip())

    def handover_view(self, rec: HandoverRecord) -> dict[str, Any]:
        return {"id": rec.id, "community": rec.community, "community_name": self.scope_name(Seat.DUTY_OFFICER, rec.community), "author": rec.author,
                "written_ms": rec.written_ms, "written_local": self.local(rec.written_ms), "notes": rec.notes, "snapshot": rec.snapshot,
                "accepted_by": rec.accepted_by, "accepted_ms": rec.accepted_ms, "accepted_local": self.local(rec.accepted_ms),
                "objections": rec.objections, "state": "accepted" if rec.accepted_by else "pending",
                "state_zh": "已接班" if rec.accepted_by else "待接班"}

    def handovers(self, territory: Place, limit: int = 50) -> list[dict[str, Any]]:
        return [self.handover_view(r) for r in self.store.handovers(limit) if territory.covers(None, None, r.community)]

    # -- admin actions -------------------------------------------------------------------------------------------------
    def admin(self, actor: str, action: str, subject: str, detail: str) -> None:
        self.store.audit(AuditRow(self.clock.now_ms(), actor, "admin", action, subject, None, detail))
