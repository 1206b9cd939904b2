"""What a responder's phone shows: who they are, their open tasks, and whether a move of theirs may be made.

How this works: a responder is a contact of the ladder (`alerting.ladder.Contact`): a person of the site
directory (`Responder`: grid worker, building leader, fire station, volunteer, duty officer) or a household's
family contact or neighbour (`family:<household>:<n>`). `person_of` turns the contact id into a `Person`: name,
role, community, and whether their role may read vulnerable residents' notes (the console's own rule,
`Capability.VIEW_VULNERABLE` of `backend.api.auth.ROLE_CAPABILITIES`: volunteers, family and neighbours may not).

Their open tasks (`alarm_task`, `order_task`), newest first, are:
- the open alarms of their community whose ladder paged them in its current round (a family contact: the alarm of
  their own household), with the moves of the lifecycle they may still make (`backend.api.responses.next_move_refusal`
  over what they answered in that round: 收到 / 出发 / 到场 / 处置完成, each once and only forward);
- the work orders assigned to them that are not done (已派单 / 整改中), with 开始整改 / 整改完成.
Each task carries its place in words (community, building, unit, floor, household, the device's spot), a way
there (`navigation`), the duty room's number and, for roles allowed, the resident's notes, key holder and family
contacts as tel: links.

Navigation: the directory holds no geographic coordinates of a building, only its position on the community's
site plan (x metres east, y metres north of the plan's origin). So the `geo:` link is a search by address
(`geo:0,0?q=<community> <building>`, RFC 5870 with the Android `q` query, which phone map apps open); a building
that carries `lat` / `lon` (a directory that adds them) gets `geo:<lat>,<lon>` instead. The site-plan position is
given in words and as the community's plan (every building's rectangle) for the phone to draw.

Nothing here writes: the moves go through the alarm service (`backend.api.responses.record_answer`) and the
work-order service, called by backend/api/responder.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from alerting.ladder import EscalationState
from alerting.workorders import OrderState
from backend.alarms.schema import alarms
from backend.alarms.store import AlarmRecord, AlarmStore
from backend.api.auth import ROLE_CAPABILITIES, Capability
from backend.api.responses import ANSWER_ORDER, ANSWERS, next_move_refusal
from backend.sites.model import Role, SiteDirectory
from backend.store.users import UserRole
from backend.workorders import WorkOrder

__all__ = ["ORDER_MOVES", "ROLE_ZH", "Person", "alarm_task", "navigation", "open_alarms_of", "order_is_mine", "order_task", "paged", "person_of", "place_words"]

ROLE_ZH: Final[dict[str, str]] = {
    Role.GRID_WORKER: "网格员", Role.BUILDING_LEADER: "楼栋长", Role.UNIT_LEADER: "单元长", Role.FIRE_STATION_HEAD: "微型消防站站长",
    Role.FIRE_STATION_MEMBER: "微型消防站队员", Role.VOLUNTEER: "志愿者", Role.DUTY_OFFICER: "值班员", "family": "家属", "neighbour": "邻居",
}
# The directory's roles as the console's login roles, for the console's own rule on who reads residents' notes.
_AS_LOGIN: Final[dict[Role, UserRole]] = {
    Role.GRID_WORKER: UserRole.GRID_WORKER, Role.BUILDING_LEADER: UserRole.BUILDING_LEADER, Role.UNIT_LEADER: UserRole.BUILDING_LEADER,
    Role.FIRE_STATION_HEAD: UserRole.MICRO_FIRE_STATION, Role.FIRE_STATION_MEMBER: UserRole.MICRO_FIRE_STATION,
    Role.VOLUNTEER: UserRole.VOLUNTEER, Role.DUTY_OFFICER: UserRole.DUTY_OFFICER,
}
# The field moves of a work order a responder makes from the phone (assigning, re-inspecting, closing are the office's).
ORDER_MOVES: Final[dict[str, str]] = {"start": "开始整改", "finish": "整改完成"}
_ORDER_OPEN: Final = (OrderState.ASSIGNED, OrderState.IN_PROGRESS)
_STATE_ZH: Final[dict[str, str]] = {
    "raised": "待确认", "notified": "已通知", "acknowledged": "已确认", "en_route": "已出发", "on_scene": "已到场", "handled": "已处置",
    "closed": "已关闭", "false_alarm": "误报", "assigned": "已派单", "in_progress": "整改中", "done": "整改完成，待复查",
}
_SEVERITY_ZH: Final[dict[str, str]] = {"critical": "紧急", "major": "重要", "minor": "一般", "info": "提示"}


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    role: str  # a directory Role, or "family" / "neighbour"
    community: str | None  # None: a family contact or neighbour (their household's alarm only)
    household: str | None = None  # a family contact's or neighbour's household
    sees_vulnerable: bool = False

    @property
    def role_zh(self) -> str:
        return ROLE_ZH.get(self.role, self.role)


def person_of(contact_id: str, sites: SiteDirectory | None) -> Person | None:
    """The person behind a ladder contact id; None when the directory knows nobody by it."""
    if sites is None:
        return None
    r = sites.responders.get(contact_id)
    if r is not None:
        login = _AS_LOGIN.get(r.role)
        sees = login is not None and Capability.VIEW_VULNERABLE in ROLE_CAPABILITIES[login]
        return Person(r.id, r.name, r.role.value, r.community, sees_vulnerable=sees)
    kind, _, rest = contact_id.partition(":")
    household, _, index = rest.rpartition(":")
    hh = sites.households.get(household)
    if kind not in ("family", "neighbour") or hh is None or hh.vulnerable is None or not index.isdigit():
        return None
    people = hh.vulnerable.family_contacts if kind == "family" else hh.vulnerable.neighbours
    if int(index) >= len(people):
        return None
    return Person(contact_id, people[int(index)].name, kind, None, household=household)


def paged(state: EscalationState | None, contact_id: str) -> bool:
    """Did the alarm's ladder page this person in its current round?"""
    return state is not None and any(e.has(contact_id) or contact_id in e.offered for e in state.engagements)


