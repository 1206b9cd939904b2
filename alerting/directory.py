"""What the alerting core needs to know about the site, as a small protocol the backend implements.

The core never imports backend/: backend.alarms.adapter turns backend.sites.SiteDirectory into a `SiteView`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from broker.kinds import DeviceKind

__all__ = ["DeviceInfo", "SiteView", "WelfareHousehold"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    kind: DeviceKind
    gateway: str
    building: str | None
    unit: int | None = None
    household: str | None = None
    report_interval_s: float = 60.0
    place_name: str = ""  # e.g. "3号楼 1单元 厨房", shown in alarm titles


@dataclass(frozen=True, slots=True)
class WelfareHousehold:
    id: str
    building: str
    unit: int | None
    welfare_check_hours: float
    place_name: str = ""


class SiteView(Protocol):
    def devices(self) -> Iterable[DeviceInfo]:
        """Every device the site expects to hear from."""
        ...

    def gateways(self) -> Iterable[tuple[str, str | None]]:
        """Every gateway as (gateway id, building id or None for a community-level gateway)."""
        ...

    def welfare_households(self) -> Iterable[WelfareHousehold]:
        """Households of vulnerable residents with a welfare-check period."""
        ...
