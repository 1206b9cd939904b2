"""A maintenance window that ends on a smoke detector still in alarm: the alarm goes back to raised through the
alarm service's normal path, so the alarm–ladder bridge (backend/escalation/bridge.py) starts its ladder and the
fire station is paged. Real alarm service, escalation service and stores on SQLite, one virtual clock."""

from __future__ import annotations

from pathlib import Path

from alerting.lifecycle import AlarmState
from backend.alarms.maintenance import Scope
from backend.alarms.service import AlarmService
from backend.escalation.bridge import AlarmLadderBridge
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, decode_uplink, encode
from broker.topics import event_topic
from tests.escalation.helpers import make_rig
from tests.waiting import until


async def test_a_window_ending_on_a_detector_still_in_alarm_raises_it_and_starts_its_ladder(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    clock = rig.clock
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    svc = AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600)
    async with svc:
        bridge = AlarmLadderBridge(svc, rig.service, rig.roster)
        async with bridge:
            w = await svc.maintenance.create(building_id=smoke.building, scope=Scope.DEVICE, device_id=smoke.id, author="duty",
                                             reason="更换烟感", ends_ms=clock.now_ms() + 3600_000, override_reason="拆下更换探头")
            now = clock.now_ms()
            msg = DeviceEvent(msg_id="m-smoke", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM)
            await svc.on_uplink(decode_uplink(str(event_topic(smoke.gateway, smoke.id)), encode(msg)), now)
            [alarm] = [a for a in svc.engine.book.open.values() if a.place.device == smoke.id]
            assert alarm.state is AlarmState.SILENCED
            await bridge.settle()
            assert await rig.service.get(alarm.id) is None, "no ladder while the window holds it"

            clock.advance(20 * 60)
            await svc.maintenance.end(w.id, "duty", "换好了，但仍在报警")  # the detector has not cleared

            a = svc.store.get(alarm.id)
            assert a is not None
            assert a.state is AlarmState.RAISED
            await until(lambda: bridge.started + bridge.reopened >= 1, 10, "the bridge to start the ladder of the alarm the window released")
            await bridge.settle()
            ladder = await rig.service.get(alarm.id)
            assert ladder is not None
            assert ladder.stopped is None, "its ladder is running: the fire station is being paged"
            assert bridge.started + bridge.reopened == 1, "exactly one ladder, started by the return to raised"
