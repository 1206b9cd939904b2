"""Read models of the console: alarms with their place, building risk, device health. Pure functions of the
alarm records and the site directory, plus one territory-aware query.

How this works: the alarm store holds what is true; the site directory says where things are. Everything the
board, the map and the health page show is derived from the *open* alarms (a few hundred at most) and the
directory, at request time, so the views can never drift from the store:
- a building is red while it has an open real life-safety alarm; yellow while it has other open real alarms
  (warnings) or devices offline; green otherwise. Drill alarms are counted apart (`drill`) and never colour
  a building red or yellow by themselves: a drill is shown as a drill;
- a device is offline (离线, lost) while it has an open `comm_lost` alarm; unknown (未知) while its gateway has an
  open `gateway_offline` alarm (its state cannot be known, not lost); low battery while `low_battery` is open;
- per gateway: its devices offline, unknown (all of them while the gateway is offline, else the count of its open
  `devices_unknown` alarm: a bridge in front of them is gone) and not yet commissioned (未上线: the count of its open
  `devices_uncommissioned` notice: never heard since they were added). Both gateway alarms start their detail with
  the count ("N 台", alerting.engine);
- a building's camera online rate is (cameras - cameras offline or unknown) / cameras, against the 98 % target.

The board (`board_page`) never cuts a life-safety alarm: every open real life-safety alarm of the territory
comes back, whatever the number of other alarms; the rest come as one page in board order, with their total
and grouped by (alarm type, building, or community when the alarm has no building), so a community-wide
outage of 2,000 camera and device alarms is a handful of groups and a count, not 2,000 rows that push a fire
off the screen. Drill life-safety alarms belong to the rest: a drill storm must not flood the board either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from alerting.ladder import EscalationState, PolicySet
from alerting.ladder.engine import CONSOLE_RUNG, Timer, TimerKind
from backend.alarms.schema import alarms as alarms_table
from backend.api.auth import Territory
from backend.feed.view import alarm_view
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord
from broker.kinds import DeviceKind

__all__ = [
    "CAMERA_TARGET",
    "OFFLINE_TYPES",
    "SEVERITY_RANK",
    "BoardPage",
    "DeviceHealth",
    "alarm_view",
    "board_order",
    "board_page",
    "building_risk",
    "camera_rates",
    "device_health",
    "gateway_rows",
    "place_view",
    "query_alarms",
    "rung_status",
]

CAMERA_TARGET: Final = 0.98  # national target for camera working rate in key public areas (DOMAIN.md)
SEVERITY_RANK: Final = {"info": 0, "minor": 1, "major": 2, "critical": 3}
OFFLINE_TYPES: Final = frozenset({"comm_lost"})
UNKNOWN_TYPE: Final = "devices_unknown"  # a bridge or coordinator behind the gateway is gone (alerting.engine)
UNCOMMISSIONED_TYPE: Final = "devices_uncommissioned"  # devices never heard since they were added (alerting.engine)
_COLUMNS: Final = [alarms_table.c[f] for f in AlarmRecord.__slots__]


def board_order(a: AlarmRecord) -> tuple[int, int, int, int]:
    """Open first; then life safety, severity (highest first); then age (oldest first: it has waited longest)."""
    return (0 if a.is_open else 1, 0 if a.life_safety else 1, -SEVERITY_RANK.get(a.severity, 0), a.raised_at_ms if a.is_open else -a.updated_ms)


def _filtered(q: Any, territory: Territory, *, open_only: bool, drill: bool | None, building: str | None, grid: str | None,
              grid_buildings: Sequence[str], alarm_type: str | None = None) -> Any:
    """The board's filters and the territory, as SQL; None when the territory holds nothing."""
    c = alarms_table.c
    if open_only:
        q = q.where(c.is_open)
    if drill is not None:
        q = q.where(c.drill == drill)
    if building is not None:
        q = q.where(c.building_id == building)
    if alarm_type is not None:
        q = q.where(c.alarm_type == alarm_type)
    if grid is not None:
        q = q.where(sa.or_(c.building_id.in_(list(grid_buildings)), c.grid_id == grid))
    if not territory.everywhere:
        ors: list[Any] = []
        if territory.buildings is not None:
            ors.append(c.building_id.in_(sorted(territory.buildings)))
        if territory.grids is not None:
            ors.append(c.grid_id.in_(sorted(territory.grids)))
        if territory.kind == "community" and territory.scope:
            ors.append(c.community_id == territory.scope)
        if not ors:
            return None
        q = q.where(sa.or_(*ors))
    return q


