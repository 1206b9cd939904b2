"""A Zigbee bridge going offline behind a gateway, through the alarm service (issue 15, item 6): the edge marks every
device behind it `unknown` (edge/adapters/zigbee2mqtt.py); the centre stores ONE gateway-level alarm counting the
blind devices by class, smoke detectors first, raises nothing per device, and resolves it once they report again.
Today `unknown` changed nothing: forty smoke detectors that cannot be heard were silence."""

from __future__ import annotations

from pathlib import Path

from backend.alarms.service import AlarmService
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock
from broker.kinds import AvailabilityState, DeviceKind
from broker.schemas import DeviceAvailability, Telemetry, Uplink, decode_uplink, encode
from broker.topics import availability_topic, telemetry_topic


def _availability(gateway: str, device: str, state: AvailabilityState, ts: int, n: int) -> Uplink:
    msg = DeviceAvailability(msg_id=f"av-{n}", source_ts_ms=ts, received_ts_ms=ts, state=state,
                             reason="zigbee2mqtt bridge 'zigbee2mqtt' is offline")
    return decode_uplink(str(availability_topic(gateway, device)), encode(msg))


def _report(gateway: str, device: str, ts: int, n: int) -> Uplink:
    msg = Telemetry(msg_id=f"t-{n}", source_ts_ms=ts, received_ts_ms=ts, readings={"battery_pct": 90.0})
    return decode_uplink(str(telemetry_topic(gateway, device)), encode(msg))


async def test_a_bridge_offline_is_one_gateway_alarm_naming_its_blind_smoke_detectors_first(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    gateway = max(sample_site.devices_by_gateway, key=lambda g: sum(d.kind is DeviceKind.SMOKE for d in sample_site.devices_by_gateway[g]))
    behind = sorted(sample_site.devices_by_gateway[gateway], key=lambda d: d.kind is DeviceKind.SMOKE)  # smoke last: order does not matter
    smokes = sum(d.kind is DeviceKind.SMOKE for d in behind)
    async with AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600) as svc:
        now = clock.now_ms()
        await svc.on_uplink_batch([(_availability(gateway, d.id, AvailabilityState.UNKNOWN, now, n), now) for n, d in enumerate(behind)])
        [alarm] = svc.store.list(open_only=True)
        assert (alarm.alarm_type, alarm.gateway_id, alarm.device_id, alarm.severity, alarm.drill) == ("devices_unknown", gateway, None, "major", False)
        assert alarm.detail is not None
        assert alarm.detail.startswith(f"{len(behind)} 台设备状态未知")
        assert f"烟感 {smokes} 台" in alarm.detail.split("：")[1].split("、")[0], f"smoke detectors first: {alarm.detail}"
        clock.advance(3 * 86_400)  # far past every absence window: unknown devices are not lost
        await svc.tick()  # other devices are lost by now; the blind ones raise nothing of their own
        ids = {d.id for d in behind}
        open_now = svc.store.list(open_only=True, limit=100_000)
        assert [a.alarm_type for a in open_now if a.device_id in ids] == []
        assert [a.alarm_type for a in open_now if a.alarm_type == "devices_unknown"] == ["devices_unknown"]
        for n, d in enumerate(behind):
            await svc.on_uplink(_report(gateway, d.id, clock.now_ms(), n), clock.now_ms())
        assert not [a for a in svc.store.list(open_only=True, limit=100_000) if a.alarm_type == "devices_unknown"], "resolved once they all report"
        stored = svc.store.get(alarm.id)
        assert stored is not None
        assert stored.occurrences == 1
