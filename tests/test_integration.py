"""The whole backend chain on the embedded system: a smoke event over MQTT becomes an alarm, the ladder pages
the grid worker and the micro fire station at once (notices on their responder-app topics), a responder's
one-tap answer acknowledges the alarm, and the console shows it in the timeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import msgspec
import pytest

from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.settings import load_settings
from backend.sites import SiteDirectory
from backend.sites.model import Role
from broker.clock import SystemClock
from broker.kinds import EventKind
from broker.notices import Notice
from broker.schemas import DeviceEvent, encode
from broker.topics import NOTIFY_PREFIX, event_topic
from shouwang.system import System
from tests.conftest import SAMPLE_SITE
from tests.waiting import until


@pytest.fixture
async def system(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[System]:
    settings = load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, sample_site) as s:
        yield s




async def test_smoke_alarm_pages_the_ladder_and_a_one_tap_answer_acknowledges_it(system: System, sample_site: SiteDirectory) -> None:
    smoke = next(d for d in sample_site.devices.values() if d.kind == "smoke" and d.household)
    grid = sample_site.buildings[smoke.building].grid
    notices: list[tuple[str, Notice]] = []

    async def listen(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(system.broker_host, system.broker_port, identifier="test-responder-apps",
                                  username=system.broker_username, password=system.broker_password) as c:
            await c.subscribe(f"{NOTIFY_PREFIX}/responder/+", qos=1)
            ready.set()
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                notices.append((str(m.topic).rsplit("/", 1)[-1], msgspec.json.decode(m.payload, type=Notice)))

    async with httpx.AsyncClient(base_url=system.backend.url) as http, asyncio.TaskGroup() as tg:
        token = (await http.post("/api/login", json={"username": "admin", "password": "test-pass"})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        ready = asyncio.Event()
        listener = tg.create_task(listen(ready), name="test-listener")
        await asyncio.wait_for(ready.wait(), 10)
        async with aiomqtt.Client(system.broker_host, system.broker_port, username=system.broker_username, password=system.broker_password) as mqtt:
            now = int(time.time() * 1000)
            event = DeviceEvent(msg_id="it-smoke-1", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM)
            await mqtt.publish(event_topic(smoke.gateway, smoke.id), encode(event), qos=1)

        async def alarm() -> dict[str, Any] | None:
            rows = (await http.get("/api/alarms", headers=auth)).json()["alarms"]
            return next((a for a in rows if a.get("device_id") == smoke.id), None)

        raised = await until(alarm, 5, "the smoke alarm")
        paged = await until(lambda: _paged(notices, sample_site), 5, "notices to the grid worker and the micro fire station")
        listener.cancel()

    roles = {role for role, _ in paged}
    assert {Role.GRID_WORKER, Role.FIRE_STATION_HEAD} <= roles or {Role.GRID_WORKER, Role.FIRE_STATION_MEMBER} <= roles, roles
    grid_worker_notice = next(n for r, n in paged if r is Role.GRID_WORKER)
    assert grid_worker_notice.alarm_id == raised["id"]
    assert any(sample_site.responders[rid].grid == grid for rid, _ in notices if rid in sample_site.responders and sample_site.responders[rid].grid)
    assert grid_worker_notice.link is None  # any broker client may read the notice: its one-tap link goes by SMS only (issue 22)
    grid_worker = next(rid for rid, n in notices if n is grid_worker_notice)
    signer = TokenSigner((system.settings.storage.data_dir / "secret.key").read_bytes())  # the link her SMS would carry
    one_tap = OneTapLinks(signer, SystemClock()).token(raised["id"], grid_worker)

    async with httpx.AsyncClient(base_url=system.backend.url) as http:
        answer = await http.post(f"/api/responses/{one_tap}", json={"response": "acknowledge"})
        assert answer.status_code == 200, answer.text
        token = (await http.post("/api/login", json={"username": "admin", "password": "test-pass"})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def acknowledged() -> dict[str, Any] | None:
            detail = (await http.get(f"/api/alarms/{raised['id']}", headers=auth)).json()
            return detail if detail["alarm"]["state"] == "acknowledged" else None

        detail = await until(acknowledged, 5, "the alarm to be acknowledged")
        ladder = (await http.get(f"/api/escalation/{raised['id']}", headers=auth)).json()
    assert any(e["source"] == "lifecycle" and e["to_state"] == "acknowledged" for e in detail["timeline"])
    assert detail["ladder"] is not None
    assert {r["rung"] for r in detail["ladder"]["rungs"]} >= {"grid_worker", "fire_station"}
    assert ladder  # the escalation timeline is served


def _paged(notices: list[tuple[str, Notice]], sites: SiteDirectory) -> list[tuple[Role, Notice]] | None:
    out = [(sites.responders[rid].role, n) for rid, n in notices if rid in sites.responders]
    roles = {r for r, _ in out}
    has_station = roles & {Role.FIRE_STATION_HEAD, Role.FIRE_STATION_MEMBER}
    return out if Role.GRID_WORKER in roles and has_station else None


async def test_a_storm_of_200_smoke_alarms_is_stored_in_seconds_and_every_one_gets_a_ladder(system: System, sample_site: SiteDirectory) -> None:
    """Before alarms were batched per burst and ladders started off the alarm path, this took ~50 s."""
    smokes = [d for d in sample_site.devices.values() if d.kind == "smoke" and d.household][:200]
    service = system.backend.alarm_service
    async with aiomqtt.Client(system.broker_host, system.broker_port, username=system.broker_username, password=system.broker_password) as mqtt:
        now = int(time.time() * 1000)
        started = time.monotonic()
        for i, d in enumerate(smokes):
            event = DeviceEvent(msg_id=f"storm-{i}", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM)
            await mqtt.publish(event_topic(d.gateway, d.id), encode(event), qos=1)

    def stored() -> set[str | None]:
        return {a.device_id for a in service.store.list(open_only=True, limit=1000) if a.alarm_type == "smoke"}

    await until(lambda: len(stored()) >= 200 or None, 15, "200 smoke alarms in the store")
    stored_after = time.monotonic() - started
    assert stored() == {d.id for d in smokes}
    assert stored_after < 15
    ladder = system.backend.escalation.service
    ids = [a.id for a in service.store.list(open_only=True, limit=1000) if a.alarm_type == "smoke"]

    async def all_started() -> bool | None:
        states = [await ladder.get(i) for i in ids]
        return all(s is not None for s in states) or None

    await until(all_started, 120, "a ladder for every storm alarm")


async def test_an_alarm_stored_without_its_ladder_gets_one_after_a_restart(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """A crash between storing an alarm and starting its ladder must not leave the alarm with nobody."""
    from backend.alarms.service import AlarmService
    from backend.store.db import make_engine, sqlite_url
    from broker.clock import SystemClock
    from broker.schemas import decode_uplink

    data = tmp_path / "var"
    data.mkdir()
    smoke = next(d for d in sample_site.devices.values() if d.kind == "smoke" and d.household)
    engine = make_engine(sqlite_url(data / "alarms.db"))
    async with AlarmService.for_sites(engine, sample_site, SystemClock()) as service:  # no ladder attached: the "crash"
        now = int(time.time() * 1000)
        event = DeviceEvent(msg_id="orphan-1", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM)
        await service.on_uplink(decode_uplink(str(event_topic(smoke.gateway, smoke.id)), encode(event)), now)
        [alarm] = [a for a in service.store.list(open_only=True) if a.device_id == smoke.id]
    engine.dispose()
    settings = load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": data},
                             simulate={"enabled": False, "site_file": SAMPLE_SITE})
    async with System(settings, sample_site) as s:
        state = await until(lambda: s.backend.escalation.service.get(alarm.id), 10, "the ladder of the stored alarm")
    assert state.facts.alarm_id == alarm.id


async def test_patrols_come_back_through_the_running_system_and_a_cut_uplink_raises_patrol_missed(tmp_path: Path) -> None:
    """Patrol (巡检) on `shouwang run`'s wiring: simulated gateways answer like edge agents; one whose uplink is
    cut raises `patrol_missed` within one patrol period, and the duty officers are its ladder."""
    from backend.sites import generate_site_document, parse_site_directory

    doc = generate_site_document(1, grids=1, buildings_per_grid=2)
    site_file = tmp_path / "small.yaml"
    from backend.sites import write_site_document

    write_site_document(doc, site_file)
    sites = parse_site_directory(site_file.read_text(encoding="utf-8"), str(site_file))
    period_s, grace_s = 3.0, 3.0
    settings = load_settings(None, api={"port": 0, "admin_password": "test-pass"}, storage={"data_dir": tmp_path / "var"},
                             simulate={"enabled": True, "site_file": site_file},
                             patrol={"period_s": period_s, "window_s": 1.0, "start_grace_s": grace_s})
    async with System(settings, sites) as s:
        patrol = s.backend.patrol
        assert patrol is not None
        await until(lambda: len({r.gateway for r in patrol.returns}) == len(sites.gateways) or None, grace_s + 3 * period_s,
                    "a returned patrol from every gateway")
        assert not patrol.misses, "the start grace lets the simulated gateways connect before the first patrol"
        cut = sorted(sites.gateways)[0]
        s.simulator.cut_uplink(cut, 600)
        cut_at = time.monotonic()

        def missed() -> list[Any] | None:
            rows = [a for a in s.backend.alarm_service.store.list(open_only=True) if a.alarm_type == "patrol_missed"]
            return rows or None

        [alarm] = await until(missed, period_s + 1.5, "the patrol_missed alarm")
        assert time.monotonic() - cut_at <= period_s + 1.5  # within one patrol period (plus scheduling slack)
        assert alarm.gateway_id == cut
        ladder = await until(lambda: s.backend.escalation.service.get(alarm.id), 5, "the patrol alarm's ladder")
        assert [e.rung for e in ladder.engagements] == ["duty_officer"]
