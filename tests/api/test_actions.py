"""The duty officer's actions through the API, on the real alarm service: every move lands in the audit log
with the logged-in user as actor, and the detail's timeline shows it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerting.lifecycle import AlarmState
from alerting.model import Severity
from backend.api.app import create_app
from backend.sites import SiteDirectory
from backend.sites.generator import generate_site_document
from backend.sites.loader import parse_site_directory
from backend.store.db import make_engine, sqlite_url
from broker.kinds import DeviceKind, EventKind
from tests.api.conftest import ApiRig, make_rig
from tests.escalation.centre import centre, centre_api


async def test_acknowledge_on_behalf_is_recorded_as_such(rig: ApiRig) -> None:
    alarm = await rig.smoke(rig.device("c01-g1"))
    r = await rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={"on_behalf_of": "c01-g1-w1", "note": "phoned in"})
    assert r.status_code == 200, r.text
    assert r.json()["alarm"]["state"] == "acknowledged"
    detail = (await rig.client.get(f"/api/alarms/{alarm}", headers=rig.auth("duty"))).json()
    ack = next(e for e in detail["timeline"] if e["what"] == "acknowledge")
    assert ack["actor"] == "duty"
    assert "c01-g1-w1" in ack["note"]
    behalf = next(e for e in detail["timeline"] if e["what"] == "acknowledge_on_behalf")
    assert (behalf["actor"], behalf["on_behalf_of"], behalf["note"]) == ("duty", "c01-g1-w1", "phoned in")
    field = await rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("gw1"), json={"on_behalf_of": "c01-g1-w1"})
    assert field.status_code == 403, "a grid worker acknowledges for themself, not on someone's behalf"
    assert "duty_officer" in field.json()["detail"]
    unknown = await rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={"on_behalf_of": "nobody"})
    assert unknown.status_code == 422
    again = await rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={})
    assert again.status_code == 409
    assert "确认" in again.json()["detail"]


async def test_an_acknowledgement_and_a_close_sent_at_once_both_stand(rig: ApiRig) -> None:
    """Two requests on one alarm at the same moment (a drill's responder phoning in while the officer closes it):
    each read the alarm as raised; the close's own acknowledge then meets an alarm already acknowledged (or the
    acknowledgement one already closed). Neither is a conflict for the person: both are answered, the alarm is
    closed, and each move is in the audit once."""
    for _ in range(5):
        alarm = await rig.smoke(rig.device("c01-g1"))
        ack, close = await asyncio.gather(
            rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={"on_behalf_of": "c01-g1-w1", "note": "phoned in"}),
            rig.client.post(f"/api/alarms/{alarm}/close", headers=rig.auth("duty"), json={"outcome": "real", "note": "kitchen fire put out"}))
        assert close.status_code == 200, close.text
        assert ack.status_code in (200, 409), ack.text
        if ack.status_code == 409:  # the close came first and finished: acknowledging a closed alarm is refused, as before
            assert ack.json()["detail"]
        detail = (await rig.client.get(f"/api/alarms/{alarm}", headers=rig.auth("duty"))).json()
        assert detail["alarm"]["state"] == "closed"
        moves = [e["what"] for e in detail["timeline"] if e["source"] == "lifecycle"]
        assert moves.count("acknowledge") == 1, moves
        assert moves[-1] == "verify_close", moves


async def test_verify_dispatch_and_close_as_real(rig: ApiRig) -> None:
    alarm = await rig.smoke(rig.device("c01-g1"))
    v = await rig.client.post(f"/api/alarms/{alarm}/verify", headers=rig.auth("duty"), json={"note": "camera shows smoke"})
    assert v.status_code == 200
    assert v.json()["alarm"]["state"] == "acknowledged"
    d = await rig.client.post(f"/api/alarms/{alarm}/dispatch", headers=rig.auth("duty"), json={"responder_id": "c01-mfs-head"})
    assert d.status_code == 200, d.text
    no_note = await rig.client.post(f"/api/alarms/{alarm}/close", headers=rig.auth("duty"), json={"outcome": "real"})
    assert no_note.status_code == 422
    assert "note" in no_note.json()["detail"]
    rig.clock.advance(120)
    closed = await rig.client.post(f"/api/alarms/{alarm}/close", headers=rig.auth("duty"), json={"outcome": "real", "note": "kitchen fire put out"})
    assert closed.status_code == 200, closed.text
    assert closed.json()["alarm"]["state"] == "closed"
    moves = [(e.actor, e.move) for e in rig.service.store.audit(alarm)]
    assert moves[-2:] == [("duty", "finish"), ("duty", "verify_close")]
    detail = (await rig.client.get(f"/api/alarms/{alarm}", headers=rig.auth("duty"))).json()
    whats = [e["what"] for e in detail["timeline"]]
    assert {"verify", "dispatch", "close_real", "verify_close"} <= set(whats)
    twice = await rig.client.post(f"/api/alarms/{alarm}/close", headers=rig.auth("duty"), json={"outcome": "false_alarm", "note": "again"})
    assert twice.status_code == 409


async def test_close_as_false_alarm_and_board_order(rig: ApiRig) -> None:
    low = await rig.smoke(rig.device("c01-g1", n=3), event=EventKind.LOW_BATTERY)
    rig.clock.advance(5)
    first = await rig.smoke(rig.device("c01-g1", n=1))
    rig.clock.advance(5)
    second = await rig.smoke(rig.device("c01-g1", n=2))
    board = [a["id"] for a in (await rig.client.get("/api/alarms?open=true", headers=rig.auth("duty"))).json()["alarms"]]
    assert board == [first, second, low]  # life safety and severity first, then the oldest
    r = await rig.client.post(f"/api/alarms/{first}/close", headers=rig.auth("gw1"), json={"outcome": "false_alarm", "note": "burnt toast"})
    assert r.json()["alarm"]["state"] == "false_alarm"
    board = [a["id"] for a in (await rig.client.get("/api/alarms?open=true", headers=rig.auth("duty"))).json()["alarms"]]
    assert board == [second, low]


async def test_silence_a_device_for_maintenance(rig: ApiRig) -> None:
    dev = rig.device("c01-g1", DeviceKind.ELECTRICAL, n=4)  # a smoke detector needs the life-safety override (tests/api/test_maintenance_api.py)
    alarm = await rig.smoke(dev, event=EventKind.ELECTRICAL_ALARM)
    r = await rig.client.post(f"/api/devices/{dev.id}/silence", headers=rig.auth("duty"), json={"minutes": 60, "note": "detector replaced"})
    assert r.status_code == 200, r.text
    assert r.json()["silenced_alarms"] == 1
    a = rig.service.store.get(alarm)
    assert a is not None
    assert a.state.value == "silenced"
    assert (a.silenced_by, a.silenced_until_ms) == ("duty", rig.clock.now_ms() + 3_600_000)
    assert (await rig.client.post(f"/api/devices/{dev.id}/silence", headers=rig.auth("gw1"), json={"minutes": 60, "note": "x1"})).status_code == 403
    bad = await rig.client.post(f"/api/devices/{dev.id}/silence", headers=rig.auth("duty"), json={"minutes": 0, "note": "x1"})
    assert bad.status_code == 422
    assert "minutes" in bad.json()["detail"]


async def test_map_and_health_follow_the_alarms(rig: ApiRig) -> None:
    dev = rig.device("c01-g1")
    cam = next(d for d in rig.sites.devices.values() if d.kind == "camera" and d.building == dev.building)

    def level(site: dict[str, Any], building: str | None) -> str:
        return str(next(b["risk"]["level"] for b in site["buildings"] if b["id"] == building))

    site = (await rig.client.get("/api/site/map", headers=rig.auth("duty"))).json()
    assert level(site, dev.building) == "green"
    alarm = await rig.smoke(dev)
    site = (await rig.client.get("/api/site/map", headers=rig.auth("duty"))).json()
    assert level(site, dev.building) == "red"
    drill = await rig.smoke(rig.device("c01-g2"), drill=True)
    site = (await rig.client.get("/api/site/map", headers=rig.auth("duty"))).json()
    stored = rig.service.store.get(drill)
    assert stored is not None
    drill_building = stored.place.building
    assert level(site, drill_building) == "green", "a drill never colours a building by itself"
    board = (await rig.client.get("/api/alarms?open=true", headers=rig.auth("duty"))).json()
    assert board["drill_open"] == 1
    await rig.client.post(f"/api/alarms/{alarm}/close", headers=rig.auth("duty"), json={"outcome": "false_alarm", "note": "test"})
    site = (await rig.client.get("/api/site/map", headers=rig.auth("duty"))).json()
    assert level(site, dev.building) == "green"

    # a camera goes offline: its building turns yellow and its online rate drops below 98 %
    from broker.kinds import AvailabilityState
    from broker.schemas import DeviceAvailability, decode_uplink, encode
    from broker.topics import availability_topic

    now = rig.clock.now_ms()
    for n, state in enumerate((AvailabilityState.ONLINE, AvailabilityState.OFFLINE)):  # in service, then lost (never heard: not yet commissioned)
        msg = DeviceAvailability(msg_id=f"av{n}", source_ts_ms=now, received_ts_ms=now, state=state)
        await rig.service.on_uplink(decode_uplink(str(availability_topic(cam.gateway, cam.id)), encode(msg)), now)
    site = (await rig.client.get("/api/site/map", headers=rig.auth("duty"))).json()
    assert level(site, cam.building) == "yellow"
    health = (await rig.client.get("/api/health/devices", headers=rig.auth("duty"))).json()
    assert [d["id"] for d in health["offline"]] == [cam.id]
    row = next(b for b in health["buildings"] if b["id"] == cam.building)
    assert row["camera_online"] == row["camera_cameras"] - 1
    assert row["camera_meets_target"] is (row["camera_rate"] >= 0.98)
    building = (await rig.client.get(f"/api/buildings/{cam.building}", headers=rig.auth("duty"))).json()
    assert next(d for d in building["devices"] if d["id"] == cam.id)["status"] == "offline"


async def test_dispatch_stays_in_the_alarms_community_unless_the_officer_holds_the_other(tmp_path: Path) -> None:
    """On a street of two communities: a community's grid worker cannot dispatch the other community's fire station
    (422 with what to do), and it is not offered in the alarm's list; the street's duty officer (everywhere) can,
    as mutual aid."""
    street = parse_site_directory(yaml.safe_dump(generate_site_document(communities=2), allow_unicode=True))
    async with make_rig(tmp_path, street) as rig:
        alarm = await rig.smoke(rig.device("c01-g1"))
        other = next(r for r in street.responders.values() if r.community == "c02" and r.role.value == "fire_station_head")
        own = next(r for r in street.responders.values() if r.community == "c01" and r.role.value == "fire_station_head")
        offered = {x["id"] for x in (await rig.client.get(f"/api/alarms/{alarm}", headers=rig.auth("gw1"))).json()["responders"]}
        assert own.id in offered
        assert other.id not in offered
        refused = await rig.client.post(f"/api/alarms/{alarm}/dispatch", headers=rig.auth("gw1"), json={"responder_id": other.id})
        assert refused.status_code == 422, refused.text
        assert "c02" in refused.json()["detail"]
        assert "辖区" in refused.json()["detail"]
        ok = await rig.client.post(f"/api/alarms/{alarm}/dispatch", headers=rig.auth("gw1"), json={"responder_id": own.id})
        assert ok.status_code == 200, ok.text
        aid = await rig.client.post(f"/api/alarms/{alarm}/dispatch", headers=rig.auth("duty"), json={"responder_id": other.id})
        assert aid.status_code == 200, aid.text


# -- one owner: the console asks the alarm service; the ladder learns from the committed result --------------------------

_REFUSED = ("refused", "not applied", "IllegalMove", "cannot take the move")


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if any(w in r.getMessage() for w in _REFUSED)]


async def test_a_console_acknowledgement_is_one_move_one_audit_entry_and_the_ladder_learns_it_from_the_commit(
    tmp_path: Path, sample_site: SiteDirectory, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the route moved the alarm, then told the ladder again (`respond`), which recorded the officer's answer a
    second time and could ask the bridge to move the alarm once more (refused: the alarm had already moved)."""
    caplog.set_level(logging.DEBUG)
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    async with centre(engine, sample_site) as c, centre_api(c) as api:
        assert c.alarms is not None
        assert c.escalation is not None
        smoke = await c.raise_()
        lost = await c.raise_("communication_lost", "device:c01-b01-cam-1", severity=Severity.MINOR, life_safety=False)  # the duty officer's rung
        await c.settle()
        for aid in (smoke, lost):
            r = await api.client.post(f"/api/alarms/{aid}/acknowledge", headers=api.duty, json={"note": "看到了"})
            assert r.status_code == 200, r.text
            assert r.json()["alarm"]["state"] == "acknowledged"
        await c.settle()
        for aid in (smoke, lost):
            audit = [(e.actor, e.move) for e in c.alarms.store.audit(aid)]
            assert audit.count(("duty", "acknowledge")) == 1
            assert [m for _, m in audit].count("acknowledge") == 1, audit
            log = c.log(aid)
            assert [(e.kind, e.detail) for e in log if e.kind in ("observed", "response")] == [("observed", "duty: acknowledge (covers duty_officer)")
                                                                                              if aid == lost else ("observed", "duty: acknowledge (covers -)")]
            state = await c.escalation.get(aid)
            assert state is not None
            assert state.reached_ms(AlarmState.ACKNOWLEDGED) == c.clock.now_ms()
        assert refused_lines(caplog) == []
        # the acknowledgement answers the command room's rung: it stops repeating and never climbs
        paged_before = len(c.pages(lost, "repeat")) + len(c.pages(lost, "escalate"))
        for _ in range(10):
            c.clock.advance(60)
            await c.escalation.run_due()
        assert len(c.pages(lost, "repeat")) + len(c.pages(lost, "escalate")) == paged_before
        lost_state = await c.escalation.get(lost)
        assert lost_state is not None
        assert [(e.rung, e.progress) for e in lost_state.engagements] == [("duty_officer", AlarmState.ACKNOWLEDGED)]
    engine.dispose()


async def test_a_server_without_the_alarm_service_writes_no_move_beside_it(rig: ApiRig) -> None:
    """Before: `StoreMoves` wrote lifecycle moves straight to the store when no alarm service was wired (beside the
    alarm service's book, which then disagreed with the table). Now the alarm service is the only writer: no owner
    to ask, 503, nothing written."""
    alarm = await rig.smoke(rig.device("c01-g1"))
    before = [(e.actor, e.move) for e in rig.service.store.audit(alarm)]
    unowned = dataclasses.replace(rig.deps, alarm_service=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(unowned)), base_url="http://api") as client:
        r = await client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={})
        assert r.status_code == 503, r.text
        assert "alarm service" in r.json()["detail"]
    assert [(e.actor, e.move) for e in rig.service.store.audit(alarm)] == before
    assert rig.service.store.get(alarm).state is AlarmState.RAISED  # type: ignore[union-attr]
