"""The alarm service end to end on SQLite: uplinks in, alarms and audit out, moves, restart on a virtual clock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from alerting.book import replay
from alerting.config import RuleConfigError
from alerting.lifecycle import AlarmState, Move
from alerting.model import Persist
from backend.alarms.service import AlarmService, MoveRefused, NoSuchAlarm
from backend.ingest.handoff import Reading
from backend.sites.model import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.stream import Event
from broker.clock import ScaledClock, VirtualClock
from broker.kinds import AvailabilityState, DeviceKind, EventKind, GatewayState
from broker.schemas import DeviceAvailability, DeviceEvent, GatewayStatus, Uplink, decode_uplink, encode
from broker.topics import availability_topic, event_topic, gateway_status_topic


def event(gateway: str, device: str, kind: EventKind, ts: int, n: int, **kw: object) -> Uplink:
    msg = DeviceEvent(msg_id=f"m-{n}", source_ts_ms=ts, received_ts_ms=ts, event=kind, **kw)  # type: ignore[arg-type]
    return decode_uplink(str(event_topic(gateway, device)), encode(msg))


def service(tmp_path: Path, sites: SiteDirectory, clock: VirtualClock) -> AlarmService:
    return AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sites, clock, tick_s=3600)


def first(sites: SiteDirectory, kind: DeviceKind) -> tuple[str, str]:
    d = next(d for d in sites.devices.values() if d.kind is kind)
    return d.id, d.gateway


async def test_a_smoke_alarm_is_stored_with_its_place_and_audit_and_people_move_it(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    async with service(tmp_path, sample_site, clock) as svc:
        assert svc.ready.is_set()
        await svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 1), clock.now_ms())
        await svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 2, drill=True), clock.now_ms())
        real = svc.store.list(open_only=True, drill=False)
        assert [(r.alarm_type, r.severity, r.life_safety, r.drill) for r in real] == [("smoke", "critical", True, False)]
        [r] = real
        building = sample_site.buildings[sample_site.devices[smoke].building]
        assert (r.building_id, r.grid_id, r.community_id) == (building.id, building.grid, sample_site.grids[building.grid].community)
        assert svc.store.counts(drill=True) == {"smoke": 1}
        clock.advance(5)
        a = await svc.move(r.id, Move.ACKNOWLEDGE, "officer:zhang", note="我已收到")
        assert a.state is AlarmState.ACKNOWLEDGED
        with pytest.raises(MoveRefused):
            await svc.move(r.id, Move.VERIFY_CLOSE, "officer:zhang")
        with pytest.raises(MoveRefused, match="only a person"):
            await svc.move(r.id, Move.DEPART, "system")
        with pytest.raises(NoSuchAlarm):
            await svc.move("nope", Move.ARCHIVE, "officer:zhang")
        for m in (Move.DEPART, Move.ARRIVE, Move.FINISH, Move.VERIFY_CLOSE):
            clock.advance(30)
            await svc.move(r.id, m, "grid:wang")
        archived = await svc.move(r.id, Move.ARCHIVE, "officer:zhang")
        assert archived.state is AlarmState.ARCHIVED
        audit = svc.store.audit(r.id)
        assert [e.move for e in audit] == ["raise", "acknowledge", "depart", "arrive", "finish", "verify_close", "archive"]
        assert audit[1].actor == "officer:zhang"
        assert audit[1].note == "我已收到"
        assert replay(audit) is AlarmState.ARCHIVED
        assert svc.store.get(r.id) is not None


async def test_self_tests_are_recorded_and_readings_raise_threshold_alarms(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    box = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    async with service(tmp_path, sample_site, clock) as svc:
        await svc.on_uplink(event(gw, smoke, EventKind.SELF_TEST, clock.now_ms(), 1), clock.now_ms())
        assert [r.kind for r in svc.store.device_records(smoke)] == ["self_test"]
        assert svc.store.list() == []
        for i in range(2):
            t = clock.now_ms() + i * 60_000
            await svc.on_readings([Reading(box.id, box.gateway, "residual_current_ma", 350.0, t, t)])
        [r] = svc.store.list(open_only=True)
        assert (r.alarm_type, r.device_id) == ("residual_current", box.id)


async def test_a_detectors_own_settings_from_the_site_directory_decide_its_alarms(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A unit's distribution box carries its feeder's overload level (250 A) in the site directory: 100 A for minutes
    is normal there, while a flat's meter at 40 A (the household default, 32 A) is an overload."""
    clock = VirtualClock()
    box = next(d for d in sample_site.devices.values() if d.location == "配电箱")
    flat = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL and d.household)
    assert sample_site.rule_settings[box.id] == {"overload": {"above": 250, "clear": 220}}
    assert flat.id not in sample_site.rule_settings
    async with service(tmp_path, sample_site, clock) as svc:
        for i in range(4):
            t = clock.now_ms() + i * 60_000
            await svc.on_readings([Reading(box.id, box.gateway, "current_a", 100.0, t, t), Reading(flat.id, flat.gateway, "current_a", 40.0, t, t)])
        assert [(r.alarm_type, r.device_id) for r in svc.store.list(open_only=True)] == [("overload", flat.id)]


