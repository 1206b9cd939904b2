"""The duty routes over the real alarm service (tests/api's rig): roster overrides, shifts, the handover and the one
audit view; bad input and acting outside the territory answer 4xx with a Chinese sentence and write nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from backend.duty import DutyService
from backend.sites import SiteDirectory
from broker.kinds import DeviceKind, EventKind
from tests.api.conftest import PASSWORD, ApiRig, make_rig

HOUR_MS = 3_600_000
MORE = {"duty2": ("duty_officer", "c01"), "duty_c02": ("duty_officer", "c02")}


@pytest.fixture
async def rig(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    async with make_rig(tmp_path, sample_site) as r:
        for name, (role, scope) in MORE.items():
            r.users.add(name, None, role, f"值班员{name}", scope)
            r.tokens[name] = r.deps.signer.sign({"sub": name}, r.clock.now_ms() / 1000, 12 * 3600)
        yield r


def duty_of(rig: ApiRig) -> DutyService:
    app = rig.client._transport.app  # type: ignore[attr-defined]
    svc = app.state.duty
    assert isinstance(svc, DutyService)
    return svc


def counts(rig: ApiRig) -> tuple[int, ...]:
    with rig.service.store.engine.connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("duty_overrides", "duty_shifts", "duty_handovers", "duty_audit"))


async def post(rig: ApiRig, who: str, url: str, body: dict[str, Any] | None = None) -> Any:
    return await rig.client.post(url, json=body or {}, headers=rig.auth(who))


@pytest.mark.asyncio
async def test_a_sick_leave_through_the_api_changes_who_holds_the_grid_seat_and_cancelling_restores_it(rig: ApiRig) -> None:
    before = (await rig.client.get("/api/duty/roster?seat=grid_worker", headers=rig.auth("duty"))).json()["seats"]
    g1 = next(s for s in before if s["scope"] == "c01-g1")
    assert [p["id"] for p in g1["on_duty"]] == ["c01-g1-w1"]
    r = await post(rig, "gw1", "/api/duty/roster/overrides", {"kind": "sick", "responder": "c01-g1-w1", "minutes": 240, "reason": "发烧就医"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["state"] == "in_force"
    assert made["start_local"] == "2026-01-01 08:00", "Beijing time, not UTC"
    assert "杨敏 病假" in made["text"]
    g1 = next(s for s in (await rig.client.get("/api/duty/roster", headers=rig.auth("vol"))).json()["seats"] if s["scope"] == "c01-g1")
    assert ([p["id"] for p in g1["on_duty"]], g1["via"], g1["overrides"]) == (["c01-g1-w2"], "deputy", [made["id"]])
    listed = (await rig.client.get("/api/duty/roster/overrides", headers=rig.auth("leader"))).json()["overrides"]
    assert [o["id"] for o in listed] == [], "the building leader's territory holds no grid worker"
    r = await post(rig, "duty", f"/api/duty/roster/overrides/{made['id']}/cancel", {"reason": "提前返岗"})
    assert r.status_code == 200, r.text
    again = await post(rig, "duty", f"/api/duty/roster/overrides/{made['id']}/cancel", {"reason": "再次取消"})
    assert again.status_code == 409
    assert "已" in again.json()["detail"]
    assert "取消" in again.json()["detail"]
    g1 = next(s for s in (await rig.client.get("/api/duty/roster", headers=rig.auth("duty"))).json()["seats"] if s["scope"] == "c01-g1")
    assert [p["id"] for p in g1["on_duty"]] == ["c01-g1-w1"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("who", "body", "status", "words"), [
    ("duty", {"kind": "leave", "responder": "nobody-1", "minutes": 60, "reason": "调休"}, 404, "不存在"),
    ("duty", {"kind": "leave", "responder": "c01-g1-w1", "start_ms": 1_767_232_800_000, "end_ms": 1_767_229_200_000, "reason": "调休"}, 422,
     "结束时间必须晚于开始时间"),
    ("duty", {"kind": "leave", "responder": "c01-g1-w1", "minutes": 200_000, "reason": "调休"}, 422, "最长"),
    ("duty", {"kind": "leave", "responder": "c01-g1-w1", "start_ms": 1_600_000_000_000, "end_ms": 1_600_003_600_000, "reason": "调休"}, 422, "已过"),
    ("duty", {"kind": "swap", "responder": "c01-g1-w1", "minutes": 60, "reason": "调休"}, 422, "替班人员"),
    ("duty", {"kind": "swap", "responder": "c01-g1-w1", "substitute": "c01-g1-w1", "minutes": 60, "reason": "调休"}, 422, "不能是本人"),
    ("duty", {"kind": "assign", "substitute": "c01-vol01", "seat": "building_leader", "scope": "nowhere", "minutes": 60, "reason": "外出"}, 404, "不存在"),
    ("duty", {"kind": "leave", "responder": "c01-g1-w1", "reason": "调休"}, 422, "二选一"),
    ("gw2", {"kind": "leave", "responder": "c01-g1-w1", "minutes": 60, "reason": "调休"}, 404, "不在您的辖区"),
    ("duty_c02", {"kind": "sick", "responder": "c01-g1-w1", "minutes": 60, "reason": "发烧"}, 404, "不在您的辖区"),
])
async def test_bad_overrides_answer_a_chinese_reason_and_write_nothing(rig: ApiRig, who: str, body: dict[str, Any], status: int, words: str) -> None:
    before = counts(rig)
    r = await post(rig, who, "/api/duty/roster/overrides", body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert counts(rig) == before
    assert duty_of(rig).roster.overrides == ()


@pytest.mark.asyncio
async def test_a_volunteer_may_read_the_roster_but_not_change_it(rig: ApiRig) -> None:
    r = await post(rig, "vol", "/api/duty/roster/overrides", {"kind": "leave", "responder": "c01-g1-w1", "minutes": 60, "reason": "调休"})
    assert r.status_code == 403
    assert "可以执行的角色" in r.json()["detail"]
    r = await post(rig, "gw1", "/api/duty/shifts/start")
    assert r.status_code == 403
    assert "「值班交接」" in r.json()["detail"]


@pytest.mark.asyncio
async def test_officers_on_shift_are_counted_against_gb_25506(rig: ApiRig) -> None:
    now = (await rig.client.get("/api/duty/now", headers=rig.auth("duty"))).json()
    [c01] = now["communities"]
    assert (c01["count"], c01["ok"]) == (0, False)
    assert "GB 25506" in now["warning"]
    assert now["communities"][0]["warning_en"] == "0 officer(s) on shift, fewer than the 2 per shift of GB 25506"
    assert [p["id"] for p in c01["rostered"]] == ["c01-duty1", "c01-duty2"]
    r = await post(rig, "duty", "/api/duty/shifts/start")
    assert r.status_code == 201, r.text
    assert r.json()["started_local"] == "2026-01-01 08:00"
    twice = await post(rig, "duty", "/api/duty/shifts/start")
    assert twice.status_code == 409
    assert "已在值班中" in twice.json()["detail"]
    [c01] = (await rig.client.get("/api/duty/now", headers=rig.auth("vol"))).json()["communities"]
    assert (c01["count"], c01["ok"]) == (1, False)
    assert "少于" in c01["warning"]
    assert (await post(rig, "duty2", "/api/duty/shifts/start")).status_code == 201
    now = (await rig.client.get("/api/duty/now", headers=rig.auth("duty"))).json()
    assert (now["communities"][0]["count"], now["communities"][0]["ok"], now["warning"], now["me"]) == (2, True, None, True)
    assert (await post(rig, "duty", "/api/duty/shifts/end")).status_code == 200
    assert (await post(rig, "duty", "/api/duty/shifts/end")).status_code == 409
    assert (await rig.client.get("/api/duty/now", headers=rig.auth("duty"))).json()["communities"][0]["count"] == 1
    assert (await rig.client.get("/api/duty/now", headers=rig.auth("duty_c02"))).json()["communities"] == [], "c02 is not this site's"


@pytest.mark.asyncio
async def test_a_handover_lists_what_is_open_silenced_and_offline_and_is_accepted_once_by_another_officer(rig: ApiRig) -> None:
    smoke = rig.device("c01-g1")
    alarm = await rig.smoke(smoke)
    w = await rig.client.post("/api/buildings/c01-b03/maintenance", json={"scope": "building", "minutes": 120, "reason": "电梯检修"},
                              headers=rig.auth("duty"))
    assert w.status_code == 201, w.text
    r = await post(rig, "duty", "/api/duty/handovers", {"notes": "3号楼检修至10点；1号楼烟感待复核"})
    assert r.status_code == 201, r.text
    h = r.json()
    snap = h["snapshot"]
    assert alarm in [a["id"] for a in snap["open_alarms"]]
    assert [x["building"] for x in snap["windows"]] == ["3号楼"]
    assert snap["windows"][0]["ends_local"] == "2026-01-01 10:00"
    assert h["state_zh"] == "待接班"
    own = await post(rig, "duty", f"/api/duty/handovers/{h['id']}/accept")
    assert own.status_code == 409
    assert "不能接收自己写的交班" in own.json()["detail"]
    outside = await post(rig, "duty_c02", f"/api/duty/handovers/{h['id']}/accept")
    assert outside.status_code == 404
    before = counts(rig)
    ok = await post(rig, "duty2", f"/api/duty/handovers/{h['id']}/accept", {"objections": "1号楼烟感未见复核照片"})
    assert ok.status_code == 200, ok.text
    assert (ok.json()["accepted_by"], ok.json()["objections"], ok.json()["state_zh"]) == ("duty2", "1号楼烟感未见复核照片", "已接班")
    assert counts(rig) == (before[0], before[1], before[2], before[3] + 1)
    twice = await post(rig, "admin", f"/api/duty/handovers/{h['id']}/accept")
    assert twice.status_code == 409
    assert "不能重复接班" in twice.json()["detail"]
    assert counts(rig) == (before[0], before[1], before[2], before[3] + 1), "a second accept writes nothing"
    listed = (await rig.client.get("/api/duty/handovers", headers=rig.auth("duty"))).json()["handovers"]
    assert [x["id"] for x in listed] == [h["id"]]
    assert (await rig.client.get(f"/api/duty/handovers/{h['id']}", headers=rig.auth("duty_c02"))).status_code == 404


@pytest.mark.asyncio
async def test_the_audit_view_holds_admin_actions_logins_windows_silences_and_roster_changes(rig: ApiRig) -> None:
    assert (await rig.client.post("/api/login", json={"username": "duty", "password": PASSWORD})).status_code == 200
    assert (await rig.client.post("/api/login", json={"username": "duty", "password": "wrong-password"})).status_code == 401
    r = await rig.client.post("/api/admin/users", json={"username": "newvol", "role": "volunteer", "display_name": "新志愿者"}, headers=rig.auth("admin"))
    assert r.status_code == 201, r.text
    alarm = await rig.smoke(rig.device("c01-g2", DeviceKind.ELECTRICAL), event=EventKind.ELECTRICAL_ALARM)
    device = rig.service.store.get(alarm)
    assert device is not None
    assert (await rig.client.post(f"/api/devices/{device.place.device}/silence", json={"minutes": 30, "note": "误报排查"},
                                  headers=rig.auth("duty"))).status_code == 200
    assert (await rig.client.post("/api/buildings/c01-b03/maintenance", json={"scope": "building", "minutes": 60, "reason": "消防检测"},
                                  headers=rig.auth("duty"))).status_code == 201
    leave = {"kind": "leave", "responder": "c01-g1-w1", "minutes": 60, "reason": "调休"}
    assert (await post(rig, "duty", "/api/duty/roster/overrides", leave)).status_code == 201
    entries = (await rig.client.get("/api/duty/audit", headers=rig.auth("admin"))).json()["entries"]
    areas = {e["area"] for e in entries}
    assert {"admin", "login", "maintenance", "silence", "roster"} <= areas, areas
    login = [e for e in entries if e["area"] == "login"]
    assert {e["action_zh"] for e in login} >= {"登录成功", "密码错误"}
    admin = next(e for e in entries if e["area"] == "admin")
    assert (admin["actor"], admin["action_zh"], admin["subject"]) == ("admin", "新建账号", "newvol")
    assert all(e["at_local"].startswith("2026-01-01 08:") for e in entries), "Beijing time"
    officer = (await rig.client.get("/api/duty/audit", headers=rig.auth("duty"))).json()["entries"]
    assert "login" not in {e["area"] for e in officer}, "logins are for admins"
    roster_only = (await rig.client.get("/api/duty/audit?area=roster", headers=rig.auth("duty"))).json()["entries"]
    assert [e["action_zh"] for e in roster_only] == ["登记请假"]
    assert (await rig.client.get("/api/duty/audit", headers=rig.auth("gw1"))).status_code == 403


@pytest.mark.asyncio
async def test_a_handover_lists_the_work_orders_past_their_due_time(rig: ApiRig) -> None:
    r = await rig.client.post("/api/workorders", json={"building_id": "c01-b01", "description": "配电箱线路老化"}, headers=rig.auth("duty"))
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    draft = (await rig.client.get("/api/duty/handover/draft", headers=rig.auth("duty"))).json()["snapshot"]
    assert (draft["work_orders_available"], draft["work_orders"]) == (True, []), "not due yet"
    rig.clock.advance(30 * 86_400)  # a month later: past any due time by severity
    rig.renew_sessions()
    draft = (await rig.client.get("/api/duty/handover/draft", headers=rig.auth("duty"))).json()["snapshot"]
    assert [o["id"] for o in draft["work_orders"]] == [order["id"]]
    assert draft["work_orders"][0]["building"] == "1号楼"
