"""Roles and territory: who may see and do what, where; sessions and machine API tokens; JSON errors."""

from __future__ import annotations

from backend.api.auth import ROLE_CAPABILITIES, Capability, Territory
from backend.store.users import User, UserRole
from broker.kinds import EventKind
from tests.api.conftest import PASSWORD, ApiRig


async def test_login_and_errors_are_json_with_a_reason(rig: ApiRig) -> None:
    c = rig.client
    ok = await c.post("/api/login", json={"username": "duty", "password": PASSWORD})
    assert ok.status_code == 200
    assert ok.json()["role"] == "duty_officer"
    bad = await c.post("/api/login", json={"username": "duty", "password": "nope"})
    assert bad.status_code == 401
    assert bad.json()["detail"] == "用户名或密码错误"
    machine = await c.post("/api/login", json={"username": "gw1", "password": "anything"})  # a user without a password cannot log in
    assert machine.status_code == 401
    anon = await c.get("/api/alarms")
    assert anon.status_code == 401
    assert "请先登录" in anon.json()["detail"]
    forged = await c.get("/api/alarms", headers={"Authorization": "Bearer abc.def"})
    assert forged.status_code == 401
    assert "重新登录" in forged.json()["detail"]
    invalid = await c.post("/api/login", json={"username": "", "password": 3})
    assert invalid.status_code == 422
    body = invalid.json()
    assert isinstance(body["detail"], str)
    assert "username" in body["detail"]
    assert {e["loc"][-1] for e in body["errors"]} == {"username", "password"}


async def test_grid_worker_sees_and_acts_on_her_own_grid_only(rig: ApiRig) -> None:
    mine = await rig.smoke(rig.device("c01-g1"))
    theirs = await rig.smoke(rig.device("c01-g2"))
    listed = (await rig.client.get("/api/alarms", headers=rig.auth("gw1"))).json()["alarms"]
    assert [a["id"] for a in listed] == [mine]
    everyone = (await rig.client.get("/api/alarms", headers=rig.auth("duty"))).json()["alarms"]
    assert {a["id"] for a in everyone} == {mine, theirs}

    other = await rig.client.get(f"/api/alarms/{theirs}", headers=rig.auth("gw1"))
    assert other.status_code == 404
    assert "辖区" in other.json()["detail"]
    refused = await rig.client.post(f"/api/alarms/{theirs}/acknowledge", headers=rig.auth("gw1"), json={})
    assert refused.status_code == 404
    stored = rig.service.store.get(theirs)
    assert stored is not None
    assert stored.state.value == "raised"  # unchanged

    done = await rig.client.post(f"/api/alarms/{mine}/acknowledge", headers=rig.auth("gw1"), json={"note": "on my way"})
    assert done.status_code == 200, done.text
    assert done.json()["alarm"]["state"] == "acknowledged"
    audit = rig.service.store.audit(mine)
    assert (audit[-1].actor, audit[-1].move) == ("gw1", "acknowledge")

    # the map and device routes keep to the territory too
    site = (await rig.client.get("/api/site/map", headers=rig.auth("gw1"))).json()
    assert {b["grid"] for b in site["buildings"]} == {"c01-g1"}
    other_building = next(b for b in rig.sites.buildings.values() if b.grid == "c01-g2")
    assert (await rig.client.get(f"/api/buildings/{other_building.id}", headers=rig.auth("gw1"))).status_code == 404
    other_device = rig.device("c01-g2")
    assert (await rig.client.get(f"/api/devices/{other_device.id}/latest", headers=rig.auth("gw1"))).status_code == 404
    feed = (await rig.client.get("/api/feed/events?after=" + f"{rig.feed.epoch}-0", headers=rig.auth("gw1"))).json()
    assert feed["events"] == [] or all(e["grid_id"] == "c01-g1" for e in feed["events"])


