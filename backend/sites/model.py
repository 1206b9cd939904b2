"""The site directory as values: the community's places, devices, people and duty rosters.

The hierarchy is street (街道) → community (社区) → grid (网格) → building (楼栋) → unit (单元) →
household (户). Devices hang off buildings (and optionally a unit and a household) and report through one
gateway. Responders fill *seats* (the grid worker of grid g01, the leader of building b03, the micro fire
station, a volunteer) during *shifts*; the ladder asks "who sits in this seat now".

Seats are the one vocabulary `alerting.directory.Seat`, shared with the ladder. `Role` is different and stays
here: it says what a person is (a unit leader, a fire station's head or a member), not which roster place
they fill; a unit leader has no seat of their own (they stand in as a building leader's deputy) and a station's
head and members both sit in the one FIRE_STATION seat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType

from alerting.directory import Seat
from broker.kinds import DeviceKind

__all__ = [
    "DEFAULT_REPORT_INTERVAL_S",
    "Building",
    "Community",
    "Device",
    "FamilyContact",
    "FireStation",
    "Gateway",
    "Grid",
    "Household",
    "Responder",
    "Role",
    "Shift",
    "SiteDirectory",
    "VolunteerTeam",
    "Vulnerability",
]

NO_ENTITIES: Mapping[str, Mapping[str, str | float]] = MappingProxyType({})

# Expected reporting interval per device class when the directory names none.
DEFAULT_REPORT_INTERVAL_S: dict[DeviceKind, float] = {
    DeviceKind.CAMERA: 60.0,  # GB/T 28181 keepalive; offline after 3 misses
    DeviceKind.SMOKE: 86_400.0,  # battery detectors check in at least daily
    DeviceKind.ELECTRICAL: 60.0,  # electrical-fire monitors report every minute or faster
    DeviceKind.SOS: 86_400.0,  # buttons send a daily self-check
    DeviceKind.WATER_LEAK: 86_400.0,
    DeviceKind.OTHER: 3_600.0,
}


class Role(StrEnum):
    GRID_WORKER = "grid_worker"  # 网格员
    BUILDING_LEADER = "building_leader"  # 楼栋长
    UNIT_LEADER = "unit_leader"  # 单元长
    FIRE_STATION_HEAD = "fire_station_head"  # 微型消防站站长
    FIRE_STATION_MEMBER = "fire_station_member"  # 微型消防站队员
    VOLUNTEER = "volunteer"  # 志愿者
    DUTY_OFFICER = "duty_officer"  # 值班员


@dataclass(frozen=True, slots=True)
class Community:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Grid:
    id: str
    name: str
    community: str


@dataclass(frozen=True, slots=True)
class Building:
    id: str
    name: str
    grid: str
    floors: int
    units: int
    x: float  # position on the community site plan, metres east
    y: float  # metres north
    width: float = 30.0
    depth: float = 15.0


@dataclass(frozen=True, slots=True)
class FamilyContact:
    name: str
    phone: str
    relation: str


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """Why a household needs extra care, and who to call (only shown to those allowed to see it)."""

    lives_alone: bool = False
    mobility: str | None = None  # e.g. "wheelchair", "bedridden"
    key_holder: str | None = None  # who holds a spare key (neighbour, building leader)
    family_contacts: tuple[FamilyContact, ...] = ()
    neighbours: tuple[FamilyContact, ...] = ()
    notes: str | None = None
    welfare_check_hours: float | None = None  # no sign of activity for this long raises a welfare check


@dataclass(frozen=True, slots=True)
class Household:
    id: str
    building: str
    unit: int
    room: str
    residents: int = 1
    vulnerable: Vulnerability | None = None
    phone: str | None = None  # the household's own number: the SOS call-back (回访) rings it


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    building: str | None  # None: a community-level gateway
    community: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: DeviceKind
    gateway: str
    building: str
    unit: int | None = None
    household: str | None = None
    location: str = ""  # e.g. "厨房", "配电箱", "3F stairwell"
    report_interval_s: float = 60.0
    dialect: str = "native"  # native, zigbee2mqtt, tasmota, shelly, frigate, esphome
    model: str = ""
    lan_name: str = ""  # its name in its ecosystem on the building's LAN (friendly name, topic, node); "" = its id
    channels: int = 1  # metering channels (power_w@1, power_w@2...)
    # ESPHome entities: "sensor/leak" -> {"metric": "residual_current_ma", "scale": 1}; not part of equality or hash.
    # One shared empty mapping by default: a street has ~90,000 devices and almost none has entities.
    entities: Mapping[str, Mapping[str, str | float]] = field(default_factory=lambda: NO_ENTITIES, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class FireStation:
    id: str
    name: str
    community: str
    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True, slots=True)
class VolunteerTeam:
    id: str
    name: str
    community: str


@dataclass(frozen=True, slots=True)
class Responder:
    id: str
    name: str
    role: Role
    phone: str
    community: str
    grid: str | None = None
    building: str | None = None  # a building leader's building, or a volunteer's home building
    unit: int | None = None
    station: str | None = None
    team: str | None = None
    skills: frozenset[str] = frozenset()  # first_aid, extinguisher, lift_rescue, ...


@dataclass(frozen=True, slots=True)
class Shift:
    """`responder` sits in (seat, scope) on `days` (0 = Monday) from start to end (minutes after midnight).

    end <= start means the shift runs past midnight into the next day."""

    seat: Seat  # scope: a grid, building, fire station, volunteer team or community id
    scope: str
    responder: str
    days: frozenset[int]
    start_min: int
    end_min: int
    deputy: str | None = None

    def week_intervals(self) -> list[tuple[int, int]]:
        """Half-open minute intervals within a week [0, 10080), wrapping past Sunday into Monday."""
        week = 7 * 1440
        out: list[tuple[int, int]] = []
        length = (self.end_min - self.start_min) % 1440 or 1440
        for day in sorted(self.days):
            begin = day * 1440 + self.start_min
            end = begin + length
            if end <= week:
                out.append((begin, end))
            else:
                out += [(begin, week), (0, end - week)]
        return out

    def covers(self, weekday: int, minute_of_day: int) -> bool:
        t = weekday * 1440 + minute_of_day
        return any(b <= t < e for b, e in self.week_intervals())


@dataclass(frozen=True)
class SiteDirectory:
    communities: dict[str, Community]
    grids: dict[str, Grid]
    buildings: dict[str, Building]
    households: dict[str, Household]
    gateways: dict[str, Gateway]
    devices: dict[str, Device]
    fire_stations: dict[str, FireStation]
    volunteer_teams: dict[str, VolunteerTeam]
    responders: dict[str, Responder]
    shifts: tuple[Shift, ...] = field(default=())
    street: str = ""
    # Per-device rule settings (device id -> rule -> key -> number), as installed: e.g. a distribution box's
    # overload level or a circuit's residual-current setting. The alarm service adds them to its rules
    # (alerting.config.RuleConfig.with_device_settings), which checks them.
    rule_settings: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @cached_property
    def devices_by_gateway(self) -> dict[str, tuple[Device, ...]]:
        out: dict[str, list[Device]] = {g: [] for g in self.gateways}
        for d in self.devices.values():
            out[d.gateway].append(d)
        return {g: tuple(ds) for g, ds in out.items()}

    @cached_property
    def devices_by_building(self) -> dict[str, tuple[Device, ...]]:
        out: dict[str, list[Device]] = {b: [] for b in self.buildings}
        for d in self.devices.values():
            out[d.building].append(d)
        return {b: tuple(ds) for b, ds in out.items()}

    # -- places: where a building or a gateway belongs, the one place this is worked out ------------------
    def place_of_building(self, building: str | None) -> tuple[str | None, str | None]:
        """building id -> (grid id, community id); (None, None) for a building the directory does not list."""
        b = self.buildings.get(building) if building else None
        g = self.grids.get(b.grid) if b else None
        return (g.id, g.community) if g else (None, None)

    def place_of_gateway(self, gateway: str | None) -> tuple[str | None, str | None]:
        """gateway id -> (grid id, community id): where an alarm with no building belongs (a device the site
        directory does not list yet, behind a community-level gateway), so a duty officer scoped to the
        community still sees it. (None, None) for a gateway the directory does not list."""
        gw = self.gateways.get(gateway) if gateway else None
        if gw is None:
            return None, None
        grid, community = self.place_of_building(gw.building)
        return grid, community or gw.community

    def community_of_building(self, building: str) -> str:
        """The community of a building the directory lists (KeyError for one it does not)."""
        return self.grids[self.buildings[building].grid].community

    def summary(self) -> dict[str, int]:
        return {
            "communities": len(self.communities),
            "grids": len(self.grids),
            "buildings": len(self.buildings),
            "households": len(self.households),
            "gateways": len(self.gateways),
            "devices": len(self.devices),
            "responders": len(self.responders),
            "shifts": len(self.shifts),
        }
