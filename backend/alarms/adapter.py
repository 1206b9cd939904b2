"""backend.sites.SiteDirectory seen through the alerting core's SiteView protocol."""

from __future__ import annotations

from collections.abc import Iterator

from alerting.directory import DeviceInfo, WelfareHousehold
from backend.sites.model import SiteDirectory

__all__ = ["SiteAdapter"]


class SiteAdapter:
    def __init__(self, sites: SiteDirectory) -> None:
        self.sites = sites

    def place_name(self, building: str | None, unit: int | None, location: str = "") -> str:
        b = self.sites.buildings.get(building) if building else None
        parts = [b.name if b else (building or "")]
        if unit is not None:
            parts.append(f"{unit}单元")
        if location:
            parts.append(location)
        return " ".join(p for p in parts if p)

    def devices(self) -> Iterator[DeviceInfo]:
        for d in self.sites.devices.values():
            room = self.sites.households[d.household].room if d.household in self.sites.households else ""
            where = f"{room} {d.location}".strip()
            yield DeviceInfo(d.id, d.kind, d.gateway, d.building, d.unit, d.household, d.report_interval_s,
                             self.place_name(d.building, d.unit, where))

    def gateways(self) -> Iterator[tuple[str, str | None]]:
        for g in self.sites.gateways.values():
            yield g.id, g.building

    def welfare_households(self) -> Iterator[WelfareHousehold]:
        for h in self.sites.households.values():
            if h.vulnerable is not None and h.vulnerable.welfare_check_hours:
                yield WelfareHousehold(h.id, h.building, h.unit, h.vulnerable.welfare_check_hours,
                                       self.place_name(h.building, h.unit, h.room))
