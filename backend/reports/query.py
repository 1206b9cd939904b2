"""What the stores know about one community's month, read into a `MonthInput` for backend.reports.monthly.

How this works: the month is calendar month in the site's time zone ([the 1st 00:00, the next 1st 00:00) there). One
query reads the community's alarms raised in the month, plus the down-type alarms (comm_lost, gateway_offline,
power_outage) raised before it and not ended before it starts (a camera down since last month is down this month
too); one reads their audit moves (the same selection joined to alarm_audit, so no long id lists); the ladder's pages and answers
come from escalation_log, in chunks of ids (it may live in another database). The community's cameras and device
count come from the site directory. Served by the indexes of migration 0003_history.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, tzinfo
from typing import Any, Final

import sqlalchemy as sa

from backend.alarms.schema import alarm_audit, alarms
from backend.escalation.store import escalation_log
from backend.reports.monthly import DOWN_TYPES, LadderEvent, MonthInput, ReportAlarm
from backend.sites.model import SiteDirectory
from broker.kinds import DeviceKind

__all__ = ["RUNG_LABELS", "month_bounds", "month_input"]

RUNG_LABELS: Final = {"grid_worker": "网格员", "grid_worker_workorder": "网格员（整改）", "fire_station": "微型消防站", "building_leader": "楼栋长",
                      "volunteers_extinguisher": "志愿消防队", "volunteers_first_aid": "志愿者（急救）", "family": "家属/邻居",
                      "duty_officer": "值班员", "duty_console": "值班台"}
_CHUNK: Final = 500


def month_bounds(month: str, tz: tzinfo) -> tuple[int, int]:
    """("2026-11", zone) -> the month's first instant and the next month's, in ms."""
    y, m = (int(x) for x in month.split("-"))
    start = datetime(y, m, 1, tzinfo=tz)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _community_buildings(sites: SiteDirectory | None, community: str) -> list[str]:
    if sites is None:
        return []
    grids = {g.id for g in sites.grids.values() if g.community == community}
    return sorted(b.id for b in sites.buildings.values() if b.grid in grids)


def month_input(engine: sa.Engine, sites: SiteDirectory | None, community: str, month: str, *, tz: tzinfo, now_ms: int,
                ladder_engine: sa.Engine | None = None) -> MonthInput:
    """Blocking: call it off the event loop."""
    start, end = month_bounds(month, tz)
    c = alarms.c
    buildings = _community_buildings(sites, community)
    place = sa.or_(c.community_id == community, c.building_id.in_(buildings))
    down = c.alarm_type.in_(sorted(DOWN_TYPES))
    cols = (c.id, c.alarm_type, c.severity, c.device_id, c.gateway_id, c.building_id, c.drill, c.raised_at_ms, c.updated_ms, c.is_open,
            c.occurrences, c.title)
    # three selections, each on its own index, merged by id: raised in the month (ix_alarm_raised); down-type alarms
    # raised before it and changed since it began (ix_alarm_updated), or still open (few)
    selections = (sa.and_(c.raised_at_ms >= start, c.raised_at_ms < end), sa.and_(c.updated_ms >= start, c.raised_at_ms < start, down),
                  # "+ 0": a range on raised_at_ms would walk every older alarm by its index; the open ones are few, a scan is cheaper
                  sa.and_(c.is_open, (c.raised_at_ms + 0) < start, down))
    a = alarm_audit.c
    moves: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for where in selections:
            for r in conn.execute(sa.select(*cols).where(place, where)):
                found[r.id] = r
        ids = sorted(found)
        for i in range(0, len(ids), _CHUNK):  # by alarm id: the audit log's (alarm_id, seq) index
            q = sa.select(a.alarm_id, a.at_ms, a.move, a.to_state).where(a.alarm_id.in_(ids[i:i + _CHUNK])).order_by(a.alarm_id, a.seq)
            for m in conn.execute(q):
                moves[m.alarm_id].append((int(m.at_ms), str(m.move), str(m.to_state)))
    rows = [found[i] for i in ids]
    report_alarms = [ReportAlarm(r.id, r.alarm_type, r.severity, r.device_id, r.gateway_id, r.building_id, bool(r.drill), int(r.raised_at_ms),
                                 int(r.updated_ms), bool(r.is_open), int(r.occurrences), r.title, tuple(moves.get(r.id, ())))
                     for r in rows]
    ladder: list[LadderEvent] = []
    lad = ladder_engine or engine
    ids = [x.id for x in report_alarms if not x.drill]
    if ids and sa.inspect(lad).has_table("escalation_log"):
        e = escalation_log.c
        with lad.connect() as conn:
            for i in range(0, len(ids), _CHUNK):
                q = sa.select(e.alarm_id, e.kind, e.rung, e.at_ms, e.detail, e.field_state).where(
                    e.alarm_id.in_(ids[i:i + _CHUNK]), e.kind.in_(["paged", "observed", "response", "callback_opened", "callback_outcome", "callback_expired"]))
                ladder += [LadderEvent(r.alarm_id, r.kind, r.rung, int(r.at_ms), r.detail or "", r.field_state) for r in conn.execute(q)]
    cameras: list[tuple[str, str, str]] = []
    devices = 0
    if sites is not None:
        inside = set(buildings)
        for d in sites.devices.values():
            if d.building in inside:
                devices += 1
                if d.kind is DeviceKind.CAMERA:
                    cameras.append((d.id, d.gateway, d.building))
    name = sites.communities[community].name if sites is not None and community in sites.communities else community
    return MonthInput(community, name, month, start, end, now_ms, report_alarms, ladder, sorted(cameras), devices, dict(RUNG_LABELS))
