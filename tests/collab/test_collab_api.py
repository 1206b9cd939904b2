"""Working an alarm together over the API (issue 17): assign, comment with photos, archive, on the real alarm service;
every refusal is a Chinese sentence and writes nothing.

What a person would notice: the assignee shows on the board and the detail; an assignment and a comment reach the
live feed of the alarm's territory at once (and not another grid's); a comment's photo comes back byte for byte;
a comment never moves the alarm; archiving takes a closed alarm off the open board but history still finds it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from backend.alarms.schema import alarm_assignments, alarm_comment_photos, alarm_comments
from tests.api.conftest import ApiRig
from tests.workorders.images import png


def counts(rig: ApiRig) -> tuple[int, int, int]:
    with rig.service.store.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in (alarm_assignments, alarm_comments,
                                                                                                     alarm_comment_photos))  # type: ignore[return-value]


async def alarm_in_g1(rig: ApiRig) -> str:
    return await rig.smoke(rig.device("c01-g1"))


async def test_assign_shows_on_board_detail_and_feed(rig: ApiRig) -> None:
    aid = await alarm_in_g1(rig)
    other = await rig.smoke(rig.device("c01-g2"))
    head = rig.feed.head
    r = await rig.client.get(f"/api/alarms/{aid}/collab", headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    people = {c["id"]: c for c in r.json()["candidates"]}
    assert "c01-g1-w1" in people, "the grid worker of the alarm's grid may be assigned"
    assert "user:gw1" in people
    assert "user:gw2" not in people, "officers whose territory holds the alarm, not the other grid's"
    r = await rig.client.post(f"/api/alarms/{aid}/assign", json={"assignee_id": "c01-g1-w1", "note": "请到现场"}, headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    name = people["c01-g1-w1"]["name"]
    assert r.json()["assignment"]["assignee_name"] == name
    assert r.json()["assignment"]["actor"] == "duty"
    board = (await rig.client.get("/api/alarms?open=true", headers=rig.auth("duty"))).json()["alarms"]
    assert next(a for a in board if a["id"] == aid)["assignee_name"] == name
    assert next(a for a in board if a["id"] == other)["assignee_name"] is None
    detail = (await rig.client.get(f"/api/alarms/{aid}", headers=rig.auth("duty"))).json()
    entry = next(e for e in detail["timeline"] if e["source"] == "assignment")
    assert entry["label"] == f"指派给 {name}（网格员）"
    assert entry["actor"] == "duty"
    assert entry["note_text"] == "请到现场"
    events = [e for e in rig.feed.after(head) or [] if e.kind == "assignment"]
    assert [(e.data["alarm_id"], e.data["assignee_id"], e.grid_id) for e in events] == [(aid, "c01-g1-w1", "c01-g1")]
    # re-assign: audited as a second act, the board follows
    r = await rig.client.post(f"/api/alarms/{aid}/assign", json={"assignee_id": "user:gw1"}, headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    detail = (await rig.client.get(f"/api/alarms/{aid}", headers=rig.auth("duty"))).json()
    assert [e["label"] for e in detail["timeline"] if e["source"] == "assignment"] == [f"指派给 {name}（网格员）", "改派给 gw1（网格员）"]
    assert rig.service.store.get(aid).state.value == "raised", "an assignment is no lifecycle move"  # type: ignore[union-attr]


async def test_assign_refusals_write_nothing(rig: ApiRig) -> None:
    aid = await alarm_in_g1(rig)
    before = counts(rig)
    cases = [
        ("duty", "/api/alarms/NOPE/assign", {"assignee_id": "c01-g1-w1"}, 404, "没有编号为 NOPE 的警报"),
        ("gw2", f"/api/alarms/{aid}/assign", {"assignee_id": "c01-g2-w1"}, 404, "辖区内没有"),  # outside the caller's grid: like unknown
        ("duty", f"/api/alarms/{aid}/assign", {"assignee_id": "nobody-here"}, 422, "不在该警报所在辖区的人员名单中"),
        ("duty", f"/api/alarms/{aid}/assign", {"assignee_id": "user:vol"}, 422, "不在该警报所在辖区的人员名单中"),  # a volunteer login is no officer
        ("duty", f"/api/alarms/{aid}/assign", {"assignee_id": "user:gw2"}, 422, "不在该警报所在辖区的人员名单中"),  # the other grid's worker
        ("leader", f"/api/alarms/{aid}/assign", {"assignee_id": "c01-g1-w1"}, 403, ""),  # a building leader does not dispatch
    ]
    for who, url, body, code, words in cases:
        r = await rig.client.post(url, json=body, headers=rig.auth(who))
        assert r.status_code == code, (who, url, r.text)
        assert words in r.json()["detail"], r.json()["detail"]
    assert counts(rig) == before
    await rig.client.post(f"/api/alarms/{aid}/assign", json={"assignee_id": "c01-g1-w1"}, headers=rig.auth("duty"))
    r = await rig.client.post(f"/api/alarms/{aid}/assign", json={"assignee_id": "c01-g1-w1"}, headers=rig.auth("duty"))
    assert r.status_code == 409
    assert "已指派给" in r.json()["detail"]


async def test_comment_with_photo_is_on_timeline_and_feed_and_moves_nothing(rig: ApiRig) -> None:
    aid = await alarm_in_g1(rig)
    head = rig.feed.head
    image = png(rgb=(10, 200, 30))
    r = await rig.client.post(f"/api/alarms/{aid}/comments", data={"text": "  楼道有焦味，\x07已通知物业\u202e  "},
                              files=[("photos", ("scene.png", image, "image/png"))], headers=rig.auth("gw1"))
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["text"] == "楼道有焦味，已通知物业", "cleaned: control characters and bidi overrides removed, trimmed"
    assert c["author"] == "gw1"
    assert len(c["photos"]) == 1
    assert c["photos"][0]["sha256"] == hashlib.sha256(image).hexdigest()
    got = await rig.client.get(c["photos"][0]["url"], headers=rig.auth("vol"))
    assert got.status_code == 200
    assert got.content == image
    assert got.headers["content-type"] == "image/png"
    detail = (await rig.client.get(f"/api/alarms/{aid}", headers=rig.auth("duty"))).json()
    entry = next(e for e in detail["timeline"] if e["source"] == "comment")
    assert entry["label"] == "评论（1 张照片）"
    assert entry["note_text"] == "楼道有焦味，已通知物业"
    assert entry["photos"] == [c["photos"][0]["url"]]
    assert detail["alarm"]["state"] == "raised"
    assert rig.service.store.audit(aid)[-1].move == "raise", "a comment writes no audit entry of the lifecycle"
    events = [e for e in rig.feed.after(head) or [] if e.kind == "comment"]
    assert [(e.data["author"], e.data["text"], e.data["photos"]) for e in events] == [("gw1", c["text"], [c["photos"][0]["url"]])]
    assert events[0].grid_id == "c01-g1"


async def test_comment_refusals_write_nothing(rig: ApiRig) -> None:
    aid = await alarm_in_g1(rig)
    before = counts(rig)
    photos = Path(str(rig.deps.alarms.engine.url.database)).parent / "alarm-photos"  # the rig's data folder (SQLite's)
    big = png() + b"\x00" * (10 * 1024 * 1024)
    cases = [
        ({"text": "   \x00\x01 "}, None, 422, "评论不能为空"),
        ({"text": "火" * 1001}, None, 422, "评论过长（1001 字），最多 1000 字"),
        ({"text": "现场照片"}, [("photos", ("x.png", b"GIF89a not a png at all", "image/png"))], 415, "只接受 JPEG、PNG 或 WebP"),
        ({"text": "现场照片"}, [("photos", ("big.png", big, "image/png"))], 413, "照片过大"),
        ({"text": "现场照片"}, [("photos", (f"{i}.png", png(rgb=(i, 1, 1)), "image/png")) for i in range(5)], 422, "每条评论最多 4 张照片"),
        ({"text": "好的"}, None, 404, "辖区内没有"),  # to an unknown alarm
    ]
    for i, (data, files, code, words) in enumerate(cases):
        url = f"/api/alarms/{aid}/comments" if i < len(cases) - 1 else "/api/alarms/A0.nope/comments"
        r = await rig.client.post(url, data=data, files=files, headers=rig.auth("gw1"))
        assert r.status_code == code, (i, r.text)
        assert words in r.json()["detail"], r.json()["detail"]
    assert counts(rig) == before
    assert not photos.exists() or not any(photos.rglob("*.*")), "no photo file left behind by a refused comment"
    r = await rig.client.post(f"/api/alarms/{aid}/comments", data={"text": "好"}, headers=rig.auth("vol"))
    assert r.status_code == 403, "a volunteer reads but does not write the record"


async def test_archive_by_hand(rig: ApiRig) -> None:
    aid = await alarm_in_g1(rig)
    r = await rig.client.post(f"/api/alarms/{aid}/archive", json={}, headers=rig.auth("duty"))
    assert r.status_code == 409
    assert "该警报尚未关闭（当前：报警）" in r.json()["detail"], r.text
    assert rig.service.store.get(aid).state.value == "raised"  # type: ignore[union-attr]
    r = await rig.client.post(f"/api/alarms/{aid}/close", json={"outcome": "false_alarm", "note": "住户做饭"}, headers=rig.auth("duty"))
    assert r.status_code == 200, r.text
    collab = (await rig.client.get(f"/api/alarms/{aid}/collab", headers=rig.auth("duty"))).json()
    assert collab["can_archive"] is True
    assert (await rig.client.post(f"/api/alarms/{aid}/archive", json={}, headers=rig.auth("leader"))).status_code == 403
    r = await rig.client.post(f"/api/alarms/{aid}/archive", json={"note": "已回访"}, headers=rig.auth("gw1"))
    assert r.status_code == 200, r.text
    assert r.json()["alarm"]["state"] == "archived"
    assert r.json()["done"] == ["已归档"]
    last = rig.service.store.audit(aid)[-1]
    assert (last.move, last.actor, last.from_state.value if last.from_state else None, last.to_state.value) == ("archive", "gw1", "false_alarm", "archived")
    board = (await rig.client.get("/api/alarms?open=true", headers=rig.auth("duty"))).json()["alarms"]
    assert aid not in {a["id"] for a in board}
    history = (await rig.client.get("/api/history?state=archived", headers=rig.auth("duty")))
    assert history.status_code == 200, history.text
    assert aid in {a["id"] for a in history.json()["alarms"]}, "history still finds the archived alarm"
    r = await rig.client.post(f"/api/alarms/{aid}/archive", json={}, headers=rig.auth("duty"))
    assert r.status_code == 409
    assert r.json()["detail"] == "该警报已归档"
    r = await rig.client.post(f"/api/alarms/{aid}/comments", data={"text": "补充"}, headers=rig.auth("duty"))
    assert r.status_code == 409
    assert "已归档" in r.json()["detail"]
    r = await rig.client.post(f"/api/alarms/{aid}/archive", json={}, headers={**rig.auth("duty"), "Accept-Language": "en"})
    assert r.json()["detail"] == "this alarm is already archived"
