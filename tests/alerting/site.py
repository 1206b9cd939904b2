"""A small site for rule tests: two buildings, two gateways, a handful of devices, one vulnerable household."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alerting.config import RuleConfig
from alerting.directory import DeviceInfo, WelfareHousehold
from alerting.engine import Engine
from alerting.model import Action, Alarm, Persist
from backend.alarms.rules import load_rules
from broker.kinds import AvailabilityState, DeviceKind

T0 = 1_767_225_600_000
S = 1000  # ms per second
H = 3_600_000

DEVICES = [
    DeviceInfo("s1", DeviceKind.SMOKE, "g1", "b1", 1, "h1", 86_400, "1号楼 1单元 101 厨房"),
    DeviceInfo("s2", DeviceKind.SMOKE, "g1", "b1", 1, "h2", 86_400, "1号楼 1单元 102 厨房"),
    DeviceInfo("s3", DeviceKind.SMOKE, "g1", "b1", 2, "h3", 86_400, "1号楼 2单元 201 厨房"),
    DeviceInfo("c1", DeviceKind.CAMERA, "g1", "b1", None, None, 60, "1号楼 门口"),
    DeviceInfo("e1", DeviceKind.ELECTRICAL, "g1", "b1", 1, "h1", 60, "1号楼 1单元 101 户内配电"),
    DeviceInfo("box", DeviceKind.ELECTRICAL, "g1", "b1", 1, None, 60, "1号楼 1单元 配电箱"),
    DeviceInfo("p1", DeviceKind.SOS, "g1", "b1", 1, "h1", 86_400, "1号楼 1单元 101 卧室"),
    DeviceInfo("c2", DeviceKind.CAMERA, "g2", "b2", None, None, 60, "2号楼 门口"),
]


class FakeSite:
    def devices(self) -> Iterator[DeviceInfo]:
        return iter(DEVICES)

    def gateways(self) -> Iterator[tuple[str, str | None]]:
        return iter([("g1", "b1"), ("g2", "b2")])

    def welfare_households(self) -> Iterator[WelfareHousehold]:
        return iter([WelfareHousehold("h1", "b1", 1, 24.0, "1号楼 1单元 101")])


def rules(**extra: Any) -> RuleConfig:
    return load_rules(None, **extra)


def engine(*, commissioned: bool = True, **extra: Any) -> Engine:
    """An engine at T0; `commissioned`: every device has reported once at T0 (in service: silence from now on is
    loss), else none has (a cold start: never-heard devices are not yet commissioned, never lost)."""
    eng = Engine(rules(**extra), FakeSite(), T0)
    if commissioned:
        for d in DEVICES:
            eng.on_availability(d.id, AvailabilityState.ONLINE, T0)
    return eng


def alarms(actions: list[Action]) -> list[Alarm]:
    return [a.alarm for a in actions if isinstance(a, Persist)]


def by_type(eng: Engine, alarm_type: str, *, drill: bool = False) -> list[Alarm]:
    return [a for k, a in eng.book.open.items() if k.alarm_type == alarm_type and k.drill == drill]
