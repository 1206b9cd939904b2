"""A cold start of the real alarm service on the sample community (5,948 devices behind 40 gateways), on a virtual
clock (issue 21, "Commissioning is a state, not a storm"). Before, with the devices silent, it stored 546
device-lost (comm_lost, 通信中断) alarms at +3 minutes and about 2,200 at +15, each starting a ladder that paged
the duty officers. Now a device never heard since it was added is not yet commissioned (未上线): ONE info notice
per gateway, shown on the duty console and paging nobody; a device heard once and silent since is lost as before,
also across a restart of the service (the rule-state snapshot keeps what was heard)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from alerting.model import Severity
from backend.alarms.service import AlarmService
from backend.escalation.runtime import load_policies
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock
from broker.kinds import DeviceKind
from broker.schemas import PatrolHeartbeat, Telemetry, Uplink, decode_uplink, encode
from broker.topics import patrol_topic, telemetry_topic


def _report(gateway: str, device: str, ts: int, n: int) -> Uplink:
    msg = Telemetry(msg_id=f"t-{n}", source_ts_ms=ts, received_ts_ms=ts, readings={"battery_pct": 90.0})
    return decode_uplink(str(telemetry_topic(gateway, device)), encode(msg))


def _service(tmp_path: Path, sites: SiteDirectory, clock: VirtualClock) -> AlarmService:
    return AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sites, clock, tick_s=3600)


async def test_a_cold_start_with_silent_devices_is_one_notice_per_gateway_and_loss_survives_a_restart(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    cameras = [d for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA]
    heard = cameras[:40]  # installed and reporting: these are in service
    async with _service(tmp_path, sample_site, clock) as svc:
        now = clock.now_ms()
        await svc.on_uplink_batch([(_report(d.gateway, d.id, now, n), now) for n, d in enumerate(heard)])
        clock.advance(150)  # a restart inside the cameras' window (3 x 60 s)
    async with _service(tmp_path, sample_site, clock) as svc:
        elapsed = 150
        for minutes in (3, 15):
            clock.advance(minutes * 60 + 1 - elapsed)
            elapsed = minutes * 60 + 1
            await svc.tick()
            stored = svc.store.list(open_only=True, limit=100_000)
            lost = {a.device_id for a in stored if a.alarm_type == "comm_lost" and a.device_id}
            assert lost == {d.id for d in heard}, f"+{minutes} min: only devices heard once are lost, across the restart"
            notices = [a for a in stored if a.alarm_type == "devices_uncommissioned"]
            per_gateway = Counter(a.gateway_id for a in notices)
            assert per_gateway, "the never-heard devices are said, once per gateway"
            assert max(per_gateway.values()) == 1, "at most one commissioning notice per gateway"
            assert {a.severity for a in notices} == {Severity.INFO.value}
            assert not any(a.life_safety for a in notices)
        waiting = sum(int((a.detail or "0").split(" ")[0]) for a in notices)
        overdue = [d for d in sample_site.devices.values() if d.report_interval_s <= 300 and d not in heard]
        assert waiting == len(overdue), "every never-heard camera and electrical monitor is counted, once"
        assert len(stored) == len(heard) + len(notices), "nothing else was raised"
    # what the notice does: the default ladder shows it on the duty console, with no phone channel and no repeats
    policies = load_policies()
    rungs = [policies.rung(name) for name in policies.select("devices_uncommissioned", Severity.INFO).order]
    assert [(r.seat.value, r.channels, r.repeat) for r in rungs] == [("duty_officer", ("console",), None)]


async def test_a_restart_that_lost_its_rule_state_takes_devices_as_heard_so_a_dead_detector_is_lost(
        tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The rule-state snapshot is gone (a damaged or deleted file) but the site ran before: whether a device was ever
    heard is unknown, so the safe side is taken. A smoke detector silent since is lost (a major alarm that pages),
    never the quiet 'not yet online' of a device never installed. A first start ever still commissions."""
    clock = VirtualClock()
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    camera = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA)
    async with _service(tmp_path, sample_site, clock) as svc:
        now = clock.now_ms()
        await svc.on_uplink_batch([(_report(d.gateway, d.id, now, n), now) for n, d in enumerate((smoke, camera))])
    (tmp_path / "alarms.db.rule-state-engine").write_bytes(b"not a snapshot")  # damaged on disk (AlarmStore.rule_state_file)
    async with _service(tmp_path, sample_site, clock) as svc:
        for hour in range(int(smoke.report_interval_s * 2 / 3600) + 2):  # the gateway patrols every hour; the detector is dead
            clock.advance(3600)
            t = clock.now_ms()
            beat = PatrolHeartbeat(msg_id=f"p-{hour}", source_ts_ms=t, received_ts_ms=t, seq=hour, period_s=3600)
            await svc.on_uplink(decode_uplink(str(patrol_topic(smoke.gateway)), encode(beat)), t)
            await svc.tick()
        stored = svc.store.list(open_only=True, limit=100_000)
        lost = {a.device_id for a in stored if a.alarm_type == "comm_lost"}
        assert smoke.id in lost, "the silent smoke detector is lost: its ladder pages"
        assert not [a for a in stored if a.alarm_type == "devices_uncommissioned" and a.gateway_id == smoke.gateway]


async def test_a_first_start_ever_still_commissions_instead_of_losing(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    async with _service(tmp_path, sample_site, clock) as svc:
        clock.advance(smoke.report_interval_s * 4)
        await svc.tick()
        stored = svc.store.list(open_only=True, limit=100_000)
        assert not [a for a in stored if a.alarm_type == "comm_lost"], "nothing was ever heard: nothing is lost"
        assert [a for a in stored if a.alarm_type == "devices_uncommissioned"]
