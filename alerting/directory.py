"""What the alerting core needs to know about the site, as a small protocol the backend implements.

The core never imports backend/: backend.alarms.adapter turns backend.sites.SiteDirectory into a `SiteView`.

`Seat` is the one vocabulary of seats, shared by the ladder (a rung names the seat it pages) and the site
directory (a shift fills a seat over a scope). A seat is a place on a roster, not a person's role: the
directory's `Role` (backend.sites.model) says what a person is (a unit leader, a fire station's head or
member), and several roles can sit in one seat (the head and the members both fill FIRE_STATION). Two seats
are only the ladder's: FAMILY (filled from a vulnerable household's record, never by a shift) and the
volunteers a rung pages, which are drawn from every VOLUNTEER shift that covers now; the policy file spells
that seat "volunteers" (several of them), the site file "volunteer" (one person's shift), and both name the
one member `Seat.VOLUNTEER` (`Seat.VOLUNTEERS` is its alias).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from broker.kinds import DeviceKind

__all__ = ["DeviceInfo", "Seat", "SiteView", "WelfareHousehold"]


class Seat(StrEnum):
    """A place on a roster that the ladder pages and shifts fill. The values are the site file's spellings."""

    GRID_WORKER = "grid_worker"  # 网格员 of a grid; exclusive (one holder per shift)
    BUILDING_LEADER = "building_leader"  # 楼栋长 of a building; exclusive
    FIRE_STATION = "fire_station"  # 微型消防站: everyone on the station's shift now; a team
    VOLUNTEER = "volunteer"  # 志愿者 of a volunteer team; a team. A rung pages those on duty with the skill, nearest first
    VOLUNTEERS = "volunteer"  # alias of VOLUNTEER, the name a rung uses
    FAMILY = "family"  # family contacts and neighbours of a vulnerable household; the ladder's only, no shifts
    DUTY_OFFICER = "duty_officer"  # 值班员 of a community in the command room; a team (>= 2 per shift, GB 25506)

    @property
    def exclusive(self) -> bool:
        """Whether a shift of this seat holds one person at a time (two overlapping holders are a site error)."""
        return self in (Seat.GRID_WORKER, Seat.BUILDING_LEADER)


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