@dataclass(frozen=True, slots=True)
class BoardPage:
    """What the board shows: every open real life-safety alarm, one page of the rest, and how many there are."""

    life_safety: list[AlarmRecord]  # all of them, board order: never paged, never cut
    rest: list[AlarmRecord]  # one page (offset, limit) of every other alarm, board order
    rest_total: int  # alarms besides the life-safety ones that match the filters
    open_total: int  # open alarms that match the filters, life safety included
    groups: list[dict[str, Any]]  # open alarms of the rest by (type, building or community), largest first
    drill_open: int


_SEVERITY_SQL: Final = sa.case(dict(SEVERITY_RANK), value=alarms_table.c.severity, else_=0)


def board_page(engine: sa.Engine, territory: Territory, *, open_only: bool = False, drill: bool | None = None, building: str | None = None,
               grid: str | None = None, grid_buildings: Sequence[str] = (), alarm_type: str | None = None, offset: int = 0,
               limit: int = 200) -> BoardPage:
    """The board for a territory; see the module docstring. Blocking: call it off the event loop."""
    c = alarms_table.c

    def f(q: Any, *, any_drill: bool = False) -> Any:
        return _filtered(q, territory, open_only=open_only, drill=None if any_drill else drill, building=building, grid=grid,
                         grid_buildings=grid_buildings, alarm_type=alarm_type)

    urgent = sa.and_(c.is_open, c.life_safety, sa.not_(c.drill))
    ls_q = f(sa.select(*_COLUMNS).where(urgent))
    if ls_q is None:
        return BoardPage([], [], 0, 0, [], 0)
    rest_q = f(sa.select(*_COLUMNS).where(sa.not_(urgent)))
    order = (c.is_open.desc(), c.life_safety.desc(), _SEVERITY_SQL.desc(), sa.case((c.is_open, c.raised_at_ms), else_=-c.updated_ms).asc(), c.id)
    rest_q = rest_q.order_by(*order).offset(offset).limit(limit)
    count_rest = f(sa.select(sa.func.count()).select_from(alarms_table).where(sa.not_(urgent)))
    count_open = f(sa.select(sa.func.count()).select_from(alarms_table).where(c.is_open))
    place = sa.func.coalesce(c.building_id, c.community_id, "")
    group_q = f(sa.select(c.alarm_type, place.label("place"), c.drill, sa.func.count().label("n"), sa.func.max(_SEVERITY_SQL).label("sev"),
                          sa.func.min(c.raised_at_ms).label("oldest_ms"), sa.func.min(c.title).label("title"))
                .where(c.is_open, sa.not_(urgent)).group_by(c.alarm_type, place, c.drill))
    drills = f(sa.select(sa.func.count()).select_from(alarms_table).where(c.is_open, c.drill), any_drill=True)
    with engine.connect() as conn:
        ls = [AlarmRecord(**r._mapping) for r in conn.execute(ls_q)]
        rest = [AlarmRecord(**r._mapping) for r in conn.execute(rest_q)]
        rest_total = int(conn.execute(count_rest).scalar_one())
        open_total = int(conn.execute(count_open).scalar_one())
        groups = [{"alarm_type": r.alarm_type, "place": r.place or None, "drill": bool(r.drill), "count": int(r.n),
                   "severity": next((k for k, v in SEVERITY_RANK.items() if v == r.sev), "info"), "oldest_ms": int(r.oldest_ms), "title": r.title}
                  for r in conn.execute(group_q)]
        drill_open = int(conn.execute(drills).scalar_one())
    inside = [r for r in ls if territory.covers(r.building_id, r.grid_id, r.community_id)]
    groups.sort(key=lambda g: (-g["count"], -SEVERITY_RANK.get(g["severity"], 0), g["alarm_type"], g["place"] or ""))
    return BoardPage(sorted(inside, key=board_order), [r for r in rest if territory.covers(r.building_id, r.grid_id, r.community_id)],
                     rest_total, open_total, groups, drill_open)


