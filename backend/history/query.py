"""The alarm history: everything the store keeps (GB 50440: at least a year), filtered, paged newest first.

How this works: one SQL query over the `alarms` table (SQLAlchemy Core, SQLite or PostgreSQL), built from a
`HistoryFilter` and the caller's territory. Pages are keyset pages on (raised_at_ms, id) descending, served by the
index `ix_alarm_raised_id` (migration 0003_history): a page deep in a year of alarms costs what the first page
costs, and rows raised while a person pages never shift or repeat a page. The cursor is the last row's
"<raised_at_ms>.<id>".

Filters: time range (raised in [from, to)), community, grid, building, alarm type(s), severity, state, drill, false
alarm (ever moved to `false_alarm` in its audit log, so an archived false alarm is still one), and a text search
over the alarm's words (title, detail, device, gateway, household, id) and place words (a building, grid or
community whose name holds the text, from the site directory). Territory is SQL too (the board's rule: building
in the territory's buildings, else grid, else community), and every row is checked again with
`Territory.covers`, so nothing outside the caller's territory is ever returned.

`iter_rows` walks the same query page by page for the exports, so a file holds exactly the rows the list shows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from backend.alarms.schema import alarm_audit, alarms
from backend.errors import BackendError
from backend.sites.model import SiteDirectory

if TYPE_CHECKING:  # backend.api imports this module: the territory is only named here
    from backend.api.auth import Territory

__all__ = ["MAX_PAGE", "BadCursor", "HistoryFilter", "HistoryPage", "HistoryRow", "conditions", "count", "iter_rows", "known_types", "page",
           "parse_cursor", "territory_clause"]

MAX_PAGE: Final = 500  # rows per page: the console shows 50; an export walks pages of this size
C = alarms.c
_FIELDS: Final = ("id", "alarm_type", "severity", "state", "title", "life_safety", "device_id", "gateway_id", "building_id", "unit",
                  "household_id", "grid_id", "community_id", "drill", "occurrences", "first_seen_ms", "last_seen_ms", "raised_at_ms",
                  "updated_ms", "detail", "is_open")


class BadCursor(BackendError, ValueError):
    """The `after` cursor is not one this API gave out."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__(f"bad cursor {cursor!r}")


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    from_ms: int | None = None  # raised at or after
    to_ms: int | None = None  # raised before
    community: str | None = None
    grid: str | None = None
    building: str | None = None
    kinds: tuple[str, ...] = ()  # alarm types
    severity: str | None = None
    state: str | None = None
    drill: bool | None = None
    false_alarm: bool | None = None
    text: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {f: (list(v) if isinstance(v, tuple) else v) for f in self.__slots__ if (v := getattr(self, f)) not in (None, ())}


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: str
    alarm_type: str
    severity: str
    state: str
    title: str
    life_safety: bool
    device_id: str | None
    gateway_id: str | None
    building_id: str | None
    unit: int | None
    household_id: str | None
    grid_id: str | None
    community_id: str | None
    drill: bool
    occurrences: int
    first_seen_ms: int
    last_seen_ms: int
    raised_at_ms: int
    updated_ms: int
    detail: str | None
    is_open: bool
    was_false: bool


@dataclass(frozen=True, slots=True)
class HistoryPage:
    rows: list[HistoryRow]
    next_cursor: str | None  # None: this was the last page
    filters: HistoryFilter = field(default_factory=HistoryFilter)


def territory_clause(territory: Territory) -> Any:
    """The territory as SQL (the board's rule); None when it holds nothing; sa.true() for everywhere."""
    if territory.everywhere:
        return sa.true()
    ors: list[Any] = []
    if territory.buildings is not None:
        ors.append(C.building_id.in_(sorted(territory.buildings)))
    if territory.grids is not None:
        ors.append(C.grid_id.in_(sorted(territory.grids)))
    if territory.kind == "community" and territory.scope:
        ors.append(C.community_id == territory.scope)
    return sa.or_(*ors) if ors else None


def _like(text: str) -> str:
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _place_matches(sites: SiteDirectory | None, text: str) -> tuple[list[str], list[str], list[str], bool]:
    """Buildings, grids and communities named exactly the text (and True), else those whose name holds it (and False)."""
    if sites is None:
        return [], [], [], False
    t = text.strip().lower()

    names = ({b.id: b.name for b in sites.buildings.values()}, {g.id: g.name for g in sites.grids.values()},
             {c.id: c.name for c in sites.communities.values()})
    exact = tuple([i for i, n in kind.items() if n.lower() == t] for kind in names)
    if any(exact):
        return exact[0], exact[1], exact[2], True
    blds, grids, comms = ([i for i, n in kind.items() if t in n.lower()] for kind in names)
    return blds, grids, comms, False


def _buildings_of(sites: SiteDirectory | None, *, grid: str | None = None, community: str | None = None) -> list[str]:
    if sites is None:
        return []
    if grid is not None:
        return sorted(b.id for b in sites.buildings.values() if b.grid == grid)
    grids = {g.id for g in sites.grids.values() if g.community == community}
    return sorted(b.id for b in sites.buildings.values() if b.grid in grids)