def _floor(room: str | None) -> int | None:
    """The floor of a Chinese room number (1302: 13th floor, 802: 8th); None when it is not one."""
    return int(room[:-2]) if room and room.isdigit() and len(room) >= 3 and int(room[:-2]) > 0 else None


def place_words(sites: SiteDirectory | None, *, building: str | None, unit: int | None, household: str | None,
                device: str | None = None) -> dict[str, Any]:
    """The place in words: community, building, unit, floor, household, and the device's spot."""
    b = sites.buildings.get(building or "") if sites else None
    d = sites.devices.get(device or "") if sites else None
    hh = sites.households.get(household or (d.household if d else None) or "") if sites else None
    g = sites.grids.get(b.grid) if sites and b else None
    community = sites.communities.get(g.community) if sites and g else None
    unit = unit if unit is not None else (hh.unit if hh else d.unit if d else None)
    floor = _floor(hh.room if hh else None)
    parts = [community.name if community else None, g.name if g else None, b.name if b else building,
             f"{unit}单元" if unit is not None else None, f"{floor}层" if floor is not None else None,
             f"{hh.room}室" if hh else None, d.location if d and d.location else None]
    return {"community": community.name if community else None, "community_id": community.id if community else None,
            "grid": g.name if g else None, "building": b.name if b else building, "building_id": building, "unit": unit, "floor": floor,
            "room": hh.room if hh else None, "household_id": hh.id if hh else household, "spot": d.location if d else None,
            "text": " ".join(p for p in parts if p)}


def navigation(sites: SiteDirectory | None, building: str | None) -> dict[str, Any]:
    """A geo: link to the building and its position on the community's site plan (what the directory holds)."""
    b = sites.buildings.get(building or "") if sites else None
    if sites is None or b is None:
        return {"geo": None, "plan": None, "text": "目录中没有这栋楼的位置，请致电值班室问路"}
    g = sites.grids.get(b.grid)
    community = sites.communities.get(g.community) if g else None
    lat, lon = getattr(b, "lat", None), getattr(b, "lon", None)
    label = " ".join(x for x in (community.name if community else "", b.name) if x)
    geo = f"geo:{lat},{lon}?q={lat},{lon}({quote(label)})" if isinstance(lat, float) and isinstance(lon, float) else f"geo:0,0?q={quote(label)}"
    same = [o for o in sites.buildings.values() if (sites.grids[o.grid].community if o.grid in sites.grids else None) == (g.community if g else None)]
    plan = {"target": b.id, "buildings": [{"id": o.id, "name": o.name, "x": o.x, "y": o.y, "w": o.width, "d": o.depth} for o in same]}
    return {"geo": geo, "has_coordinates": not geo.startswith("geo:0,0"), "plan": plan,
            "text": f"小区平面图：{b.name}位于东 {b.x:.0f} 米、北 {b.y:.0f} 米（{community.name if community else ''}平面图坐标）"}