def query_alarms(engine: sa.Engine, territory: Territory, *, open_only: bool = False, drill: bool | None = None, building: str | None = None,
                 grid: str | None = None, grid_buildings: Sequence[str] = (), limit: int = 200) -> list[AlarmRecord]:
    """Alarms inside the territory, newest first from the store, then in board order."""
    c = alarms_table.c
    q = _filtered(sa.select(*_COLUMNS), territory, open_only=open_only, drill=drill, building=building, grid=grid, grid_buildings=grid_buildings)
    if q is None:
        return []
    q = q.order_by(c.is_open.desc(), c.raised_at_ms.desc()).limit(limit)
    with engine.connect() as conn:
        rows = [AlarmRecord(**r._mapping) for r in conn.execute(q)]
    return sorted((r for r in rows if territory.covers(r.building_id, r.grid_id, r.community_id)), key=board_order)


def _person(sites: SiteDirectory | None, responder: str | None) -> str | None:
    r = sites.responders.get(responder) if sites is not None and responder else None
    return f"{r.name}（{r.phone}）" if r is not None else responder


def place_view(a: AlarmRecord, sites: SiteDirectory | None, *, with_vulnerable: bool) -> dict[str, Any]:
    """Where the alarm is; vulnerable-resident notes only for roles allowed to see them."""
    if sites is None:
        return {"building_id": a.building_id, "unit": a.unit, "household_id": a.household_id, "device_id": a.device_id}
    b = sites.buildings.get(a.building_id or "")
    d = sites.devices.get(a.device_id or "")
    g = sites.grids.get(b.grid) if b else None
    hh = sites.households.get(a.household_id or (d.household if d else None) or "")
    out: dict[str, Any] = {
        "community": sites.communities[g.community].name if g and g.community in sites.communities else None,
        "grid_id": g.id if g else a.grid_id, "grid_name": g.name if g else None,
        "building_id": a.building_id, "building_name": b.name if b else None, "floors": b.floors if b else None,
        "unit": a.unit if a.unit is not None else (d.unit if d else None),
        "household_id": hh.id if hh else a.household_id, "room": hh.room if hh else None, "residents": hh.residents if hh else None,
        "device": {"id": d.id, "kind": d.kind.value, "location": d.location, "gateway": d.gateway, "model": d.model} if d else None,
        "vulnerable": None, "vulnerable_hidden": False,
    }
    if hh is not None and hh.vulnerable is not None:
        if with_vulnerable:
            v = hh.vulnerable
            out["vulnerable"] = {
                "lives_alone": v.lives_alone, "mobility": v.mobility, "key_holder": v.key_holder, "notes": v.notes,
                # the key holder in words (a responder of the directory: name and phone), the id only when it is not one
                "key_holder_text": _person(sites, v.key_holder),
                "family_contacts": [{"name": f.name, "phone": f.phone, "relation": f.relation} for f in v.family_contacts],
                "neighbours": [{"name": f.name, "phone": f.phone, "relation": f.relation} for f in v.neighbours],
            }
        else:
            out["vulnerable_hidden"] = True
    return out


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    offline: dict[str, str]  # device id -> why (its comm_lost alarm)
    low_battery: set[str]
    faulty: set[str]
    unknown: dict[str, str]  # device id -> why ("gateway <id> offline"): not lost, cannot be known
    gateways_offline: set[str]
    blind: dict[str, int]  # gateway -> devices behind it unknown (its open devices_unknown alarm)
    uncommissioned: dict[str, int]  # gateway -> devices never heard since they were added (its open notice)


