"""Maintenance windows as records, on the real alarm service and store (SQLite; the restart tests on PostgreSQL too) with a virtual clock: a restart keeps a
window in force (and listed), a window that ran out while the backend was down ends at start with its devices
re-evaluated, end notices reach the duty room, extending moves the silence, and life-safety devices need the
override (with a limited length)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alerting.lifecycle import AlarmState
from backend.alarms.maintenance import MaintenanceSettings, Scope, UnknownPlace, WindowOver, WindowRefused
from backend.alarms.service import AlarmService, MoveRefused
from backend.sites.model import Device, SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from backend.stream import Bulletin, Event
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind, GatewayState
from broker.schemas import DeviceEvent, GatewayStatus, Uplink, decode_uplink, encode
from broker.topics import event_topic, gateway_status_topic
from tests.processes import fresh_database

MIN = 60


def event(d: Device, kind: EventKind, ts: int) -> Uplink:
    msg = DeviceEvent(msg_id=f"m-{d.id}-{kind.value}-{ts}", source_ts_ms=ts, received_ts_ms=ts, event=kind)
    return decode_uplink(str(event_topic(d.gateway, d.id)), encode(msg))


ENGINES: list[sa.Engine] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    while ENGINES:
        ENGINES.pop().dispose()


def service(tmp_path: Path, sites: SiteDirectory, clock: VirtualClock, url: str | None = None, **kw: Any) -> AlarmService:
    engine = make_engine(url or sqlite_url(tmp_path / "alarms.db"))
    ENGINES.append(engine)
    return AlarmService.for_sites(engine, sites, clock, tick_s=3600, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The alarm database of a restart test: SQLite (the default) or the session's real PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "alarms.db")
    pg: LocalPostgres = request.getfixturevalue("postgres_server")
    return fresh_database(pg, "mw")


def devices(sites: SiteDirectory, building: str, kind: DeviceKind) -> list[Device]:
    return [d for d in sites.devices_by_building[building] if d.kind is kind]


def building_with(sites: SiteDirectory, *kinds: DeviceKind) -> str:
    return next(b for b, ds in sorted(sites.devices_by_building.items()) if all(any(d.kind is k for d in ds) for k in kinds))


async def alarm_of(svc: AlarmService, d: Device, kind: EventKind) -> tuple[str, AlarmState]:
    now = svc.clock.now_ms()
    await svc.on_uplink(event(d, kind, now), now)
    [a] = [a for a in svc.engine.book.open.values() if a.place.device == d.id]
    return a.id, a.state


def state(svc: AlarmService, alarm_id: str) -> AlarmState:
    a = svc.store.get(alarm_id)
    assert a is not None
    return a.state



def hear_notices(svc: AlarmService, notices: list[dict[str, Any]]) -> None:
    """Collect the duty-room notices the maintenance windows publish on the centre's stream."""

    async def put(events: Sequence[Event]) -> None:
        notices.extend(dict(e.data) for e in events if isinstance(e, Bulletin))

    svc.stream.subscribe(put, name="notices")

async def test_a_window_survives_a_restart_in_force_and_listed_and_holds_new_alarms(tmp_path: Path, sample_site: SiteDirectory, db_url: str) -> None:
    clock = VirtualClock()
    b = building_with(sample_site, DeviceKind.ELECTRICAL, DeviceKind.SMOKE)
    meter, meter2 = devices(sample_site, b, DeviceKind.ELECTRICAL)[:2]
    smoke = devices(sample_site, b, DeviceKind.SMOKE)[0]
    async with service(tmp_path, sample_site, clock, db_url) as svc:
        before, _ = await alarm_of(svc, meter, EventKind.ELECTRICAL_ALARM)
        w = await svc.maintenance.create(building_id=b, scope=Scope.BUILDING, author="duty", reason="配电箱检修 工单 42",
                                         ends_ms=clock.now_ms() + 60 * MIN * 1000)
        assert state(svc, before) is AlarmState.SILENCED
        assert svc.maintenance.view(w)["life_safety_devices_left_live"] >= 1, "a building window without the override leaves detectors live"
    clock.advance(10 * MIN)

    async with service(tmp_path, sample_site, clock, db_url) as svc:
        [listed] = svc.maintenance.records()
        assert (listed.id, listed.ended_ms, listed.author, listed.reason) == (w.id, None, "duty", "配电箱检修 工单 42")
        assert state(svc, before) is AlarmState.SILENCED
        new, new_state = await alarm_of(svc, meter2, EventKind.ELECTRICAL_ALARM)
        assert new_state is AlarmState.SILENCED, "after the restart the window still holds a new alarm in its building"
        _fire, fire_state = await alarm_of(svc, smoke, EventKind.SMOKE_ALARM)
        assert fire_state is AlarmState.RAISED, "a smoke detector is never silenced by a window without the override"
        clock.advance(50 * MIN)
        await svc.tick()
        assert (state(svc, before), state(svc, new)) == (AlarmState.RAISED, AlarmState.RAISED)
        [ended] = svc.maintenance.records(include_ended=True)
        assert (ended.ended_by, ended.end_reason) == ("system", "到期")  # the duty room reads Chinese
        assert [a.action for a in svc.maintenance.audit(w.id)] == ["create", "expire"], "jumped past the notice time: only the end"