def _calls(sites: SiteDirectory | None, household: str | None, duty_phone: str | None, *, sees_vulnerable: bool) -> tuple[list[dict[str, str]], Any]:
    calls = [{"label": "值班室", "tel": duty_phone}] if duty_phone else []
    hh = sites.households.get(household or "") if sites else None
    if hh is None or hh.vulnerable is None:
        return calls, None
    if not sees_vulnerable:
        return calls, {"hidden": True}
    v = hh.vulnerable
    keeper = sites.responders.get(v.key_holder or "") if sites else None
    key = {"name": keeper.name, "role": ROLE_ZH.get(keeper.role, keeper.role), "tel": keeper.phone} if keeper else (
        {"name": v.key_holder, "role": "", "tel": None} if v.key_holder else None)
    if key and key["tel"]:
        calls.append({"label": f"钥匙保管人 {key['name']}", "tel": key["tel"]})
    calls += [{"label": f"{f.relation} {f.name}", "tel": f.phone} for f in v.family_contacts]
    calls += [{"label": f"{f.relation} {f.name}", "tel": f.phone} for f in v.neighbours]
    resident = {"hidden": False, "lives_alone": v.lives_alone, "mobility": v.mobility, "notes": v.notes, "key_holder": key,
                "family": [{"name": f.name, "relation": f.relation, "tel": f.phone} for f in v.family_contacts],
                "neighbours": [{"name": f.name, "relation": f.relation, "tel": f.phone} for f in v.neighbours]}
    return calls, resident


def _local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%m-%d %H:%M")


def alarm_task(a: AlarmRecord, state: EscalationState, made: Sequence[str], person: Person, sites: SiteDirectory | None, *,
               duty_phone: str | None, tz: ZoneInfo) -> dict[str, Any]:
    """One alarm on the phone, with the moves this person may still make in the ladder's current round."""
    calls, resident = _calls(sites, a.household_id, duty_phone, sees_vulnerable=person.sees_vulnerable)
    moves = [{"move": m.value, "label": ANSWERS[m], "done": m.value in made, "open": next_move_refusal(made, m.value) is None}
             for m in ANSWER_ORDER]
    return {"kind": "alarm", "id": a.id, "title": a.title or a.alarm_type, "alarm_type": a.alarm_type, "drill": a.drill,
            "severity": a.severity, "severity_zh": _SEVERITY_ZH.get(a.severity, a.severity), "state": a.state,
            "state_zh": _STATE_ZH.get(a.state, a.state), "life_safety": a.life_safety, "at_ms": a.raised_at_ms,
            "at_local": _local(a.raised_at_ms, tz), "round": state.round,
            "place": place_words(sites, building=a.building_id, unit=a.unit, household=a.household_id, device=a.device_id),
            "navigation": navigation(sites, a.building_id), "resident": resident, "calls": calls, "moves": moves}


def order_task(o: WorkOrder, person: Person, sites: SiteDirectory | None, *, duty_phone: str | None, tz: ZoneInfo) -> dict[str, Any]:
    """One work order on the phone (隐患整改), with 开始整改 while assigned and 整改完成 while in progress."""
    calls, _ = _calls(sites, None, duty_phone, sees_vulnerable=person.sees_vulnerable)
    open_move = "start" if o.state is OrderState.ASSIGNED else "finish" if o.state is OrderState.IN_PROGRESS else None
    return {"kind": "workorder", "id": o.id, "title": o.title, "description": o.description, "drill": o.drill, "severity": o.severity,
            "severity_zh": _SEVERITY_ZH.get(o.severity, o.severity), "state": o.state.value, "state_zh": _STATE_ZH.get(o.state.value, o.state.value),
            "at_ms": o.created_ms, "at_local": _local(o.created_ms, tz), "due_local": _local(o.due_ms, tz),
            "place": place_words(sites, building=o.building_id, unit=None, household=None, device=o.device_id),
            "navigation": navigation(sites, o.building_id), "resident": None, "calls": calls,
            "moves": [{"move": m, "label": label, "done": False, "open": m == open_move} for m, label in ORDER_MOVES.items()]}


def open_alarms_of(store: AlarmStore, person: Person, *, limit: int = 500) -> list[AlarmRecord]:
    """The open alarms within a person's reach, newest first: their community's (a family contact, a neighbour: their
    household's), read by the community's own index, so a street's other open alarms do not crowd them out."""
    if person.community is not None:
        where = alarms.c.community_id == person.community
    elif person.household is not None:
        where = alarms.c.household_id == person.household
    else:
        return []
    q = (sa.select(*[alarms.c[f] for f in AlarmRecord.__slots__]).where(where, alarms.c.is_open)
         .order_by(alarms.c.raised_at_ms.desc()).limit(limit))
    with store.engine.connect() as conn:
        return [AlarmRecord(**row._mapping) for row in conn.execute(q)]


def order_is_mine(o: WorkOrder, person: Person) -> bool:
    return o.assignee_id == person.id and o.state in _ORDER_OPEN