def _leading_count(detail: str | None) -> int:
    """The count a gateway alarm's detail starts with ("12 台设备..."); 0 if it does not."""
    head = (detail or "").split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def device_health(open_alarms: Iterable[AlarmRecord], sites: SiteDirectory) -> DeviceHealth:
    offline: dict[str, str] = {}
    low: set[str] = set()
    faulty: set[str] = set()
    gateways_offline: set[str] = set()
    blind: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for a in open_alarms:
        if a.drill:
            continue
        if a.alarm_type in OFFLINE_TYPES and a.device_id:
            offline[a.device_id] = f"comm_lost {a.id}"
        elif a.alarm_type == "gateway_offline" and a.gateway_id:
            gateways_offline.add(a.gateway_id)
        elif a.alarm_type == UNKNOWN_TYPE and a.gateway_id:
            blind[a.gateway_id] = _leading_count(a.detail)
        elif a.alarm_type == UNCOMMISSIONED_TYPE and a.gateway_id:
            waiting[a.gateway_id] = _leading_count(a.detail)
        elif a.alarm_type == "low_battery" and a.device_id:
            low.add(a.device_id)
        elif a.alarm_type == "device_fault" and a.device_id:
            faulty.add(a.device_id)
    unknown = {d.id: f"gateway {gw} offline" for gw in sorted(gateways_offline) for d in sites.devices_by_gateway.get(gw, ())
               if d.id not in offline}
    return DeviceHealth(offline, low, faulty, unknown, gateways_offline, blind, waiting)


def gateway_rows(health: DeviceHealth, sites: SiteDirectory, building_ids: set[str]) -> list[dict[str, Any]]:
    """Per gateway of these buildings (a community-level gateway: when it serves one of them) with anything to say:
    devices offline, unknown, not yet commissioned; the gateway's own offline state. Most devices affected first."""
    rows: list[dict[str, Any]] = []
    for gw, devs in sites.devices_by_gateway.items():
        g = sites.gateways.get(gw)
        building = g.building if g is not None else None
        if not (building in building_ids if building is not None else any(d.building in building_ids for d in devs)):
            continue
        down = gw in health.gateways_offline
        row = {"id": gw, "name": g.name if g is not None and g.name else gw, "building": building,
               "building_name": sites.buildings[building].name if building in sites.buildings else None, "devices": len(devs),
               "gateway_offline": down, "offline": sum(1 for d in devs if d.id in health.offline),
               "unknown": sum(1 for d in devs if d.id in health.unknown) if down else min(health.blind.get(gw, 0), len(devs)),
               "uncommissioned": min(health.uncommissioned.get(gw, 0), len(devs))}
        if down or row["offline"] or row["unknown"] or row["uncommissioned"]:
            rows.append(row)
    rows.sort(key=lambda r: (-(r["offline"] + r["unknown"] + r["uncommissioned"]), r["id"]))
    return rows


