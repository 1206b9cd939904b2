"""Who sits in a seat now: the ladder's `Roster`, answered from the site directory's shifts.

How this works: shifts are indexed by (seat, scope) once. `fill(seat, where, at_ms)` turns `at_ms` into the
community's local weekday and minute (China has one time zone, UTC+8, and no daylight saving; the offset is
a setting) and asks each shift `covers(weekday, minute)`. Holders who are away (`mark_away`: leave, sickness,
a phone that is off) are skipped; if every holder of a covering shift is away, the shifts' deputies stand in
(the fill says so, and the ladder records it); if nobody is left, the seat is VACANT and the ladder climbs.

Overrides a person made (backend/duty: leave, sickness, a swap, a one-off assignment, each with a time range)
sit over the site file's shifts: `set_overrides` replaces the whole set at once (the duty service calls it after
every committed change, and `refresh`, when set, lets it reload a set another process changed). At `at_ms`: an
`assign` override in force for (seat, scope) names who holds the seat, before any shift; a holder on `leave`,
`sick` or `away` is skipped like `mark_away`; a holder with a substitute (a `swap`, or leave naming one) is
replaced by the substitute, and the fill says who stands in for whom (Fill.DEPUTY when every holder was replaced).

Volunteers come from every volunteer shift of the community that covers now, filtered by skill, nearest
first by the distance between their home building and the alarm's building on the site plan (volunteers
without a home building come last). Family contacts and neighbours come from the household's `vulnerable`
record, family first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from alerting.directory import Seat
from alerting.ladder.targets import Contact, ContactKind, Fill, SeatFill, Where
from backend.sites.model import Responder, Shift, SiteDirectory

__all__ = ["CHINA_UTC_OFFSET_MIN", "OverrideKind", "RosterOverride", "SiteRoster", "local_week_minute"]

CHINA_UTC_OFFSET_MIN = 8 * 60  # Beijing time, no daylight saving
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)



def local_week_minute(at_ms: int, utc_offset_min: int = CHINA_UTC_OFFSET_MIN) -> tuple[int, int]:
    """(weekday with Monday = 0, minute of the day) in local time."""
    minutes = at_ms // 60_000 + utc_offset_min
    return (minutes // 1440 + _EPOCH_WEEKDAY) % 7, minutes % 1440


class OverrideKind(StrEnum):
    LEAVE = "leave"  # 请假
    SICK = "sick"  # 病假
    AWAY = "away"  # 其他不在岗 (phone off, training...)
    SWAP = "swap"  # 换班: `substitute` takes `responder`'s shifts over the range
    ASSIGN = "assign"  # 临时指定: `substitute` holds (seat, scope) over the range, before any shift

    @property
    def off_duty(self) -> bool:
        """Does this kind take `responder` off duty over its range?"""
        return self is not OverrideKind.ASSIGN


@dataclass(frozen=True, slots=True)
class RosterOverride:
    """One change to who is on duty, over [start_ms, end_ms). Checked for sense by backend.duty before it is stored."""

    id: str
    kind: OverrideKind
    start_ms: int
    end_ms: int
    responder: str | None = None  # who is off (leave, sick, away, swap)
    substitute: str | None = None  # who stands in (swap, assign; optional for leave and sickness)
    seat: Seat | None = None  # assign: the seat; swap/leave: only this seat's shifts (None: every seat)
    scope: str | None = None  # assign: the grid, building, station, team or community
    reason: str = ""

    def in_force(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms


_KIND_ZH = {OverrideKind.LEAVE: "请假", OverrideKind.SICK: "病假", OverrideKind.AWAY: "不在岗", OverrideKind.SWAP: "换班", OverrideKind.ASSIGN: "临时指定"}


@dataclass(frozen=True, slots=True)
class _Away:
    until_ms: int
    why: str


class SiteRoster:
    def __init__(self, directory: SiteDirectory, utc_offset_min: int = CHINA_UTC_OFFSET_MIN) -> None:
        self.directory = directory
        self.utc_offset_min = utc_offset_min
        self._shifts: dict[tuple[Seat, str], list[Shift]] = defaultdict(list)
        for s in directory.shifts:
            self._shifts[(s.seat, s.scope)].append(s)
        self._away: dict[str, _Away] = {}
        self._overrides: tuple[RosterOverride, ...] = ()
        self.refresh: Callable[[], None] | None = None  # called before each fill: reload overrides another process changed

    # -- availability -------------------------------------------------------------------------------------
    def mark_away(self, responder: str, until_ms: int, why: str = "away") -> None:
        if responder not in self.directory.responders:
            raise KeyError(f"no responder {responder!r} in the site directory")
        self._away[responder] = _Away(until_ms, why)

    def mark_back(self, responder: str) -> None:
        self._away.pop(responder, None)

    def set_overrides(self, overrides: Iterable[RosterOverride]) -> None:
        """Replace the stored overrides in one step (the ladder's next fill sees the new set)."""
        self._overrides = tuple(overrides)

    @property
    def overrides(self) -> tuple[RosterOverride, ...]:
        return self._overrides

    def _off(self, responder: str, at_ms: int) -> RosterOverride | None:
        return next((o for o in self._overrides if o.kind.off_duty and o.responder == responder and o.in_force(at_ms)), None)

    def _why_away(self, responder: str, at_ms: int) -> str | None:
        away = self._away.get(responder)
        if away is not None and away.until_ms > at_ms:
            return away.why
        off = self._off(responder, at_ms)
        return None if off is None else _KIND_ZH[off.kind]

    def available(self, responder: str, at_ms: int) -> bool:
        away = self._away.get(responder)
        if away is not None and away.until_ms > at_ms:
            return False
        return self._off(responder, at_ms) is None

    def substitute(self, responder: str, seat: Seat, at_ms: int) -> RosterOverride | None:
        """The override in force that puts someone in `responder`'s place on `seat` now (a swap, or leave naming one)."""
        return next((o for o in self._overrides if o.kind.off_duty and o.responder == responder and o.substitute and o.in_force(at_ms)
                     and (o.seat is None or o.seat is seat)), None)

    def assigned(self, seat: Seat, scope: str, at_ms: int) -> list[RosterOverride]:
        return [o for o in self._overrides if o.kind is OverrideKind.ASSIGN and o.seat is seat and o.scope == scope and o.in_force(at_ms)]

    # -- places ---------------------------------------------------------------------------------------------
    def where(self, *, device: str | None = None, building: str | None = None, household: str | None = None, unit: int | None = None) -> Where:
        """The routing facts of a place, from any of device, household or building."""
        d = self.directory
        if device is not None and device in d.devices:
            dev = d.devices[device]
            building = building or dev.building
            household = household or dev.household
            unit = unit if unit is not None else dev.unit
        hh = d.households.get(household) if household else None
        if hh is not None:
            building = building or hh.building
            unit = unit if unit is not None else hh.unit
        grid, community = d.place_of_building(building)
        vulnerable = hh is not None and hh.vulnerable is not None
        return Where(community, grid, building, unit, household, vulnerable)

    def _community(self, where: Where) -> str | None:
        if where.community:
            return where.community
        if len(self.directory.communities) == 1:
            return next(iter(self.directory.communities))
        return None

    # -- the Roster protocol ----------------------------------------------------------------------------------
    def fill(self, seat: Seat, where: Where, at_ms: int, *, skill: str | None = None, exclude: frozenset[str] = frozenset()) -> SeatFill:
        if self.refresh is not None:
            self.refresh()
        if seat is Seat.VOLUNTEERS:
            return self._volunteers(where, at_ms, skill, exclude)
        if seat is Seat.FAMILY:
            return self._family(where)
        scope: str | None
        if seat is Seat.GRID_WORKER:
            scope = where.grid
        elif seat is Seat.BUILDING_LEADER:
            scope = where.building
        elif seat is Seat.FIRE_STATION:
            scope = self._station(where)
        else:
            scope = self._community(where)
        if scope is None:
            return SeatFill((), Fill.VACANT, f"{seat.value}: the alarm's place names no {seat.value} scope")
        return self._seat(seat, scope, at_ms, exclude)

    def fill_scope(self, seat: Seat, scope: str, at_ms: int) -> SeatFill:
        """Who holds (seat, scope) at `at_ms`, overrides applied: the roster view of the console (backend/duty)."""
        if self.refresh is not None:
            self.refresh()
        if seat is Seat.VOLUNTEER:
            ids = [s.responder for s in self._covering(Seat.VOLUNTEER, scope, at_ms) if self.available(s.responder, at_ms)]
            people = [self.directory.responders[r] for r in dict.fromkeys(ids)]
            return SeatFill(tuple(self._contact(r) for r in people), Fill.HOLDER if people else Fill.VACANT)
        return self._seat(seat, scope, at_ms, frozenset())

    def rostered(self, seat: Seat, scope: str, at_ms: int) -> list[str]:
        """Who the site file's shifts put in (seat, scope) at `at_ms`, before any override."""
        return list(dict.fromkeys(s.responder for s in self._covering(seat, scope, at_ms)))

    def _covering(self, kind: Seat, scope: str, at_ms: int) -> list[Shift]:
        weekday, minute = local_week_minute(at_ms, self.utc_offset_min)
        return [s for s in self._shifts.get((kind, scope), ()) if s.covers(weekday, minute)]

    def _contact(self, r: Responder) -> Contact:
        return Contact(r.id, r.name, ContactKind.RESPONDER, r.phone)

    def _seat(self, kind: Seat, scope: str, at_ms: int, exclude: frozenset[str]) -> SeatFill:
        people = self.directory.responders
        assigned = [o.substitute for o in self.assigned(kind, scope, at_ms)
                    if o.substitute and o.substitute in people and o.substitute not in exclude and self.available(o.substitute, at_ms)]
        if assigned:
            return SeatFill(tuple(self._contact(people[r]) for r in dict.fromkeys(assigned)), Fill.HOLDER)
        covering = self._covering(kind, scope, at_ms)
        if not covering:
            return SeatFill((), Fill.VACANT, f"{kind.value} {scope}: no shift covers this time")
        holders: list[str] = []
        standing_in: list[tuple[str, RosterOverride]] = []  # (the holder replaced, the override)
        for s in covering:
            sub = self.substitute(s.responder, kind, at_ms)
            if sub is not None and sub.substitute in people:
                if sub.substitute not in exclude and self.available(sub.substitute, at_ms):
                    standing_in.append((s.responder, sub))
            elif s.responder not in exclude and self.available(s.responder, at_ms):
                holders.append(s.responder)
        if holders or standing_in:
            names = list(dict.fromkeys([*holders, *(o.substitute for _r, o in standing_in if o.substitute)]))
            contacts = tuple(self._contact(people[r]) for r in names)
            if holders:
                return SeatFill(contacts, Fill.HOLDER)
            replaced = ", ".join(f"{r} ({_KIND_ZH[o.kind]})" for r, o in standing_in)
            subs = ", ".join(dict.fromkeys(o.substitute for _r, o in standing_in if o.substitute))
            return SeatFill(contacts, Fill.DEPUTY, f"{kind.value} {scope}: {replaced}; deputy {subs} stands in")
        away = ", ".join(f"{s.responder} ({why})" for s in covering if (why := self._why_away(s.responder, at_ms)) is not None)
        deputies = [s.deputy for s in covering if s.deputy and s.deputy not in exclude and self.available(s.deputy, at_ms)]
        if deputies:
            names = list(dict.fromkeys(deputies))
            return SeatFill(tuple(self._contact(self.directory.responders[r]) for r in names), Fill.DEPUTY,
                            f"{kind.value} {scope}: {away or 'holder unavailable'}; deputy {', '.join(names)} stands in")
        return SeatFill((), Fill.VACANT, f"{kind.value} {scope}: {away or 'holder unavailable'}; no deputy available")

    def _station(self, where: Where) -> str | None:
        community = self._community(where)
        stations = [s for s in self.directory.fire_stations.values() if community is None or s.community == community]
        if not stations:
            return None
        b = self.directory.buildings.get(where.building) if where.building else None
        if b is None:
            return stations[0].id
        return min(stations, key=lambda s: math.hypot(s.x - b.x, s.y - b.y)).id

    def _volunteers(self, where: Where, at_ms: int, skill: str | None, exclude: frozenset[str]) -> SeatFill:
        community = self._community(where)
        teams = [t.id for t in self.directory.volunteer_teams.values() if community is None or t.community == community]
        ids: dict[str, None] = {}
        for team in teams:
            for s in self._covering(Seat.VOLUNTEER, team, at_ms):
                ids[s.responder] = None
        d = self.directory
        people = [d.responders[r] for r in ids if r not in exclude and self.available(r, at_ms)]
        if skill is not None:
            people = [r for r in people if skill in r.skills]
        origin = d.buildings.get(where.building) if where.building else None

        def distance(r: Responder) -> tuple[float, str]:
            home = d.buildings.get(r.building) if r.building else None
            if origin is None or home is None:
                return (math.inf, r.id)
            return (math.hypot(home.x - origin.x, home.y - origin.y), r.id)

        people.sort(key=distance)
        if not people:
            return SeatFill((), Fill.VACANT, f"volunteers: nobody on duty now with skill {skill or 'any'}")
        return SeatFill(tuple(self._contact(r) for r in people), Fill.HOLDER)

    def _family(self, where: Where) -> SeatFill:
        hh = self.directory.households.get(where.household) if where.household else None
        if hh is None or hh.vulnerable is None:
            return SeatFill((), Fill.VACANT, "no vulnerable household on record for this alarm")
        v = hh.vulnerable
        contacts = [Contact(f"family:{hh.id}:{i}", f"{c.name}（{c.relation}）", ContactKind.FAMILY, c.phone) for i, c in enumerate(v.family_contacts)]
        contacts += [Contact(f"neighbour:{hh.id}:{i}", f"{c.name}（{c.relation}）", ContactKind.NEIGHBOUR, c.phone) for i, c in enumerate(v.neighbours)]
        if not contacts:
            return SeatFill((), Fill.VACANT, f"household {hh.id}: no family contact or neighbour on record")
        return SeatFill(tuple(contacts), Fill.HOLDER)