def conditions(f: HistoryFilter, sites: SiteDirectory | None) -> list[Any]:
    """The filter as SQL conditions on `alarms` (territory apart)."""
    out: list[Any] = []
    if f.from_ms is not None:
        out.append(C.raised_at_ms >= f.from_ms)
    if f.to_ms is not None:
        out.append(C.raised_at_ms < f.to_ms)
    if f.community is not None:
        out.append(sa.or_(C.community_id == f.community, C.building_id.in_(_buildings_of(sites, community=f.community))))
    if f.grid is not None:
        out.append(sa.or_(C.grid_id == f.grid, C.building_id.in_(_buildings_of(sites, grid=f.grid))))
    if f.building is not None:
        out.append(C.building_id == f.building)
    if f.kinds:
        out.append(C.alarm_type.in_(list(f.kinds)))
    if f.severity is not None:
        out.append(C.severity == f.severity)
    if f.state is not None:
        out.append(C.state == f.state)
    if f.drill is not None:
        out.append(C.drill == f.drill)
    if f.false_alarm is not None:
        ever_false = sa.exists().where(alarm_audit.c.alarm_id == C.id, alarm_audit.c.to_state == "false_alarm")
        out.append(ever_false if f.false_alarm else ~ever_false)
    if f.text:
        pattern = _like(f.text)
        blds, grids, comms, exact = _place_matches(sites, f.text)
        # a place named exactly ("3号楼") means that place, not every title holding the words (13号楼, 23号楼...)
        words = [] if exact else [sa.func.lower(col).like(pattern, escape="\\") for col in (C.title, C.detail, C.device_id, C.gateway_id,
                                                                                         C.household_id, C.id, C.building_id)]
        if blds:
            words.append(C.building_id.in_(blds))
        if grids:
            words.append(C.grid_id.in_(grids))
            words.append(C.building_id.in_([b for g in grids for b in _buildings_of(sites, grid=g)]))
        if comms:
            words.append(C.community_id.in_(comms))
        out.append(sa.or_(*words))
    return out


def _was_false() -> Any:
    return sa.exists().where(alarm_audit.c.alarm_id == C.id, alarm_audit.c.to_state == "false_alarm").label("was_false")


def parse_cursor(cursor: str) -> tuple[int, str]:
    raised, sep, alarm_id = cursor.partition(".")
    if not sep or not raised.isdigit() or not alarm_id or len(cursor) > 120:
        raise BadCursor(cursor)
    return int(raised), alarm_id


def _select(f: HistoryFilter, territory: Territory, sites: SiteDirectory | None, after: tuple[int, str] | None, limit: int) -> Any:
    where = territory_clause(territory)
    if where is None:
        return None
    q = sa.select(*[C[n] for n in _FIELDS], _was_false()).where(where, *conditions(f, sites))
    if after is not None:
        raised, alarm_id = after
        q = q.where(sa.or_(C.raised_at_ms < raised, sa.and_(C.raised_at_ms == raised, C.id < alarm_id)))
    return q.order_by(C.raised_at_ms.desc(), C.id.desc()).limit(limit)


def _fetch(conn: sa.Connection, q: Any, territory: Territory) -> tuple[list[HistoryRow], tuple[int, str] | None, int]:
    raw = conn.execute(q).all()
    last = (int(raw[-1].raised_at_ms), str(raw[-1].id)) if raw else None
    rows = [HistoryRow(**{**r._mapping, "was_false": bool(r.was_false)}) for r in raw]
    return [r for r in rows if territory.covers(r.building_id, r.grid_id, r.community_id)], last, len(raw)


def page(engine: sa.Engine, f: HistoryFilter, territory: Territory, sites: SiteDirectory | None, *, after: str | None = None,
         limit: int = 50) -> HistoryPage:
    """One page, newest first, after the cursor (None: the newest). Blocking: call it off the event loop."""
    q = _select(f, territory, sites, parse_cursor(after) if after else None, limit)
    if q is None:
        return HistoryPage([], None, f)
    with engine.connect() as conn:
        rows, last, n = _fetch(conn, q, territory)
    nxt = f"{last[0]}.{last[1]}" if last is not None and n == limit else None
    return HistoryPage(rows, nxt, f)


def iter_rows(engine: sa.Engine, f: HistoryFilter, territory: Territory, sites: SiteDirectory | None, *, batch: int = MAX_PAGE,
              after: str | None = None) -> Iterator[HistoryRow]:
    """Every row of the filter, newest first, a page at a time (one short read per page: no long transaction)."""
    cursor = parse_cursor(after) if after else None
    while True:
        q = _select(f, territory, sites, cursor, batch)
        if q is None:
            return
        with engine.connect() as conn:
            rows, cursor, n = _fetch(conn, q, territory)
        yield from rows
        if n < batch:
            return


def count(engine: sa.Engine, f: HistoryFilter, territory: Territory, sites: SiteDirectory | None) -> int:
    where = territory_clause(territory)
    if where is None:
        return 0
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(alarms).where(where, *conditions(f, sites))).scalar_one())


def known_types(engine: sa.Engine) -> Sequence[str]:
    """The alarm types the store holds (the console's type filter)."""
    with engine.connect() as conn:
        return sorted(str(t) for (t,) in conn.execute(sa.select(C.alarm_type).distinct()))
