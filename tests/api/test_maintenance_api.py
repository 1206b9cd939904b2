"""The maintenance-window API on the real alarm service: open, list, extend, end early, the audit trail, and every
refusal a person meets (end before start, unknown device, a place outside the territory, too long, a life-safety
device without the override), in Chinese unless English is asked for."""

from __future__ import annotations

from typing import Any

from alerting.lifecycle import AlarmState
from broker.kinds import DeviceKind, EventKind
from tests.api.conftest import ApiRig

HOUR_MS = 3600_000


def building_with(rig: ApiRig, *kinds: DeviceKind) -> str:
    return next(b for b, ds in sorted(rig.sites.devices_by_building.items()) if all(any(d.kind is k for d in ds) for k in kinds))


async def open_window(rig: ApiRig, building: str, body: dict[str, Any], who: str = "duty", **headers: str) -> Any:
    return await rig.client.post(f"/api/buildings/{building}/maintenance", json=body, headers={**rig.auth(who), **headers})


async def test_a_duty_officer_opens_lists_extends_and_ends_a_window(rig: ApiRig) -> None:
    b = building_with(rig, DeviceKind.ELECTRICAL, DeviceKind.SMOKE)
    meter = next(d for d in rig.sites.devices_by_building[b] if d.kind is DeviceKind.ELECTRICAL)
    alarm = await rig.smoke(meter, event=EventKind.ELECTRICAL_ALARM)
    r = await open_window(rig, b, {"scope": "building", "minutes": 60, "reason": "配电箱检修 工单 42"})
    assert r.status_code == 201, r.text
    w = r.json()["window"]
    assert (w["scope"], w["state"], w["author"], w["life_safety_override"]) == ("building", "in_force", "duty", False)
    assert w["time_zone"] == "Asia/Shanghai"
    assert w["life_safety_devices_left_live"] >= 1
    assert "整栋" in w["what"]
    a = rig.service.store.get(alarm)
    assert a is not None
    assert a.state is AlarmState.SILENCED

    listed = (await rig.client.get("/api/maintenance", headers=rig.auth("leader" if b == "c01-b01" else "duty"))).json()
    assert [x["id"] for x in listed["windows"]] == [w["id"]]
    assert (listed["end_notice_minutes"], listed["life_safety_max_minutes"]) == (10, 120)

    r = await rig.client.post(f"/api/maintenance/{w['id']}/extend", json={"minutes": 30, "reason": "零件未到"}, headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    assert r.json()["window"]["ends_ms"] == w["ends_ms"] + 30 * 60_000
    r = await rig.client.post(f"/api/maintenance/{w['id']}/end", json={"reason": "提前完工"}, headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    assert r.json()["window"]["state"] == "ended"
    [notice] = [e for e in rig.feed.after(0) or [] if e.kind == "maintenance"]
    assert (notice.data["event"], notice.building_id) == ("ended", b), "the duty room of that building hears of it on the live feed"
    assert "维护窗口已结束" in notice.data["text"]
    a = rig.service.store.get(alarm)
    assert a is not None
    assert a.state is AlarmState.RAISED, "the meter still in alarm is live again"

    detail = (await rig.client.get(f"/api/maintenance/{w['id']}", headers=rig.auth("duty"))).json()
    assert [(x["action"], x["actor"]) for x in detail["audit"]] == [("create", "duty"), ("extend", "duty"), ("end", "duty")]
    assert detail["audit"][2]["note"] == "提前完工"
    again = await rig.client.post(f"/api/maintenance/{w['id']}/end", json={"reason": "再次"}, headers=rig.auth("duty"))
    assert again.status_code == 409
    assert "已于" in again.json()["detail"]
    assert "新建" in again.json()["detail"]
    assert (await rig.client.get("/api/maintenance", headers=rig.auth("duty"))).json()["windows"] == []
    assert len((await rig.client.get("/api/maintenance?include_ended=true", headers=rig.auth("duty"))).json()["windows"]) == 1


async def test_bad_requests_get_a_reason_a_person_can_act_on_in_chinese(rig: ApiRig) -> None:
    b = building_with(rig, DeviceKind.SMOKE, DeviceKind.SOS)
    smoke = next(d for d in rig.sites.devices_by_building[b] if d.kind is DeviceKind.SMOKE)
    now = rig.clock.now_ms()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (b, {"scope": "building", "starts_at_ms": now + HOUR_MS, "ends_at_ms": now + HOUR_MS // 2, "reason": "检修"}, 422, "早于或等于开始时间"),
        (b, {"scope": "device", "device_id": "nosuch-9", "minutes": 30, "reason": "检修"}, 404, "设备标签"),
        ("nosuch-b", {"scope": "building", "minutes": 30, "reason": "检修"}, 404, "您的辖区内没有编号为 nosuch-b 的楼栋"),
        (b, {"scope": "building", "minutes": 8 * 24 * 60, "reason": "装修"}, 422, "最长 10080 分钟"),
        (b, {"scope": "device", "device_id": smoke.id, "minutes": 30, "reason": "更换"}, 422, "生命安全设备"),
        (b, {"scope": "kind", "device_kind": "sos", "minutes": 30, "reason": "更换"}, 422, "生命安全例外"),
        (b, {"scope": "device", "device_id": smoke.id, "minutes": 180, "reason": "更换", "life_safety_override": {"reason": "拆下更换探头"}},
         422, "最长 120 分钟"),
        (b, {"scope": "building", "reason": "检修"}, 422, "ends_at_ms 或时长 minutes"),
    ]
    for building, body, code, words in cases:
        r = await open_window(rig, building, body)
        assert r.status_code == code, (body, r.text)
        assert words in r.json()["detail"], (body, r.json()["detail"])
    r = await open_window(rig, b, cases[4][1], **{"Accept-Language": "en"})
    assert r.status_code == 422
    assert "life-safety device" in r.json()["detail"]
    assert (await rig.client.get("/api/maintenance", headers=rig.auth("duty"))).json()["windows"] == [], "nothing refused was stored"


async def test_a_place_outside_the_territory_is_not_found_like_an_unknown_one(rig: ApiRig) -> None:
    rig.users.add("duty_c02", None, "duty_officer", "duty_c02", "c02")
    rig.tokens["duty_c02"] = rig.deps.signer.sign({"sub": "duty_c02"}, rig.clock.now_ms() / 1000, 3600)
    b = building_with(rig, DeviceKind.ELECTRICAL)
    outside = await open_window(rig, b, {"scope": "building", "minutes": 30, "reason": "检修"}, who="duty_c02")
    unknown = await open_window(rig, "nosuch-b", {"scope": "building", "minutes": 30, "reason": "检修"}, who="duty_c02")
    assert (outside.status_code, unknown.status_code) == (404, 404)
    assert outside.json()["detail"].replace(b, "<id>") == unknown.json()["detail"].replace("nosuch-b", "<id>")
    w = (await open_window(rig, b, {"scope": "building", "minutes": 30, "reason": "检修"})).json()["window"]
    r = await rig.client.post(f"/api/maintenance/{w['id']}/end", json={"reason": "不是我的"}, headers=rig.auth("duty_c02"))
    assert r.status_code == 404
    assert (await rig.client.get("/api/maintenance", headers=rig.auth("duty_c02"))).json()["windows"] == []
    assert (await rig.client.get(f"/api/maintenance/{w['id']}", headers=rig.auth("duty_c02"))).status_code == 404


async def test_the_consoles_device_silence_refuses_a_smoke_detector(rig: ApiRig) -> None:
    smoke = next(d for d in rig.sites.devices.values() if d.kind is DeviceKind.SMOKE)
    r = await rig.client.post(f"/api/devices/{smoke.id}/silence", json={"minutes": 60, "note": "work order 42"}, headers=rig.auth("duty"))
    assert r.status_code == 409, r.text
    assert "life-safety" in r.json()["detail"]
    meter = next(d for d in rig.sites.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    r = await rig.client.post(f"/api/devices/{meter.id}/silence", json={"minutes": 60, "note": "work order 42"}, headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    [w] = (await rig.client.get("/api/maintenance", headers=rig.auth("duty"))).json()["windows"]
    assert (w["scope"], w["device_id"], w["reason"]) == ("device", meter.id, "work order 42"), "the old route makes a stored window too"