def test_a_wrong_setting_in_the_site_directory_stops_the_start_naming_the_device(tmp_path: Path, sample_site: SiteDirectory) -> None:
    box = next(d for d in sample_site.devices.values() if d.location == "配电箱")
    site = dataclasses.replace(sample_site, rule_settings={box.id: {"overlaod": {"above": 250}}})
    with pytest.raises(RuleConfigError, match=f"site directory: devices\\.{box.id}\\.overlaod: no such rule"):
        service(tmp_path, site, VirtualClock())


async def test_a_smoke_alarm_waiting_for_the_lock_goes_between_chunks_of_readings(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """Telemetry is decided in chunks with the lock released between them: a smoke alarm that arrives while a big
    batch of readings is being decided is committed before the batch's later chunks, not after all of them."""
    clock = VirtualClock()
    flats = [d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL and d.household][:6]
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    svc = AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600, readings_chunk=3)
    committed: list[set[str]] = []

    async def listen(actions: Sequence[Event]) -> None:
        committed.append({a.alarm.alarm_type for a in actions if isinstance(a, Persist)})

    svc.stream.subscribe(listen, name="test")
    t0 = clock.now_ms()
    readings = [Reading(f.id, f.gateway, "current_a", 40.0, t0 + k * 61_000, t0) for f in flats for k in range(3)]  # 3 per flat: a chunk
    async with svc:
        batch = asyncio.create_task(svc.on_readings(readings))
        await asyncio.sleep(0)  # the batch holds the lock for its first chunk
        await svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, t0, 1), t0)
        await batch
    overloads = [i for i, types in enumerate(committed) if "overload" in types]
    assert len(overloads) == 6, committed
    smoke_at = next(i for i, types in enumerate(committed) if "smoke" in types)
    assert smoke_at < overloads[-1], f"the smoke alarm waited for the whole batch: {committed}"


