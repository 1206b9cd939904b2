"""An alarm as a person reads it on the board and the live feed: the stored record plus the names of its place."""

from __future__ import annotations

from typing import Any

from backend.alarms.store import AlarmRecord
from backend.sites.model import SiteDirectory

__all__ = ["alarm_view", "named"]


def alarm_view(a: AlarmRecord, sites: SiteDirectory | None) -> dict[str, Any]:
    """An alarm as the board shows it: the record plus names a person reads."""
    return named(a.as_json(), sites)


def named(out: dict[str, Any], sites: SiteDirectory | None) -> dict[str, Any]:
    """A record's JSON (`AlarmRecord.as_json`, or backend.alarms.store.record_json_of) with the names a person reads
    added, in place; returns it."""
    building_id, device_id, household_id = out["building_id"], out["device_id"], out["household_id"]
    b = sites.buildings.get(building_id) if sites and building_id else None
    d = sites.devices.get(device_id) if sites and device_id else None
    g = sites.grids.get(b.grid) if sites and b else None
    hh = sites.households.get(household_id or (d.household if d else "") or "") if sites else None
    unit = out["unit"]
    out.update({
        "building_name": b.name if b else None,
        "grid_id": out["grid_id"] or (g.id if g else None),
        "grid_name": g.name if g else None,
        "unit": unit if unit is not None else (d.unit if d else None),
        "room": hh.room if hh else None,
        "device_kind": d.kind.value if d else None,
        "device_location": d.location if d else None,
        "vulnerable": bool(hh and hh.vulnerable),
    })
    return out
