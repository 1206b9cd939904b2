"""Vocabulary of the wire contract: device classes, event kinds, availability, units and priorities."""

from __future__ import annotations

import re
from enum import IntEnum, StrEnum

__all__ = [
    "LIFE_SAFETY_EVENTS",
    "METRIC_PATTERN",
    "UNITS",
    "AvailabilityState",
    "DeviceKind",
    "EventKind",
    "GatewayState",
    "Priority",
    "metric_unit",
]


class DeviceKind(StrEnum):
    """The device classes of DOMAIN.md, plus the ones real gateways also carry."""

    ELECTRICAL = "electrical"  # 智慧用电: leakage sensors, cable temperature probes, smart breakers, meters
    SMOKE = "smoke"  # 独立式感烟报警器
    CAMERA = "camera"  # 雪亮工程 video links
    SOS = "sos"  # 一键通 elderly emergency buttons
    WATER_LEAK = "water_leak"
    OTHER = "other"


class EventKind(StrEnum):
    SMOKE_ALARM = "smoke_alarm"
    SMOKE_CLEAR = "smoke_clear"
    SELF_TEST = "self_test"  # a detector's test button: recorded, never a fire
    SOS_PRESS = "sos_press"
    TAMPER = "tamper"
    TAMPER_CLEAR = "tamper_clear"
    LOW_BATTERY = "low_battery"
    BATTERY_OK = "battery_ok"
    FAULT = "fault"  # the sensor cannot measure (e.g. NaN reading)
    FAULT_CLEAR = "fault_clear"
    ELECTRICAL_ALARM = "electrical_alarm"  # protection tripped: leakage, overload, overtemperature, over/under-voltage
    ELECTRICAL_CLEAR = "electrical_clear"
    WATER_LEAK = "water_leak"
    WATER_LEAK_CLEAR = "water_leak_clear"
    POWER_LOST = "power_lost"  # mains power gone at the device or distribution box
    POWER_RESTORED = "power_restored"
    RESTARTED = "restarted"  # device rebooted (possible power blip); informational


# Never evicted from an outbox, never batched behind telemetry.
LIFE_SAFETY_EVENTS = frozenset(
    {EventKind.SMOKE_ALARM, EventKind.SMOKE_CLEAR, EventKind.SOS_PRESS, EventKind.TAMPER, EventKind.TAMPER_CLEAR}
)


class AvailabilityState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # e.g. the bridge in front of it is gone: we cannot tell
    DISABLED = "disabled"  # switched off on purpose (a camera disabled by its operator): no offline alarm


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # clean shutdown, or the broker publishing the Last Will


class Priority(IntEnum):
    """Lower value goes first. Eviction under a disk bound touches TELEMETRY only."""

    LIFE_SAFETY = 0
    STATUS = 1
    TELEMETRY = 2


# Unit suffixes a metric name may end with. The unit is part of the name so nobody guesses it.
UNITS: dict[str, str] = {
    "ma": "milliampere",
    "a": "ampere",
    "v": "volt",
    "w": "watt",
    "va": "volt-ampere",
    "var": "volt-ampere reactive",
    "wh": "watt-hour",
    "hz": "hertz",
    "c": "degree Celsius",
    "pct": "percent",
    "ratio": "dimensionless ratio",
    "dbm": "decibel-milliwatt",
    "lqi": "link quality indicator",
    "lux": "lux",
    "s": "second",
    "fps": "frames per second",
    "ppm": "parts per million",
    "count": "count",
}

# name = lower-case words joined by '_', ending in a unit; an optional '@N' names the channel of a
# multi-channel meter (Tasmota reports Power/Current as arrays on those).
METRIC_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*_(" + "|".join(sorted(UNITS, key=len, reverse=True)) + r")(?:@[0-9]{1,2})?")


def metric_unit(name: str) -> str | None:
    """The unit suffix of a well-formed metric name, or None if the name is not one."""
    m = METRIC_PATTERN.fullmatch(name)
    return m.group(1) if m else None