async def test_restart_rederives_timers_and_keeps_one_alarm_per_key(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    async with service(tmp_path, sample_site, clock) as svc:
        now = clock.now_ms()  # every camera in service (reported once): a camera never heard is not yet commissioned, never lost
        await svc.on_uplink_batch([(decode_uplink(str(availability_topic(d.gateway, d.id)), encode(DeviceAvailability(
            msg_id=f"av-{d.id}", source_ts_ms=now, received_ts_ms=now, state=AvailabilityState.ONLINE))), now)
            for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA])
        await svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 1), clock.now_ms())
        status = GatewayStatus(msg_id="gs-1", source_ts_ms=clock.now_ms(), received_ts_ms=clock.now_ms(), state=GatewayState.OFFLINE)
        other_gw = next(g for g in sample_site.gateways if g != gw)
        await svc.on_uplink(decode_uplink(str(gateway_status_topic(other_gw)), encode(status)), clock.now_ms())
        clock.advance(100)
        await svc.tick()
        assert {r.alarm_type for r in svc.store.list(open_only=True)} == {"smoke", "gateway_offline"}
    # down for 200 s; cameras (3 x 60 s) behind the healthy gateways are overdue now, those behind the offline one are unknown
    clock.advance(200)
    async with service(tmp_path, sample_site, clock) as svc:
        assert len(svc.engine.book.open) == 2
        await svc.tick()
        lost = [r for r in svc.store.list(open_only=True, limit=1000) if r.alarm_type == "comm_lost"]
        cams_ok = [d for d in sample_site.devices.values() if d.kind is DeviceKind.CAMERA and d.gateway != other_gw]
        assert {r.device_id for r in lost} >= {d.id for d in cams_ok}
        assert not any(r.gateway_id == other_gw for r in lost), "devices behind an offline gateway are unknown, not lost"
        await svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 9), clock.now_ms())
        smokes = [r for r in svc.store.list(open_only=True, limit=1000) if r.alarm_type == "smoke"]
        assert [s.occurrences for s in smokes] == [2], "the restart kept one open alarm for the key"


def test_the_service_is_an_alerting_feed(tmp_path: Path, sample_site: SiteDirectory) -> None:
    from backend.ingest.handoff import AlertingFeed

    feed: AlertingFeed = service(tmp_path, sample_site, VirtualClock())  # mypy checks the protocol here
    assert callable(feed.on_uplink)
    assert callable(feed.on_readings)


async def test_the_ticker_ticks_in_the_clocks_time(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """tick_s of an hour on a clock running 36,000 times faster is a tick every 0.1 s of wall time, not every hour."""
    clock = ScaledClock(36_000)  # a drill's compressed clock
    svc = AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sample_site, clock, tick_s=3600)
    async with svc:
        await asyncio.sleep(0.55)
    assert svc.stats["ticks"] >= 3


async def test_a_storm_in_one_unit_commits_each_alarm_once_with_every_audit_entry(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """Issue 19: the smoke alarms of one unit handed over together raise the unit's confirmed fire once and count it
    again with each later smoke. The commit carries each alarm once, as the batch left it, with every audit entry (it
    used to carry the confirmed fire once per smoke: a row write, a stream event and a feed event each)."""
    clock = VirtualClock()
    units: dict[tuple[str | None, int | None], list[tuple[str, str]]] = {}
    for d in sample_site.devices.values():
        if d.kind is DeviceKind.SMOKE:
            units.setdefault((d.building, d.unit), []).append((d.id, d.gateway))
    smokes = max(units.values(), key=len)
    assert len(smokes) >= 4, "the sample site has a unit with several smoke detectors"
    async with service(tmp_path, sample_site, clock) as svc:
        with svc.stream.tap() as heard:
            now = clock.now_ms()
            await svc.on_uplink_batch([(event(gw, dev, EventKind.SMOKE_ALARM, now, k), now) for k, (dev, gw) in enumerate(smokes)])
            events = [heard.get_nowait() for _ in range(heard.qsize())]
    persists = [e for e in events if isinstance(e, Persist)]
    ids = [p.alarm.id for p in persists]
    assert len(ids) == len(set(ids)), "each alarm once in the commit"
    fire = next(p for p in persists if p.alarm.alarm_type == "confirmed_fire")
    assert fire.alarm.occurrences == len(smokes) - 1, "counted by every smoke after the second"
    assert [e.move for e in fire.audit] == ["raise"]
    assert sorted(p.alarm.place.device or "" for p in persists if p.alarm.alarm_type == "smoke") == sorted(dev for dev, _ in smokes)
    [stored] = [r for r in svc.store.list(open_only=True) if r.alarm_type == "confirmed_fire"]
    assert stored.occurrences == len(smokes) - 1
    assert [e.move for e in svc.store.audit(stored.id)] == ["raise"]
