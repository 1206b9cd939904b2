"""`broker.frozen.quick_init`: the generated constructor builds exactly what the dataclass's own would, and refuses
what it cannot copy."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest

from alerting.lifecycle import AlarmState
from alerting.model import Alarm, AlarmKey, AuditEntry, DeviceRecord, Persist, Place, Severity, Signal, SignalKind
from backend.escalation.bridge import _Job
from backend.feed.live import FeedEvent
from backend.ingest.uplink_lane import UplinkItem
from broker.frozen import quick_init
from broker.ids import DeviceId, GatewayId
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, Uplink
from broker.topics import TopicKind, UplinkTopic


def _plain_init(cls: type[Any]) -> Any:
    """The dataclass's own __init__, made again for a copy of the class without quick_init."""
    return dataclass(frozen=True, slots=True, order=cls.__dataclass_params__.order)(
        type(cls.__name__, (), {"__annotations__": dict(cls.__annotations__),
                                **{f.name: f for f in dataclasses.fields(cls)}}))


KEY = AlarmKey("device:c01-b01-u1-101-smoke", "smoke")
PLACE = Place("c01-b01-u1-101-smoke", "c01-gw-b01", "c01-b01", 1, "c01-b01-u1-101")
ALARM = Alarm("A1", KEY, AlarmState.RAISED, Severity.CRITICAL, True, "烟感报警", PLACE, 1, 10, 10, 10, 10, 1, source_msg_id="m-1")

CASES: list[tuple[type[Any], tuple[Any, ...], dict[str, Any]]] = [
    (Place, (), {}),
    (Place, ("d1",), {"building": "b1", "unit": 2}),
    (AlarmKey, ("device:d1", "smoke"), {}),
    (AlarmKey, ("device:d1",), {"alarm_type": "smoke", "drill": True}),
    (Signal, (SignalKind.RAISE, "smoke", "device:d1", 5), {}),
    (Signal, (SignalKind.RAISE, "smoke", "device:d1", 5, Severity.CRITICAL, True, False, "烟感", PLACE, "detail"), {"source_msg_id": "m"}),
    (Alarm, ("A1", KEY, AlarmState.RAISED, Severity.CRITICAL, True, "t", PLACE, 1, 10, 10, 10, 10, 1), {}),
    (Alarm, (), {f.name: getattr(ALARM, f.name) for f in dataclasses.fields(Alarm)} | {"recent_changes_ms": (1, 2), "detail": "x"}),
    (AuditEntry, ("A1", 0, 10, "system", "raise", None, AlarmState.RAISED), {}),
    (AuditEntry, ("A1", 0, 10, "system", "raise", None, AlarmState.RAISED, "note", True), {}),
    (Persist, (ALARM,), {}),
    (Persist, (ALARM, (AuditEntry("A1", 0, 10, "system", "raise", None, AlarmState.RAISED),)), {}),
    (DeviceRecord, ("d1", "self_test", 10), {"detail": "ok"}),
    (FeedEvent, (1, "alarm", 10, {"id": "A1"}), {"building_id": "b1", "wire": b"data"}),
    (_Job, (0, 1, "start", ALARM), {"seq": 2}),
    (UplinkItem, (1, "gw/m", "t", b"p", None, 10, 3, 0.5), {}),
    (UplinkTopic, (TopicKind.GATEWAY_STATUS, "gw"), {}),
    (UplinkTopic, (TopicKind.EVENT, "gw", "d1"), {}),
    (Uplink, (UplinkTopic(TopicKind.EVENT, GatewayId("gw"), DeviceId("d1")),
              DeviceEvent(msg_id="m", source_ts_ms=1, received_ts_ms=1, event=EventKind.SMOKE_ALARM)), {}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), CASES, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_the_quick_constructor_builds_what_the_dataclass_would(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    quick = cls(*args, **kwargs)
    plain = _plain_init(cls)(*args, **kwargs)
    assert [getattr(quick, f.name) for f in dataclasses.fields(cls)] == [getattr(plain, f.name) for f in dataclasses.fields(cls)]
    assert quick == cls(*args, **kwargs)
    try:
        hash(plain)
    except TypeError:  # a field holds a dict (FeedEvent's data): unhashable with either constructor
        with pytest.raises(TypeError):
            hash(quick)
    else:
        assert hash(quick) == hash(cls(*args, **kwargs))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(quick, dataclasses.fields(cls)[0].name, None)


def test_wrong_arguments_are_refused_as_the_dataclass_refuses_them() -> None:
    with pytest.raises(TypeError):
        AlarmKey("device:d1")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        AlarmKey("device:d1", "smoke", drill=False, colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        AlarmKey("device:d1", "smoke", False, False)  # type: ignore[call-arg]


def test_what_it_cannot_copy_exactly_is_refused_at_import() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class NotInInit:
        a: int
        b: int = field(init=False, default=0)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KwOnly:
        a: int

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int] = 0

    for cls in (NoSlots, NotFrozen, PostInit, Factory, NotInInit, KwOnly, WithInitVar):
        with pytest.raises(TypeError):
            quick_init(cls)
