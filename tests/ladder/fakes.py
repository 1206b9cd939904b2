"""A roster the tests fill by hand, and the policies the ladder tests run against."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerting.ladder import Contact, Fill, PolicySet, Seat, SeatFill, Where, parse_policies

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

POLICIES: dict[str, object] = {
    "rungs": {
        "grid_worker": {"seat": "grid_worker", "label": "网格员", "deadlines": {"acknowledged": 60, "on_scene": 600}, "repeat": {"every": 30, "times": 2}},
        "fire_station": {"seat": "fire_station", "label": "微型消防站", "channels": ["app", "voice"], "deadlines": {"acknowledged": 60, "on_scene": 180}},
        "building_leader": {"seat": "building_leader", "deadlines": {"acknowledged": 90}},
        "volunteers": {"seat": "volunteers", "skill": "extinguisher", "count": 2, "deadlines": {"acknowledged": 60}},
        "family": {"seat": "family", "optional": True, "channels": ["sms"], "deadlines": {"acknowledged": 120}},
        "duty_officer": {"seat": "duty_officer", "channels": ["console"], "deadlines": {"acknowledged": 60}},
    },
    "policies": [
        {"name": "fire", "match": {"alarm_types": ["smoke", "*fire*"], "severities": ["major", "critical"]},
         "entry": ["grid_worker", "fire_station"], "ladder": ["building_leader", "volunteers", "duty_officer"],
         "verify": {"window": 120, "escalate_to": ["building_leader", "volunteers"]}},
        {"name": "sos_vulnerable", "match": {"alarm_types": ["sos"], "vulnerable": True}, "entry": ["grid_worker", "family"],
         "ladder": ["building_leader", "duty_officer"]},
        {"name": "sos", "match": {"alarm_types": ["sos"]}, "entry": ["grid_worker"], "ladder": ["building_leader", "duty_officer"]},
        {"name": "electrical", "match": {"alarm_types": ["electrical", "residual_current"]}, "entry": ["grid_worker"], "ladder": ["building_leader"]},
        {"name": "default", "entry": ["duty_officer"]},
    ],
}


def policies() -> PolicySet:
    return parse_policies(POLICIES)


def person(pid: str) -> Contact:
    return Contact(pid, pid.upper())


@dataclass
class FakeRoster:
    seats: dict[Seat, SeatFill] = field(default_factory=lambda: {
        Seat.GRID_WORKER: SeatFill((person("gw1"),), Fill.HOLDER),
        Seat.FIRE_STATION: SeatFill((person("mfs-head"), person("mfs-m1")), Fill.HOLDER),
        Seat.BUILDING_LEADER: SeatFill((person("bl1"),), Fill.HOLDER),
        Seat.DUTY_OFFICER: SeatFill((person("duty1"),), Fill.HOLDER),
        Seat.FAMILY: SeatFill((Contact("family:h1:0", "儿子"), Contact("neighbour:h1:0", "邻居")), Fill.HOLDER),
    })
    volunteers: list[str] = field(default_factory=lambda: ["v1", "v2", "v3", "v4"])
    asked: list[tuple[Seat, int]] = field(default_factory=list)

    def fill(self, seat: Seat, where: Where, at_ms: int, *, skill: str | None = None, exclude: frozenset[str] = frozenset()) -> SeatFill:
        self.asked.append((seat, at_ms))
        if seat is Seat.VOLUNTEERS:
            left = tuple(person(v) for v in self.volunteers if v not in exclude)
            return SeatFill(left, Fill.HOLDER if left else Fill.VACANT, "" if left else "no volunteer")
        if seat is Seat.FAMILY and not where.vulnerable:
            return SeatFill((), Fill.VACANT, "not vulnerable")
        return self.seats.get(seat, SeatFill((), Fill.VACANT, f"{seat} vacant"))

    def vacate(self, seat: Seat) -> None:
        self.seats[seat] = SeatFill((), Fill.VACANT, f"{seat} vacant")
