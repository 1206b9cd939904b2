"""Work orders through the HTTP API on the real alarm service (SQLite, virtual clock): from an electrical alarm to
closed with a photo; every refusal a 4xx with a Chinese reason and nothing written; territory; photos on disk
with their checksum; overdue orders escalated once, also across a restart."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from backend.sites import SiteDirectory
from backend.workorders import OverdueWatch, WorkOrderService, WorkOrderSettings
from backend.workorders.schema import work_order_audit, work_order_photos, work_orders
from broker.kinds import DeviceKind, EventKind
from tests.api.conftest import ApiRig, make_rig
from tests.workorders.images import png

GW1_RESPONDER = "c01-g1-w1"


@pytest.fixture
async def rig(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    async with make_rig(tmp_path, sample_site) as r:
        yield r


async def electrical_alarm(rig: ApiRig, grid: str = "c01-g1") -> str:
    return await rig.smoke(rig.device(grid, DeviceKind.ELECTRICAL), event=EventKind.ELECTRICAL_ALARM)


def counts(rig: ApiRig) -> tuple[int, int, int]:
    with rig.service.store.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in (work_orders, work_order_audit, work_order_photos))  # type: ignore[return-value]


async def open_from(rig: ApiRig, alarm_id: str, who: str = "duty", **extra: Any) -> dict[str, Any]:
    r = await rig.client.post("/api/workorders", json={"alarm_id": alarm_id, "description": "配电箱漏电，需更换漏电保护器", **extra},
                              headers=rig.auth(who))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def move(rig: ApiRig, order_id: str, move: str, who: str = "duty", **body: Any) -> Any:
    return await rig.client.post(f"/api/workorders/{order_id}/moves", json={"move": move, **body}, headers=rig.auth(who))


def responder_of(sites: SiteDirectory, role: str, grid: str | None = None) -> str:
    return next(r.id for r in sorted(sites.responders.values(), key=lambda r: r.id) if r.role.value == role and (grid is None or r.grid == grid))


async def test_from_an_electrical_warning_to_closed_with_a_photo_every_move_audited(rig: ApiRig) -> None:
    alarm = await electrical_alarm(rig)
    created = await open_from(rig, alarm)
    order = created["order"]
    assert order["state"] == "open"
    assert order["alarm_id"] == alarm
    assert order["building_id"] == rig.service.store.get(alarm).place.building  # type: ignore[union-attr]
    # due by the alarm's severity, shown in Beijing time
    severity_hours = {"critical": 24, "major": 72, "minor": 168, "info": 168}[order["severity"]]
    assert order["due_ms"] == rig.clock.now_ms() + severity_hours * 3_600_000
    assert order["time_zone"] == "Asia/Shanghai"
    assert rig.clock.now_ms() == 1_767_225_600_000  # 2026-01-01 00:00 UTC on the rig's clock, whatever the machine's zone ...
    assert order["created_local"] == "2026-01-01 08:00"  # ... read in Beijing time
    worker = responder_of(rig.sites, "grid_worker", "c01-g1")
    assert any(a["id"] == worker for a in created["assignees"])
    oid = order["id"]

    assert (await move(rig, oid, "assign", assignee_id=worker)).status_code == 200
    assert (await move(rig, oid, "start", "gw1")).status_code == 200
    r = await move(rig, oid, "finish", "gw1")
    assert r.status_code == 422
    assert "照片" in r.json()["detail"]  # no photo yet: refused, in Chinese
    photo = png()
    r = await rig.client.post(f"/api/workorders/{oid}/photos", files={"file": ("after.png", photo, "image/png")}, data={"caption": "更换后"},
                              headers=rig.auth("gw1"))
    assert r.status_code == 201, r.text
    ph = r.json()
    assert ph["sha256"] == hashlib.sha256(photo).hexdigest()
    assert (await move(rig, oid, "finish", "gw1")).status_code == 200
    r = await move(rig, oid, "reject", "duty", note="漏保仍跳闸")
    assert r.json()["order"]["state"] == "in_progress"
    assert (await move(rig, oid, "finish", "gw1")).status_code == 200
    assert (await move(rig, oid, "reinspect", "duty")).status_code == 200
    r = await move(rig, oid, "close", "duty", note="复查合格")
    assert r.status_code == 200
    detail = r.json()
    assert detail["order"]["state"] == "closed"
    assert [(a["action"], a["actor"], a["to_state"]) for a in detail["audit"]] == [
        ("create", "duty", "open"), ("assign", "duty", "assigned"), ("start", "gw1", "in_progress"), ("photo", "gw1", "in_progress"),
        ("finish", "gw1", "done"), ("reject", "duty", "in_progress"), ("finish", "gw1", "done"), ("reinspect", "duty", "reinspected"),
        ("close", "duty", "closed")]
    assert detail["audit"][5]["note"] == "漏保仍跳闸"
    assert all(a["at_local"] for a in detail["audit"])

    r = await rig.client.get(ph["url"], headers=rig.auth("duty"))
    assert r.status_code == 200
    assert r.content == photo
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-sha256"] == ph["sha256"]
    svc = WorkOrderService(rig.service.store.engine, rig.sites, rig.clock, Path("/nonexistent"))
    [row] = svc.photo_rows(oid)
    on_disk = Path(rig.service.store.engine.url.database or "").parent / "workorder-photos" / row["file_name"]
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == row["sha256"]  # on disk under the data folder, checksum kept


async def test_refusals_are_4xx_with_a_chinese_reason_and_write_nothing(rig: ApiRig) -> None:
    alarm = await electrical_alarm(rig)
    oid = (await open_from(rig, alarm))["order"]["id"]
    before = counts(rig)

    async def refused(status: int, r: Any, words: str) -> None:
        assert r.status_code == status, r.text
        assert words in r.json()["detail"], r.json()["detail"]
        assert counts(rig) == before

    await refused(404, await move(rig, "WOnope", "assign", assignee_id="x"), "工单")
    await refused(404, await rig.client.get("/api/workorders/WOnope", headers=rig.auth("duty")), "工单")
    await refused(409, await move(rig, oid, "close"), "不能")  # the table: open cannot close
    await refused(422, await move(rig, oid, "cancel"), "原因")
    await refused(422, await move(rig, oid, "assign", assignee_id="nobody"), "人员")
    now = rig.clock.now_ms()
    await refused(422, await move(rig, oid, "assign", assignee_id=GW1_RESPONDER, due_at_ms=now - 60_000), "已过去")
    await refused(422, await move(rig, oid, "assign", assignee_id=GW1_RESPONDER, due_at_ms=now + 400 * 86_400_000), "最长")
    await refused(409, await rig.client.post("/api/workorders", json={"alarm_id": alarm, "description": "重复"}, headers=rig.auth("duty")), "已有整改工单")
    await refused(404, await rig.client.post("/api/workorders", json={"alarm_id": "nope", "description": "无此告警"}, headers=rig.auth("duty")), "告警")
    await refused(422, await rig.client.post("/api/workorders", json={"description": "两者都没有"}, headers=rig.auth("duty")), "二选一")
    big = b"\xff\xd8\xff" + b"\0" * (WorkOrderSettings().photo_max_bytes + 10)
    await refused(413, await rig.client.post(f"/api/workorders/{oid}/photos", files={"file": ("big.jpg", big, "image/jpeg")}, headers=rig.auth("duty")),
                  "过大")
    fake = b"<html>not a photo</html>"
    await refused(415, await rig.client.post(f"/api/workorders/{oid}/photos", files={"file": ("x.jpg", fake, "image/jpeg")}, headers=rig.auth("duty")),
                  "JPEG")
    folder = Path(rig.service.store.engine.url.database or "").parent / "workorder-photos"
    assert not folder.exists() or not any(folder.rglob("*.*")), "a refused upload leaves no file"
    # English on request, same status
    r = await rig.client.post(f"/api/workorders/{oid}/moves", json={"move": "close"}, headers={**rig.auth("duty"), "Accept-Language": "en"})
    assert r.status_code == 409
    assert "cannot take" in r.json()["detail"]


async def test_territory_and_roles(rig: ApiRig) -> None:
    mine = (await open_from(rig, await electrical_alarm(rig, "c01-g1")))["order"]["id"]
    other_alarm = await electrical_alarm(rig, "c01-g2")
    theirs = (await open_from(rig, other_alarm))["order"]["id"]
    r = await rig.client.get("/api/workorders", headers=rig.auth("gw1"))
    assert [o["id"] for o in r.json()["orders"]] == [mine]
    for path in (f"/api/workorders/{theirs}", f"/api/workorders/{theirs}/photos/PHx"):
        r = await rig.client.get(path, headers=rig.auth("gw1"))
        assert r.status_code == 404
        assert "辖区" in r.json()["detail"]
    r = await rig.client.post("/api/workorders", json={"building_id": sorted(b.id for b in rig.sites.buildings.values() if b.grid == "c01-g2")[0],
                                                       "description": "楼道堆物"}, headers=rig.auth("gw1"))
    assert r.status_code == 404  # a building outside the territory, like an unknown one
    r = await rig.client.post("/api/workorders", json={"alarm_id": other_alarm, "description": "越权"}, headers=rig.auth("gw1"))
    assert r.status_code == 404
    # a building leader may start work but not assign; a volunteer may not read
    r = await move(rig, mine, "assign", "leader", assignee_id=GW1_RESPONDER)
    assert r.status_code == 403
    assert "角色" in r.json()["detail"]
    assert (await rig.client.get("/api/workorders", headers=rig.auth("vol"))).status_code == 403
    assert (await rig.client.get("/api/workorders?overdue=false&state=open", headers=rig.auth("duty"))).json()["orders"]


async def test_an_overdue_order_escalates_to_the_supervisor_once_also_after_a_restart(rig: ApiRig, tmp_path: Path) -> None:
    alarm = await electrical_alarm(rig)
    leader = responder_of(rig.sites, "building_leader")
    order = (await open_from(rig, alarm, severity="critical"))["order"]
    assert (await move(rig, order["id"], "assign", assignee_id=leader)).status_code == 200
    svc = WorkOrderService(rig.service.store.engine, rig.sites, rig.clock, tmp_path / "p")
    heard: list[dict[str, Any]] = []
    svc.notice_sinks.append(heard.append)
    assert await svc.check_overdue() == []
    rig.clock.advance(23 * 3600)
    assert await svc.check_overdue() == []
    rig.renew_sessions()
    r = await rig.client.get("/api/workorders?overdue=true", headers=rig.auth("duty"))
    assert r.json()["orders"] == []
    rig.clock.advance(3600)
    [esc] = await svc.check_overdue()
    assert esc.escalated_for_due_ms == order["due_ms"]
    assert esc.escalated_to is not None
    assert esc.escalated_to.startswith(f"网格员（{order['grid_id']}）")  # a building leader's supervisor: the grid worker of the order's grid
    assert [n["event"] for n in heard] == ["overdue_escalated"]
    assert "逾期" in heard[0]["text"]
    assert await svc.check_overdue() == []  # once
    restarted = WorkOrderService(rig.service.store.engine, rig.sites, rig.clock, tmp_path / "p")
    rig.clock.advance(3600)
    assert await restarted.check_overdue() == []  # a restart re-derives "already escalated" from the stored order
    rig.renew_sessions()
    r = await rig.client.get(f"/api/workorders/{order['id']}", headers=rig.auth("duty"))
    body = r.json()
    assert body["order"]["overdue"] is True
    assert [a["action"] for a in body["audit"]].count("escalate") == 1
    assert [o["id"] for o in (await rig.client.get("/api/workorders?overdue=true", headers=rig.auth("duty"))).json()["orders"]] == [order["id"]]


async def test_the_overdue_watch_catches_up_at_start_and_then_runs_on_the_injected_clock(rig: ApiRig, tmp_path: Path) -> None:
    svc = WorkOrderService(rig.service.store.engine, rig.sites, rig.clock, tmp_path / "p", WorkOrderSettings(check_every_s=3600),
                           alarms=rig.service.store)
    late = await svc.create("duty", description="插座烧焦", alarm_id=await electrical_alarm(rig), severity="critical")
    rig.clock.advance(25 * 3600)  # overdue while no watch ran (the backend was down)
    async with OverdueWatch(svc) as watch:
        caught = svc.get(late.id)
        assert caught is not None
        assert caught.escalated_ms == rig.clock.now_ms(), "escalated as the watch started, before it said it was ready"
        assert caught.escalated_to is not None
        assert caught.escalated_to.startswith("社区值班员（c01）"), caught.escalated_to  # nobody assigned: the community's duty officers
        fresh = await svc.create("duty", description="电缆过热", alarm_id=await rig.smoke(rig.device("c01-g1", DeviceKind.ELECTRICAL, 1),
                                                                                       event=EventKind.ELECTRICAL_ALARM), severity="critical")
        checks = watch.checks
        for hour in range(1, 26):  # one period at a time; each check is awaited, not slept for
            rig.clock.advance(3600)
            checks = await asyncio.wait_for(watch.checked_after(checks), 10)
            if hour < 24:
                assert svc.get(fresh.id).escalated_ms is None, hour  # type: ignore[union-attr]
        escalated = svc.get(fresh.id)
        assert escalated is not None
        assert escalated.escalated_for_due_ms == fresh.due_ms
        assert escalated.escalated_ms is not None
        assert escalated.escalated_ms - fresh.due_ms <= 3600_000  # within one period of the due time
    assert [a["action"] for a in svc.audit(late.id)].count("escalate") == 1


async def test_a_photo_the_data_folder_cannot_take_is_a_503_and_leaves_nothing(rig: ApiRig) -> None:
    oid = (await open_from(rig, await electrical_alarm(rig)))["order"]["id"]
    folder = Path(rig.service.store.engine.url.database or "").parent / "workorder-photos"
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(b"")  # a file where the photos folder should be: every write under it fails
    before = counts(rig)
    r = await rig.client.post(f"/api/workorders/{oid}/photos", files={"file": ("a.png", png(), "image/png")}, headers=rig.auth("duty"))
    assert r.status_code == 503
    assert "照片存储暂时不可用" in r.json()["detail"]
    assert r.headers["retry-after"] == "5"
    assert counts(rig) == before