def building_risk(open_alarms: Sequence[AlarmRecord], sites: SiteDirectory, health: DeviceHealth) -> dict[str, dict[str, Any]]:
    """Per building: level red / yellow / green, and the counts behind it (drills apart)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"life_safety": 0, "warnings": 0, "drill": 0, "offline": 0, "unknown": 0, "low_battery": 0})
    for a in open_alarms:
        if not a.building_id:
            continue
        c = counts[a.building_id]
        if a.drill:
            c["drill"] += 1
        elif a.life_safety and a.state not in ("silenced", "suppressed"):
            c["life_safety"] += 1
        else:
            c["warnings"] += 1
    for dev_id in health.offline:
        d = sites.devices.get(dev_id)
        if d is not None:
            counts[d.building]["offline"] += 1
    for dev_id in health.unknown:
        d = sites.devices.get(dev_id)
        if d is not None:
            counts[d.building]["unknown"] += 1
    for dev_id in health.low_battery:
        d = sites.devices.get(dev_id)
        if d is not None:
            counts[d.building]["low_battery"] += 1
    out: dict[str, dict[str, Any]] = {}
    for b in sites.buildings:
        c = counts.get(b) or {"life_safety": 0, "warnings": 0, "drill": 0, "offline": 0, "unknown": 0, "low_battery": 0}
        level = "red" if c["life_safety"] else "yellow" if (c["warnings"] or c["offline"] or c["unknown"]) else "green"
        out[b] = {"level": level, **c}
    return out


def camera_rates(sites: SiteDirectory, health: DeviceHealth, buildings: Iterable[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b in buildings:
        cams = [d for d in sites.devices_by_building.get(b, ()) if d.kind is DeviceKind.CAMERA]
        down = sum(1 for d in cams if d.id in health.offline or d.id in health.unknown)  # unknown is not online either
        rate = (len(cams) - down) / len(cams) if cams else None
        out[b] = {"cameras": len(cams), "online": len(cams) - down, "rate": rate, "meets_target": rate is None or rate >= CAMERA_TARGET}
    return out


def rung_status(state: EscalationState, policies: PolicySet, pending: Sequence[Timer]) -> list[dict[str, Any]]:
    """Per rung of the alarm's ladder, in climbing order: paged or not, whether it still waits for its own answer
    (a duty officer's acknowledgement on the console answers for the console, not for a rung: each rung's
    repeats and deadlines run until that rung answers), its next repeat, its next deadline and where and when a
    missed deadline climbs. `state` is an alerting.ladder EscalationState, `pending` its `timers(...)`.
    Rungs not yet paged say when the ladder will reach them at the earliest."""
    policy = policies.by_name.get(state.policy)
    order = list(policy.order) if policy is not None else []
    engaged = {e.rung: e for e in state.engagements}
    order += [r for r in engaged if r not in order]
    climb_pool = [n for n in (*policy.ladder, *policy.verify_escalate_to) if n not in policy.entry] if policy is not None else []
    out: list[dict[str, Any]] = []
    reach: dict[str, int] = {}  # rung not yet paged -> earliest time a climb pages it
    for name in order:
        e = engaged.get(name)
        rung = policies.rungs.get(name)
        mine = [t for t in pending if t.rung == name]
        repeat = next((t.due_ms for t in mine if t.kind is TimerKind.REPEAT), None)
        deadline = next((t for t in mine if t.kind is TimerKind.DEADLINE), None)
        target = None
        if e is not None:
            candidates = ([rung.on_miss] if rung is not None and rung.on_miss else []) + climb_pool
            target = next((n for n in candidates if n not in engaged), None)
            if target is not None and deadline is not None:
                reach[target] = min(reach.get(target, deadline.due_ms), deadline.due_ms)
        out.append({
            "rung": name, "label": (rung.label if rung is not None and rung.label else name), "paged": e is not None,
            "paged_ms": e.engaged_ms if e is not None else None, "progress": e.progress.value if e is not None and e.progress else None,
            "waits_for_answer": e is not None and e.progress is None and state.stopped is None and name != CONSOLE_RUNG,
            "repeats": e.repeats if e is not None else 0, "next_repeat_ms": repeat,
            "next_deadline_ms": deadline.due_ms if deadline is not None else None,
            "next_deadline_state": deadline.field_state.value if deadline is not None and deadline.field_state else None,
            "climbs_to": target, "climbs_at_ms": deadline.due_ms if deadline is not None and target is not None else None,
            "missed": [m.value for m in e.missed] if e is not None else [],
        })
    verify = next((t.due_ms for t in pending if t.kind is TimerKind.VERIFY), None)
    if verify is not None and policy is not None:
        for name in policy.verify_escalate_to:
            if name not in engaged:
                reach[name] = min(reach.get(name, verify), verify)
    for row in out:
        if not row["paged"]:
            row["reached_at_ms"] = reach.get(row["rung"])
    return out