async def test_a_window_that_ran_out_while_down_ends_at_start_and_re_evaluates_its_devices(tmp_path: Path, sample_site: SiteDirectory,
                                                                                           db_url: str) -> None:
    clock = VirtualClock()
    b = building_with(sample_site, DeviceKind.SMOKE)
    still, cleared = devices(sample_site, b, DeviceKind.SMOKE)[:2]
    notices: list[dict[str, Any]] = []
    async with service(tmp_path, sample_site, clock, db_url) as svc:
        w = await svc.maintenance.create(building_id=b, scope=Scope.KIND, device_kind="smoke", author="duty", reason="烟感年检",
                                         ends_ms=clock.now_ms() + 90 * MIN * 1000, override_reason="年检需逐个触发烟感")
        burning, s1 = await alarm_of(svc, still, EventKind.SMOKE_ALARM)
        tested, s2 = await alarm_of(svc, cleared, EventKind.SMOKE_ALARM)
        assert (s1, s2) == (AlarmState.SILENCED, AlarmState.SILENCED)
        clock.advance(1)
        now = clock.now_ms()
        await svc.on_uplink(event(cleared, EventKind.SMOKE_CLEAR, now), now)
        assert state(svc, tested) is AlarmState.SILENCED, "a clear during the window changes nothing yet"
    clock.advance(2 * 3600)  # the backend is down past the window's end

    svc = service(tmp_path, sample_site, clock, db_url)
    hear_notices(svc, notices)
    async with svc:
        assert svc.maintenance.records() == [], "no window is in force any more"
        [ended] = svc.maintenance.records(include_ended=True)
        assert (ended.id, ended.ended_by, ended.ended_ms) == (w.id, "system", clock.now_ms())
        assert state(svc, burning) is AlarmState.RAISED, "the detector still in alarm is live again"
        assert state(svc, tested) is AlarmState.AWAITING_VERIFICATION, "the one that cleared during the window awaits a person"
        audit = svc.store.audit(burning)
        assert (audit[-1].move, audit[-1].from_state, audit[-1].to_state) == ("unsilence", AlarmState.SILENCED, AlarmState.RAISED)
        assert [n["event"] for n in notices] == ["ended"]
        assert "维护窗口已结束" in notices[0]["text"]


