"""Device clocks through the alarm service (issue 22, finding 9), on a virtual clock: liveness runs on the centre's
receive time and a skewed clock raises clock_skew once. Today a camera 10 minutes fast that went silent was never
declared lost, and one 10 minutes slow was declared lost again and again while it kept reporting."""

from __future__ import annotations

from pathlib import Path

from backend.alarms.service import AlarmService
from backend.ingest.handoff import Reading
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock
from broker.kinds import DeviceKind
from broker.schemas import Telemetry, decode_uplink, encode
from broker.topics import telemetry_topic

MIN_MS = 60_000


async def test_a_fast_camera_that_goes_silent_is_lost_and_a_slow_one_that_reports_is_not(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    fast, slow = [d for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA][:2]
    async with AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600) as svc:
        def mine(device: str) -> list[str]:
            return sorted(a.alarm_type for a in svc.store.list(open_only=True, limit=100_000) if a.device_id == device)

        now = clock.now_ms()
        msg = Telemetry(msg_id="fast-1", source_ts_ms=now + 10 * MIN_MS, received_ts_ms=now + 10 * MIN_MS, readings={"temperature_c": 31.0})
        await svc.on_uplink(decode_uplink(str(telemetry_topic(fast.gateway, fast.id)), encode(msg)), now)
        assert mine(fast.id) == ["clock_skew"]
        for _ in range(12):  # the slow camera reports every minute, stamped ten minutes behind; the fast one is silent
            clock.advance(60)
            t = clock.now_ms()
            await svc.on_readings([Reading(slow.id, slow.gateway, "temperature_c", 30.0, t - 10 * MIN_MS, t)])
            await svc.tick()
        assert mine(fast.id) == ["clock_skew", "comm_lost"], "declared lost from its last receive time"
        assert mine(slow.id) == ["clock_skew"], "never lost while it reports; its clock flagged after clock_skew_confirm_s"
