"""What happens to a validated uplink message in the backend (first version).

How this works: messages are de-duplicated by msg_id (the edge delivers at least once), each device's
last-seen time is updated, and life-safety and other alarm-worthy device events become records in the
alarm store at once (written off the event loop, one durable transaction each). Readings and the alert
rules are wired in by the ingest and alerting work.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmStore
from broker.kinds import EventKind
from broker.schemas import DeviceEvent, Uplink

__all__ = ["EVENT_ALARMS", "Pipeline", "RecentIds"]


@dataclass(frozen=True, slots=True)
class _AlarmKind:
    alarm_type: str
    severity: str
    title: str


EVENT_ALARMS: dict[EventKind, _AlarmKind] = {
    EventKind.SMOKE_ALARM: _AlarmKind("smoke", "critical", "烟感报警"),
    EventKind.SOS_PRESS: _AlarmKind("sos", "critical", "一键呼救"),
    EventKind.TAMPER: _AlarmKind("tamper", "major", "设备防拆报警"),
    EventKind.ELECTRICAL_ALARM: _AlarmKind("electrical", "major", "电气火灾预警"),
    EventKind.WATER_LEAK: _AlarmKind("water_leak", "minor", "漏水报警"),
}


class RecentIds:
    """The last `capacity` message ids seen, for de-duplication of at-least-once delivery."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, msg_id: str) -> bool:
        """Record `msg_id`; return True if it had been seen already."""
        if msg_id in self._ids:
            self._ids.move_to_end(msg_id)
            return True
        self._ids[msg_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return False


class Pipeline:
    def __init__(self, sites: SiteDirectory, alarms: AlarmStore) -> None:
        self.sites = sites
        self.alarms = alarms
        self.recent = RecentIds()
        self.last_seen_ms: dict[str, int] = {}
        self.duplicates = 0

    async def handle(self, uplink: Uplink, received_ms: int) -> None:
        msg = uplink.message
        msg_id: str = getattr(msg, "msg_id", "")
        if self.recent.seen(f"{uplink.topic.gateway}/{msg_id}"):
            self.duplicates += 1
            return
        if uplink.topic.device is not None:
            self.last_seen_ms[uplink.topic.device] = received_ms
        if isinstance(msg, DeviceEvent) and msg.event in EVENT_ALARMS:
            await asyncio.to_thread(self._record_alarm, uplink, msg, received_ms)

    def _record_alarm(self, uplink: Uplink, event: DeviceEvent, received_ms: int) -> None:
        kind = EVENT_ALARMS[event.event]
        device_id = uplink.topic.device
        device = self.sites.devices.get(device_id) if device_id else None
        building = self.sites.buildings.get(device.building) if device else None
        grid = self.sites.grids.get(building.grid) if building else None
        place = f"{building.name} {device.unit}单元 {device.location}" if device and building and device.unit else (
            f"{building.name} {device.location}" if device and building else str(device_id))
        self.alarms.raise_or_repeat(
            key=f"{device_id}:{kind.alarm_type}" + (":drill" if event.drill else ""),
            alarm_type=kind.alarm_type, severity=kind.severity, title=f"{kind.title} · {place}",
            seen_ms=event.source_ts_ms, now_ms=received_ms, drill=event.drill, device_id=device_id,
            gateway_id=uplink.topic.gateway, building_id=building.id if building else None,
            grid_id=grid.id if grid else None, community_id=grid.community if grid else None,
            source_msg_id=event.msg_id,
        )
