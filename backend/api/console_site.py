"""Site routes of the console: the community map with each building's risk, a building's alarms and devices,
and device health (offline devices, low batteries, camera online rate against the 98 % target).

How this works: each request reads the open alarms once (a few hundred rows) and derives everything from them
and the site directory (backend.api.console_views); only what lies in the caller's territory is returned.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel

from backend.api.auth import Auth, Capability, Principal
from backend.api.console_views import CAMERA_TARGET, alarm_view, building_risk, camera_rates, device_health, gateway_rows, query_alarms
from backend.api.deps import ApiDeps
from backend.api.errors import ERRORS
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord

__all__ = ["site_router"]

BuildingId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]


class SiteMap(BaseModel):
    street: str
    communities: list[dict[str, Any]]
    grids: list[dict[str, Any]]
    buildings: list[dict[str, Any]]
    fire_stations: list[dict[str, Any]]
    server_now_ms: int


class BuildingDetail(BaseModel):
    building: dict[str, Any]
    risk: dict[str, Any]
    alarms: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    cameras: dict[str, Any]


class HealthReport(BaseModel):
    camera_target: float
    buildings: list[dict[str, Any]]
    offline: list[dict[str, Any]]
    low_battery: list[dict[str, Any]]
    totals: dict[str, Any]
    gateways: list[dict[str, Any]] = []  # per gateway: devices offline, unknown (未知), not yet commissioned (未上线)


def site_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["site"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 422, 503)})
    viewer = auth.require(Capability.VIEW_ALARMS)

    def directory() -> SiteDirectory:
        if deps.sites is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the site directory is not loaded on this server; ask the administrator")
        return deps.sites

    async def open_alarms(p: Principal) -> list[AlarmRecord]:
        return await asyncio.to_thread(query_alarms, deps.alarms.engine, p.territory, open_only=True, limit=5000)

    @router.get("/site/map", summary="The site plan: grids and buildings (x, y, width, depth in metres) with each building's risk")
    async def site_map(p: Annotated[Principal, Depends(viewer)]) -> SiteMap:
        sites = directory()
        alarms = await open_alarms(p)
        health = device_health(alarms, sites)
        risk = building_risk(alarms, sites, health)
        blds = [b for b in sites.buildings.values() if p.territory.covers(b.id, b.grid)]
        grids = {b.grid for b in blds}
        return SiteMap(
            street=sites.street,
            communities=[{"id": c.id, "name": c.name} for c in sites.communities.values()],
            grids=[{"id": g.id, "name": g.name, "community": g.community} for g in sites.grids.values() if g.id in grids],
            buildings=[{"id": b.id, "name": b.name, "grid": b.grid, "floors": b.floors, "units": b.units, "x": b.x, "y": b.y, "width": b.width,
                        "depth": b.depth, "risk": risk[b.id]} for b in blds],
            fire_stations=[{"id": f.id, "name": f.name, "x": f.x, "y": f.y} for f in sites.fire_stations.values()] if p.territory.everywhere or
            p.territory.kind == "community" else [],
            server_now_ms=deps.clock.now_ms(),
        )

    @router.get("/buildings/{building_id}", summary="A building: its open alarms and its devices with their state")
    async def building(p: Annotated[Principal, Depends(viewer)], building_id: BuildingId) -> BuildingDetail:
        sites = directory()
        b = sites.buildings.get(building_id)
        if b is None or not p.territory.covers(b.id, b.grid):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no building {building_id!r} in your territory; pick one on the map")
        alarms = await open_alarms(p)
        health = device_health(alarms, sites)
        risk = building_risk(alarms, sites, health)[b.id]
        mine = [a for a in alarms if a.building_id == b.id]
        alarming = {a.device_id for a in mine if a.device_id and not a.drill}
        devices: list[dict[str, Any]] = [{"id": d.id, "kind": d.kind.value, "unit": d.unit, "location": d.location, "gateway": d.gateway,
                    "status": "offline" if d.id in health.offline else "alarm" if d.id in alarming
                    else "unknown" if d.id in health.unknown else "low_battery" if d.id in health.low_battery
                    else "fault" if d.id in health.faulty else "ok"} for d in sites.devices_by_building.get(b.id, ())]
        rank = {"alarm": 0, "offline": 1, "unknown": 1, "fault": 2, "low_battery": 3}
        devices.sort(key=lambda d: (rank.get(str(d["status"]), 9), str(d["kind"]), str(d["id"])))
        return BuildingDetail(
            building={"id": b.id, "name": b.name, "grid": b.grid, "grid_name": sites.grids[b.grid].name if b.grid in sites.grids else None,
                      "floors": b.floors, "units": b.units},
            risk=risk, alarms=[alarm_view(a, sites) for a in mine], devices=devices, cameras=camera_rates(sites, health, [b.id])[b.id],
        )

    @router.get("/health/devices", summary="Device health: offline devices, low batteries, camera online rate per building vs 98 %")
    async def health(p: Annotated[Principal, Depends(auth.require(Capability.VIEW_HEALTH))]) -> HealthReport:
        sites = directory()
        alarms = await open_alarms(p)
        h = device_health(alarms, sites)
        blds = [b for b in sites.buildings.values() if p.territory.covers(b.id, b.grid)]
        ids = {b.id for b in blds}
        rates = camera_rates(sites, h, ids)
        rows = []
        for b in blds:
            devs = sites.devices_by_building.get(b.id, ())
            rows.append({"id": b.id, "name": b.name, "grid": b.grid, "devices": len(devs), "offline": sum(1 for d in devs if d.id in h.offline),
                         "low_battery": sum(1 for d in devs if d.id in h.low_battery), **{f"camera_{k}": v for k, v in rates[b.id].items()}})
        rows.sort(key=lambda r: (r["camera_meets_target"], -r["offline"], r["id"]))

        def dev(dev_id: str, why: str) -> dict[str, Any]:
            d = sites.devices[dev_id]
            b = sites.buildings.get(d.building)
            return {"id": d.id, "kind": d.kind.value, "building": d.building, "building_name": b.name if b else d.building, "unit": d.unit,
                    "location": d.location, "why": why}

        offline = [dev(i, w) for i, w in sorted(h.offline.items()) if i in sites.devices and sites.devices[i].building in ids]
        low = [dev(i, "low_battery") for i in sorted(h.low_battery) if i in sites.devices and sites.devices[i].building in ids]
        cams = sum(r["camera_cameras"] for r in rows)
        online = sum(r["camera_online"] for r in rows)
        totals = {"devices": sum(r["devices"] for r in rows), "offline": len(offline), "low_battery": len(low), "cameras": cams,
                  "cameras_online": online, "camera_rate": online / cams if cams else None,
                  "buildings_below_target": sum(1 for r in rows if not r["camera_meets_target"])}
        gws = gateway_rows(h, sites, ids)
        totals |= {"unknown": sum(g["unknown"] for g in gws), "uncommissioned": sum(g["uncommissioned"] for g in gws)}
        return HealthReport(camera_target=CAMERA_TARGET, buildings=rows, offline=offline[:500], low_battery=low[:500], totals=totals, gateways=gws)

    return router
