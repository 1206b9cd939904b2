"""Who sits in a seat now: the ladder's `Roster`, answered from the site directory's shifts.

How this works: shifts are indexed by (seat, scope) once. `fill(seat, where, at_ms)` turns `at_ms` into the
community's local weekday and minute (China has one time zone, UTC+8, and no daylight saving; the offset is
a setting) and asks each shift `covers(weekday, minute)`. Holders who are away (`mark_away`: leave, sickness,
a phone that is off) are skipped; if every holder of a covering shift is away, the shifts' deputies stand in
(the fill says so, and the ladder records it); if nobody is left, the seat is VACANT and the ladder climbs.

Volunteers come from every volunteer shift of the community that covers now, filtered by skill, nearest
first by the distance between their home building and the alarm's building on the site plan (volunteers
without a home building come last). Family contacts and neighbours come from the household's `vulnerable`
record, family first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from alerting.directory import Seat
from alerting.ladder.targets import Contact, ContactKind, Fill, SeatFill, Where
from backend.sites.model import Responder, Shift, SiteDirectory

__all__ = ["CHINA_UTC_OFFSET_MIN", "SiteRoster", "local_week_minute"]

CHINA_UTC_OFFSET_MIN = 8 * 60  # Beijing time, no daylight saving
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)



def local_week_minute(at_ms: int, utc_offset_min: int = CHINA_UTC_OFFSET_MIN) -> tuple[int, int]:
    """(weekday with Monday = 0, minute of the day) in local time."""
    minutes = at_ms // 60_000 + utc_offset_min
    return (minutes // 1440 + _EPOCH_WEEKDAY) % 7, minutes % 1440


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

    # -- availability -------------------------------------------------------------------------------------
    def mark_away(self, responder: str, until_ms: int, why: str = "away") -> None:
        if responder not in self.directory.responders:
            raise KeyError(f"no responder {responder!r} in the site directory")
        self._away[responder] = _Away(until_ms, why)

    def mark_back(self, responder: str) -> None:
        self._away.pop(responder, None)

    def available(self, responder: str, at_ms: int) -> bool:
        away = self._away.get(responder)
        return away is None or away.until_ms <= at_ms

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

    def _covering(self, kind: Seat, scope: str, at_ms: int) -> list[Shift]:
        weekday, minute = local_week_minute(at_ms, self.utc_offset_min)
        return [s for s in self._shifts.get((kind, scope), ()) if s.covers(weekday, minute)]

    def _contact(self, r: Responder) -> Contact:
        return Contact(r.id, r.name, ContactKind.RESPONDER, r.phone)

    def _seat(self, kind: Seat, scope: str, at_ms: int, exclude: frozenset[str]) -> SeatFill:
        covering = self._covering(kind, scope, at_ms)
        if not covering:
            return SeatFill((), Fill.VACANT, f"{kind.value} {scope}: no shift covers this time")
        holders = [s.responder for s in covering if s.responder not in exclude and self.available(s.responder, at_ms)]
        if holders:
            return SeatFill(tuple(self._contact(self.directory.responders[r]) for r in dict.fromkeys(holders)), Fill.HOLDER)
        away = ", ".join(f"{s.responder} ({self._away[s.responder].why})" for s in covering if s.responder in self._away)
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