async def test_the_duty_room_is_told_before_a_window_ends_and_when_it_ends(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    meter = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    notices: list[dict[str, Any]] = []
    async with service(tmp_path, sample_site, clock, maintenance=MaintenanceSettings(end_notice_minutes=15)) as svc:
        hear_notices(svc, notices)
        await svc.maintenance.create(building_id=meter.building, scope=Scope.DEVICE, device_id=meter.id, author="duty", reason="换表",
                                     ends_ms=clock.now_ms() + 60 * MIN * 1000)
        clock.advance(44 * MIN)
        await svc.tick()
        assert notices == []
        clock.advance(1 * MIN)
        await svc.tick()
        await svc.tick()
        assert [n["event"] for n in notices] == ["ending_soon"], "told once, 15 minutes ahead"
        assert "即将结束" in notices[0]["text"]
        assert notices[0]["building_id"] == meter.building
        clock.advance(15 * MIN)
        await svc.tick()
        assert [n["event"] for n in notices] == ["ending_soon", "ended"]


async def test_extending_moves_the_silence_and_ending_early_releases_it(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    meter = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    async with service(tmp_path, sample_site, clock) as svc:
        alarm, _ = await alarm_of(svc, meter, EventKind.ELECTRICAL_ALARM)
        w = await svc.maintenance.create(building_id=meter.building, scope=Scope.DEVICE, device_id=meter.id, author="duty", reason="换表",
                                         ends_ms=clock.now_ms() + 30 * MIN * 1000)
        w = await svc.maintenance.extend(w.id, w.ends_ms + 30 * MIN * 1000, "duty2", "零件未到")
        a = svc.store.get(alarm)
        assert a is not None
        assert (a.state, a.silenced_until_ms) == (AlarmState.SILENCED, w.ends_ms)
        clock.advance(31 * MIN)
        await svc.tick()
        assert state(svc, alarm) is AlarmState.SILENCED, "the old end passed: the extended window still holds it"
        await svc.maintenance.end(w.id, "duty", "提前完工")
        assert state(svc, alarm) is AlarmState.RAISED
        assert [(x.action, x.actor) for x in svc.maintenance.audit(w.id)] == [("create", "duty"), ("extend", "duty2"), ("end", "duty")]
        with pytest.raises(WindowOver):
            await svc.maintenance.end(w.id, "duty", "again")


async def test_life_safety_needs_the_override_and_a_short_window(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    sos = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SOS)
    hour = 3600_000
    async with service(tmp_path, sample_site, clock) as svc:
        m, now = svc.maintenance, clock.now_ms()
        for d in (smoke, sos):
            with pytest.raises(WindowRefused, match="life-safety device"):
                await m.create(building_id=d.building, scope=Scope.DEVICE, device_id=d.id, author="duty", reason="更换", ends_ms=now + hour)
        with pytest.raises(WindowRefused, match="life-safety device"):
            await m.create(building_id=smoke.building, scope=Scope.KIND, device_kind="sos", author="duty", reason="更换", ends_ms=now + hour)
        with pytest.raises(MoveRefused, match="life-safety"):
            await svc.add_window(f"device:{smoke.id}", now + hour, "duty", "the console's old silence route")
        with pytest.raises(WindowRefused, match="at most 120 minutes"):
            await m.create(building_id=smoke.building, scope=Scope.DEVICE, device_id=smoke.id, author="duty", reason="更换",
                           ends_ms=now + 3 * hour, override_reason="更换探头需拆下")
        w = await m.create(building_id=smoke.building, scope=Scope.DEVICE, device_id=smoke.id, author="duty", reason="更换",
                           ends_ms=now + hour, override_reason="更换探头需拆下")
        assert (w.life_safety_override, w.override_reason) == (True, "更换探头需拆下")
        _, s = await alarm_of(svc, smoke, EventKind.SMOKE_ALARM)
        assert s is AlarmState.SILENCED
        with pytest.raises(WindowRefused, match="at most 120 minutes"):
            await m.extend(w.id, now + 2 * hour + 1, "duty", "还没换完")
        with pytest.raises(WindowRefused, match="is not after the start"):
            await m.create(building_id=smoke.building, scope=Scope.BUILDING, author="duty", reason="检修", starts_ms=now + hour, ends_ms=now + hour)
        with pytest.raises(UnknownPlace, match="no device"):
            await m.create(building_id=smoke.building, scope=Scope.DEVICE, device_id="nosuch", author="duty", reason="检修", ends_ms=now + hour)


async def test_a_window_that_starts_later_holds_nothing_until_its_start(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    meter = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    async with service(tmp_path, sample_site, clock) as svc:
        alarm, _ = await alarm_of(svc, meter, EventKind.ELECTRICAL_ALARM)
        await svc.maintenance.create(building_id=meter.building, scope=Scope.DEVICE, device_id=meter.id, author="duty", reason="夜间换表",
                                     starts_ms=clock.now_ms() + 10 * MIN * 1000, ends_ms=clock.now_ms() + 70 * MIN * 1000)
        assert state(svc, alarm) is AlarmState.RAISED
        clock.advance(10 * MIN)
        await svc.tick()
        assert state(svc, alarm) is AlarmState.SILENCED


def test_the_migration_makes_exactly_the_tables_the_windows_use(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from backend.alarms.maintenance import metadata
    from backend.alarms.store import AlarmStore

    engine = make_engine(db_url)
    ENGINES.append(engine)
    AlarmStore(engine)  # migrates to head

    def ours(name: str | None, type_: str, _parent: object) -> bool:
        return type_ != "table" or name in metadata.tables

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True, "include_name": ours}), metadata)
    assert diff == []


async def test_a_building_window_without_the_override_leaves_its_gateway_alarms_live(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The window holds the building's other devices, not its detectors: a gateway that goes offline during it leaves
    those detectors unheard, so its alarm is live and pages. With the override (detectors held too) it is held."""
    clock = VirtualClock()
    building = building_with(sample_site, DeviceKind.SMOKE)
    gateway = next(g for g in sample_site.gateways.values() if g.building == building)
    async with service(tmp_path, sample_site, clock) as svc:
        now = clock.now_ms()
        online = GatewayStatus(msg_id="gs-1", source_ts_ms=now, received_ts_ms=now, state=GatewayState.ONLINE)
        await svc.on_uplink(decode_uplink(str(gateway_status_topic(gateway.id)), encode(online)), now)
        w = await svc.maintenance.create(building_id=building, scope=Scope.BUILDING, author="duty", reason="弱电检修", ends_ms=now + 60 * MIN * 1000)
        assert f"gateway:{gateway.id}" not in svc.maintenance.subjects(w)
        clock.advance(MIN)
        t = clock.now_ms()
        offline = GatewayStatus(msg_id="gs-2", source_ts_ms=t, received_ts_ms=t, state=GatewayState.OFFLINE)
        await svc.on_uplink(decode_uplink(str(gateway_status_topic(gateway.id)), encode(offline)), t)
        [lost] = [a for a in svc.engine.book.open.values() if a.alarm_type == "gateway_offline" and a.place.gateway == gateway.id]
        assert lost.state is AlarmState.RAISED, "its smoke detectors are unheard now: the duty room must know"
        overridden = await svc.maintenance.create(building_id=building, scope=Scope.BUILDING, author="duty", reason="整栋断电检修",
                                                  ends_ms=t + 60 * MIN * 1000, override_reason="整栋断电，探测器一并停用")
        assert f"gateway:{gateway.id}" in svc.maintenance.subjects(overridden)
