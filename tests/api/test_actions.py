"""The duty officer's actions through the API, on the real alarm service: every move lands in the audit log
with the logged-in user as actor, and the detail's timeline shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backend.sites.generator import generate_site_document
from backend.sites.loader import parse_site_directory
from broker.kinds import DeviceKind, EventKind
from tests.api.conftest import ApiRig, make_rig


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