async def test_building_leader_and_volunteer_limits(rig: ApiRig) -> None:
    home = next(d for d in rig.sites.devices.values() if d.building == "c01-b01" and d.kind == "sos" and d.household
                and rig.sites.households[d.household].vulnerable)
    alarm = await rig.smoke(home, event=EventKind.SOS_PRESS)
    neighbour_building = next(d for d in rig.sites.devices.values() if d.kind == "smoke" and d.building == "c01-b02")
    await rig.smoke(neighbour_building)  # same grid, another building
    leader = (await rig.client.get("/api/alarms", headers=rig.auth("leader"))).json()["alarms"]
    assert [a["id"] for a in leader] == [alarm]

    shown = (await rig.client.get(f"/api/alarms/{alarm}", headers=rig.auth("duty"))).json()["place"]
    assert shown["vulnerable"]["family_contacts"], "the duty officer sees who to call"
    vulnerable = rig.sites.households[home.household or ""].vulnerable
    assert vulnerable is not None
    assert vulnerable.key_holder is not None
    r = rig.sites.responders[vulnerable.key_holder]  # the key holder in words (name and phone), not a responder id
    assert shown["vulnerable"]["key_holder_text"] == f"{r.name}（{r.phone}）"
    hidden = (await rig.client.get(f"/api/alarms/{alarm}", headers=rig.auth("vol"))).json()["place"]
    assert hidden["vulnerable"] is None
    assert hidden["vulnerable_hidden"] is True

    refused = await rig.client.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("vol"), json={})
    assert refused.status_code == 403
    assert "volunteer" in refused.json()["detail"]
    assert "duty_officer" in refused.json()["detail"]
    no_close = await rig.client.post(f"/api/alarms/{alarm}/close", headers=rig.auth("mfs"), json={"outcome": "real", "note": "ok"})
    assert no_close.status_code == 403
    assert (await rig.client.get("/api/health/devices", headers=rig.auth("vol"))).status_code == 403


async def test_machine_api_tokens_issue_use_expire_and_revoke(rig: ApiRig) -> None:
    admin = rig.auth("admin")
    made = await rig.client.post("/api/admin/users", headers=admin, json={"username": "bridge119", "role": "duty_officer", "display_name": "119 bridge"})
    assert made.status_code == 201, made.text
    wrong_scope = await rig.client.post("/api/admin/users", headers=admin, json={"username": "x", "role": "grid_worker", "scope": "nowhere"})
    assert wrong_scope.status_code == 422
    assert "grid" in wrong_scope.json()["detail"]
    dup = await rig.client.post("/api/admin/users", headers=admin, json={"username": "bridge119", "role": "volunteer"})
    assert dup.status_code == 409
    assert (await rig.client.get("/api/admin/users", headers=rig.auth("duty"))).status_code == 403

    issued = (await rig.client.post("/api/admin/tokens", headers=admin, json={"username": "bridge119", "name": "119", "ttl_days": 1})).json()
    secret = issued["token"]
    assert secret.startswith("swm_")
    listed = (await rig.client.get("/api/admin/tokens", headers=admin)).json()
    assert all(t["token"] is None for t in listed)  # secrets are shown once
    me = await rig.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert (me.json()["via"], me.json()["role"]) == ("api_token", "duty_officer")
    tampered = secret[:-2] + ("aa" if not secret.endswith("aa") else "bb")
    assert (await rig.client.get("/api/me", headers={"Authorization": f"Bearer {tampered}"})).status_code == 401

    rig.clock.advance(86_401)
    expired = await rig.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert expired.status_code == 401
    assert "过期" in expired.json()["detail"]
    rig.renew_sessions()
    admin = rig.auth("admin")

    second = (await rig.client.post("/api/admin/tokens", headers=admin, json={"username": "bridge119", "name": "119 again"})).json()
    assert (await rig.client.get("/api/me", headers={"Authorization": f"Bearer {second['token']}"})).status_code == 200
    assert (await rig.client.delete(f"/api/admin/tokens/{second['id']}", headers=admin)).status_code == 200
    assert (await rig.client.get("/api/me", headers={"Authorization": f"Bearer {second['token']}"})).status_code == 401


def test_territory_rules() -> None:
    from backend.sites import load_site_directory
    from tests.conftest import SAMPLE_SITE

    sites = load_site_directory(SAMPLE_SITE)
    gw = Territory.of(User("g", "grid_worker", "", "c01-g1"), sites)
    b_in = next(b for b in sites.buildings.values() if b.grid == "c01-g1")
    b_out = next(b for b in sites.buildings.values() if b.grid != "c01-g1")
    assert gw.covers(b_in.id)
    assert not gw.covers(b_out.id)
    assert not gw.covers(b_out.id, "c01-g1"), "a known building's own grid wins over a wrong grid column"
    assert gw.covers("unknown-building", "c01-g1")
    assert not gw.covers(None, "c01-g2")
    assert not Territory.of(User("g", "grid_worker", "", None), sites).covers(b_in.id), "a grid worker without a grid sees nothing"
    leader = Territory.of(User("l", "building_leader", "", b_in.id), sites)
    assert leader.covers(b_in.id)
    assert not leader.covers(b_out.id)
    assert Territory.of(User("d", "duty_officer", "", None), sites).covers(None)
    community = Territory.of(User("d", "duty_officer", "", "c01"), sites)
    assert community.covers(b_out.id)
    assert not Territory.of(User("d", "duty_officer", "", "c99"), sites).covers(b_out.id)
    assert Capability.MANAGE_USERS in ROLE_CAPABILITIES[UserRole.ADMIN]
    assert ROLE_CAPABILITIES[UserRole.VOLUNTEER] == {Capability.VIEW_ALARMS}
