"""The responder's phone view through its HTTP API, on the real alarm service, ladder and bridge (tests/escalation/centre.py):
a one-tap link logs its person in and shows their tasks with the place, the resident's notes (by role) and the calls; each
move goes through the alarm service; forged, replayed or expired links, another community's alarm, a move the table does
not allow, a photo too large or not an image are each refused with a Chinese reason and change nothing.

Before issue 18 the link's page showed a title, an alarm id and five buttons: no place, no notes, no call, no tasks, no
session; an expired link's refusal was a bare sentence with no number to call; there was no route to move with a photo."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from alerting.directory import Seat
from alerting.ladder import Contact
from alerting.model import Place, Severity, Signal, SignalKind
from backend.api.app import create_app
from backend.api.console_collab import collab_of
from backend.api.deps import ApiDeps
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.notify.shortlinks import ShortLinks
from backend.responder import COOKIE, ResponderSessions, alarm_task, person_of
from backend.settings import ApiSettings
from backend.sites import SiteDirectory
from backend.sites.model import Building, Community, Grid, Responder, Role, Shift
from backend.store.db import make_engine, sqlite_url
from backend.store.users import UserStore
from backend.workorders import WorkOrderService, WorkOrderSettings
from tests.escalation.centre import Centre, centre
from tests.workorders.images import png

SECRET = b"0123456789abcdef0123456789abcdef"
DUTY_PHONE = "0571-88880000"
HOUSEHOLD = "c01-b01-1-102"  # lives alone, bedridden; key with the building leader; son 徐涛 13491733095
PHOTO_LIMIT = 4096
PHONE = {"X-Shouwang-Responder": "1"}


def two_communities(site: SiteDirectory) -> SiteDirectory:
    """The sample site and a second community, 和平里社区 (c02), with one building and its grid worker on duty all week."""
    return dataclasses.replace(
        site,
        communities={**site.communities, "c02": Community("c02", "和平里社区")},
        grids={**site.grids, "c02-g1": Grid("c02-g1", "和平里第1网格", "c02")},
        buildings={**site.buildings, "c02-b01": Building("c02-b01", "和平里1号楼", "c02-g1", floors=6, units=2, x=20.0, y=20.0)},
        responders={**site.responders, "c02-g1-w1": Responder("c02-g1-w1", "王芳", Role.GRID_WORKER, "13900000001", "c02", grid="c02-g1")},
        shifts=(*site.shifts, Shift(Seat.GRID_WORKER, "c02-g1", "c02-g1-w1", frozenset(range(7)), 0, 0)),
    )


@dataclass
class Phone:
    c: Centre
    client: httpx.AsyncClient
    links: OneTapLinks
    users: UserStore
    sessions: ResponderSessions
    orders: WorkOrderService
    photos: Path  # the alarm photos' folder (a phone's photo goes on the alarm's record as a comment)
    deps: ApiDeps

    async def raise_(self, subject: str, building: str, *, household: str | None = None, unit: int | None = None) -> str:
        assert self.c.alarms is not None
        sig = Signal(SignalKind.RAISE, "smoke", subject, self.c.clock.now_ms(), Severity.CRITICAL, True, False, "烟感报警",
                     Place(subject.split(":", 1)[1], None, building, unit, household))
        actions = await self.c.alarms.signal(sig)
        await self.c.settle()
        return next(a.alarm.id for a in actions if hasattr(a, "alarm") and a.alarm.key == sig.key)

    async def paged(self, alarm_id: str, rung: str) -> str:
        assert self.c.escalation is not None
        state = await self.c.escalation.get(alarm_id)
        assert state is not None
        engagement = state.engagement(rung)
        assert engagement is not None, f"{rung} was not paged for {alarm_id}"
        return engagement.contacts[0].id

    async def log_in(self, alarm_id: str, contact: str) -> httpx.Response:
        page = await self.client.get(f"/r/{self.links.token(alarm_id, contact)}", headers={"Accept": "text/html"})
        assert page.status_code == 200, page.text
        return page

    async def snapshot(self, alarm_id: str, contact: str) -> tuple[Any, ...]:
        """What a refused request must leave as it was: the alarm, its audit log, its ladder, the person's answers, the photos."""
        assert self.c.alarms is not None
        assert self.c.escalation is not None
        a = self.c.alarms.store.get(alarm_id)
        assert a is not None
        state = await self.c.escalation.get(alarm_id)
        assert state is not None
        files = sorted(p.name for p in self.photos.rglob("*") if p.is_file())
        return (a.state, len(self.c.alarms.store.audit(alarm_id)), state.reached, state.engagements,
                [m.move for m in self.users.moves(alarm_id, contact, round_=state.round)], files)

    async def move(self, alarm_id: str, move: str, *, note: str = "", photo: tuple[str, bytes, str] | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        files = {"photo": photo} if photo else None
        return await self.client.post(f"/m/api/alarms/{alarm_id}/moves", data={"move": move, "note": note}, files=files,
                                      headers=PHONE if headers is None else headers)


@contextlib.asynccontextmanager
async def serve(c: Centre, tmp: Path) -> AsyncIterator[Phone]:
    assert c.alarms is not None
    assert c.escalation is not None
    signer = TokenSigner(SECRET)
    links = OneTapLinks(signer, c.clock, "https://sw.example")
    c.escalation.links = links.link
    users = UserStore(c.engine)
    orders = WorkOrderService(c.engine, c.site, c.clock, tmp / "workorder-photos", WorkOrderSettings(photo_max_bytes=PHOTO_LIMIT), alarms=c.alarms.store)
    api = ApiSettings(duty_phone=DUTY_PHONE)
    deps = ApiDeps(alarms=c.alarms.store, users=users, signer=signer, clock=c.clock, ingest_stats=dict, sites=c.site, alarm_service=c.alarms,
                   escalation=c.escalation, extras={"one_tap": links, "api": api, "workorders": orders})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="https://api") as client:
        yield Phone(c, client, links, users, ResponderSessions(signer, c.clock), orders, collab_of(deps).photos.root, deps)


@pytest.fixture
async def phone(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[Phone]:
    async with centre(make_engine(sqlite_url(tmp_path / "centre.db")), two_communities(sample_site)) as c, serve(c, tmp_path) as p:
        yield p


# -- logging in by the link, and what the phone shows -------------------------------------------------------------------


async def test_the_link_logs_its_person_in_and_the_task_shows_the_place_notes_calls_and_moves(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    page = await phone.log_in(alarm, worker)
    cookie = page.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie
    assert "Path=/m" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" in cookie  # served over https here
    assert "我已收到</button>" in page.text, "the link's own buttons work without script"
    assert 'src="/static/responder.js"' in page.text

    got = await phone.client.get("/m/api/tasks")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["me"]["id"] == worker
    assert body["me"]["role_zh"] == "网格员"
    assert body["duty_phone"] == DUTY_PHONE
    [task] = [t for t in body["tasks"] if t["id"] == alarm]
    assert task["place"]["text"] == "幸福里社区 第1网格 1号楼 1单元 1层 102室"
    assert task["navigation"]["geo"].startswith("geo:0,0?q=")  # the directory holds no coordinates: a search by address
    assert "东" in task["navigation"]["text"]
    assert task["navigation"]["plan"]["target"] == "c01-b01"
    resident = task["resident"]
    assert resident["hidden"] is False
    assert resident["lives_alone"] is True
    assert resident["key_holder"]["name"] == "张桂兰"
    calls = {c["label"]: c["tel"] for c in task["calls"]}
    assert calls["值班室"] == DUTY_PHONE
    assert calls["儿子 徐涛"] == "13491733095"
    assert calls["钥匙保管人 张桂兰"] == "13093082061"
    assert [(m["move"], m["label"], m["open"]) for m in task["moves"]] == [
        ("acknowledge", "我已收到", True), ("depart", "出发", False), ("arrive", "到场", False), ("finish", "处置完成", False)]
    assert task["at_local"].endswith("09:00"), "Beijing time (the centre's clock is Thursday 09:00 in Beijing)"

    # the phone page itself opens with the session alone
    assert (await phone.client.get("/m/", headers={"Accept": "text/html"})).status_code == 200


async def test_the_sms_short_link_leads_to_the_same_login(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    code = ShortLinks(phone.c.engine).shorten(phone.links.link(alarm, 1, Contact(worker, "")), f"{alarm}/1/{worker}",
                                              now_ms=phone.c.clock.now_ms(), ttl_ms=600_000)
    hop = await phone.client.get(f"/s/{code}", headers={"Accept": "text/html"})
    assert hop.status_code == 302
    target = httpx.URL(hop.headers["location"])
    page = await phone.client.get(target.path, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert f"{COOKIE}=" in page.headers["set-cookie"]
    assert [t["id"] for t in (await phone.client.get("/m/api/tasks")).json()["tasks"]] == [alarm]


async def test_who_sees_the_residents_notes_follows_the_consoles_rule(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    assert phone.c.alarms is not None
    assert phone.c.escalation is not None
    stored = phone.c.alarms.store.get(alarm)
    state = await phone.c.escalation.get(alarm)
    assert stored is not None
    assert state is not None
    record = phone.c.alarms.store.record(stored)
    volunteer = next(r.id for r in phone.c.site.responders.values() if r.role is Role.VOLUNTEER)

    def resident_as(who: str) -> Any:
        person = person_of(who, phone.c.site)
        assert person is not None, who
        return alarm_task(record, state, [], person, phone.c.site, duty_phone=None, tz=ZoneInfo("Asia/Shanghai"))["resident"]

    seen = {who: resident_as(who) for who in ("c01-g1-w1", "c01-b01-leader", "c01-mfs-m1", volunteer, f"family:{HOUSEHOLD}:0")}
    assert all(seen[w]["hidden"] is False for w in ("c01-g1-w1", "c01-b01-leader", "c01-mfs-m1"))
    assert seen[volunteer] == {"hidden": True}, "volunteers do not read residents' notes (VIEW_VULNERABLE)"
    assert seen[f"family:{HOUSEHOLD}:0"] == {"hidden": True}


async def test_each_move_goes_through_the_alarm_service_with_a_comment_and_a_photo(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    await phone.log_in(alarm, worker)
    for move, expected in (("acknowledge", "acknowledged"), ("depart", "en_route"), ("arrive", "on_scene")):
        got = await phone.move(alarm, move, note="马上到")
        assert got.status_code == 200, got.text
        assert phone.c.alarms is not None
        assert phone.c.alarms.store.get(alarm).state.value == expected  # type: ignore[union-attr]
    got = await phone.move(alarm, "finish", note="油锅起火已扑灭", photo=("scene.png", png(), "image/png"))
    assert got.status_code == 200, got.text
    assert got.json()["task"]["state"] == "handled"
    assert [m["done"] for m in got.json()["task"]["moves"]] == [True, True, True, True]
    assert phone.c.alarms is not None
    audit = [(e.actor, e.move, e.note) for e in phone.c.alarms.store.audit(alarm) if e.actor == worker]
    assert [m for _a, m, _n in audit] == ["acknowledge", "depart", "arrive", "finish"], "one move of the alarm service each"
    assert "油锅起火已扑灭" in audit[-1][2]
    assert "照片" in audit[-1][2]
    # the photo is on the alarm's record as the person's comment (the console shows it live in the comments)
    [comment] = collab_of(phone.deps).comments(alarm)
    assert comment.id == got.json()["photo"]
    assert comment.text == "油锅起火已扑灭"
    assert comment.author.endswith("（网格员）")
    [photo] = comment.photos
    assert photo["sha256"] == hashlib.sha256(png()).hexdigest()
    _row, path = collab_of(phone.deps).photo_file(alarm, photo["id"])
    assert path.read_bytes() == png()


# -- bad input: refused in Chinese, nothing changed ----------------------------------------------------------------------


async def test_forged_and_expired_links_answer_a_chinese_page_with_the_duty_rooms_number_and_log_nobody_in(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    forged = OneTapLinks(TokenSigner(b"not the server's key, 32 bytes!!"), phone.c.clock).token(alarm, worker)
    expired = OneTapLinks(phone.links.signer, phone.c.clock, ttl_s=-60).token(alarm, worker)
    for token, why in ((forged, "签名不符"), (expired, "已过期"), ("not-a-token", "无效")):
        page = await phone.client.get(f"/r/{token}", headers={"Accept": "text/html"})
        assert page.status_code == 401
        assert page.headers["content-type"].startswith("text/html")
        assert why in page.text
        assert "请向值班室索取新的链接" in page.text
        assert f'href="tel:{DUTY_PHONE}"' in page.text
        assert "set-cookie" not in page.headers
    assert (await phone.client.get("/m/api/tasks")).status_code == 401
    # a session signed with another key, or expired, or a one-tap link put where the session goes: no session
    for cookie in (ResponderSessions(TokenSigner(b"not the server's key, 32 bytes!!"), phone.c.clock).issue(worker),
                   ResponderSessions(phone.links.signer, phone.c.clock, ttl_s=-60).issue(worker), phone.links.token(alarm, worker)):
        phone.client.cookies.set(COOKIE, cookie, domain="api", path="/m")
        got = await phone.client.get("/m/api/tasks")
        assert got.status_code == 401
        assert "请用短信或通知里的链接打开本页" in got.json()["detail"]
        before = await phone.snapshot(alarm, worker)
        assert (await phone.move(alarm, "acknowledge")).status_code == 401
        assert await phone.snapshot(alarm, worker) == before
        page = await phone.client.get("/m/", headers={"Accept": "text/html"})
        assert page.status_code == 401
        assert f'href="tel:{DUTY_PHONE}"' in page.text


async def test_a_replayed_move_and_a_used_link_are_refused_and_change_nothing(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    await phone.log_in(alarm, worker)
    assert (await phone.move(alarm, "acknowledge")).status_code == 200
    before = await phone.snapshot(alarm, worker)
    again = await phone.move(alarm, "acknowledge")
    assert again.status_code == 409
    assert again.json()["detail"] == "您已提交过「我已收到」，本次未作任何更改。"
    replay = await phone.client.post(f"/r/{phone.links.token(alarm, worker)}/acknowledge")  # the link's own button, replayed
    assert replay.status_code == 409
    assert await phone.snapshot(alarm, worker) == before
    for move in ("depart", "arrive", "finish"):
        assert (await phone.move(alarm, move)).status_code == 200
    phone.client.cookies.clear()
    used = await phone.client.get(f"/r/{phone.links.token(alarm, worker)}", headers={"Accept": "text/html"})
    assert "链接已用过" in used.text
    assert "已提交：处置完成" in used.text
    assert f'href="tel:{DUTY_PHONE}"' in used.text
    assert "set-cookie" not in used.headers, "a used link logs nobody in"


async def test_another_communitys_alarm_is_refused_like_an_unknown_one_and_nothing_changes(phone: Phone) -> None:
    ours = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    theirs = await phone.raise_("device:c02-b01-smoke-1", "c02-b01")
    assert await phone.paged(theirs, "grid_worker") == "c02-g1-w1"
    worker = await phone.paged(ours, "grid_worker")
    await phone.log_in(ours, worker)
    tasks = (await phone.client.get("/m/api/tasks")).json()["tasks"]
    assert [t["id"] for t in tasks if t["kind"] == "alarm"] == [ours], "another community's alarm is no task of mine"
    before = await phone.snapshot(theirs, "c02-g1-w1"), await phone.snapshot(theirs, worker)
    got = await phone.move(theirs, "acknowledge")
    assert got.status_code == 404
    assert got.json()["detail"] == "您的任务中没有这个报警（不在您的社区，或未呼叫您），本次未作任何更改。"
    assert (await phone.move("A-no-such", "acknowledge")).json()["detail"] == got.json()["detail"], "the same answer as an unknown id"
    assert (await phone.snapshot(theirs, "c02-g1-w1"), await phone.snapshot(theirs, worker)) == before


async def test_a_move_the_order_or_the_table_does_not_allow_is_refused_and_changes_nothing(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    await phone.log_in(alarm, worker)
    before = await phone.snapshot(alarm, worker)
    early = await phone.move(alarm, "depart")
    assert early.status_code == 409
    assert early.json()["detail"] == "请先点「我已收到」，再报告「出发」；本次未作任何更改。"
    unknown = await phone.move(alarm, "verify_close")  # the duty officer's move, not a responder's
    assert unknown.status_code == 422
    assert "只能提交" in unknown.json()["detail"]
    no_header = await phone.move(alarm, "acknowledge", headers={})  # another site's form cannot send the page's header
    assert no_header.status_code == 403
    assert await phone.snapshot(alarm, worker) == before
    for move in ("acknowledge", "finish"):
        assert (await phone.move(alarm, move)).status_code == 200
    before = await phone.snapshot(alarm, worker)
    back = await phone.move(alarm, "arrive")
    assert back.status_code == 409
    assert back.json()["detail"] == "您已报告「处置完成」，不能再报告更早的「到场」；本次未作任何更改。"
    assert await phone.snapshot(alarm, worker) == before
    # the duty officer closes it: a responder's move on a closed alarm is refused
    assert phone.c.alarms is not None
    await phone.c.alarms.move(alarm, "verify_close", "duty", note="已复核")
    await phone.c.settle()
    before = await phone.snapshot(alarm, worker)
    closed = await phone.move(alarm, "arrive")
    assert closed.status_code == 409, closed.text
    assert closed.json()["detail"] == "这个报警已关闭，本次未作任何更改。"
    assert await phone.snapshot(alarm, worker) == before
    assert not [t for t in (await phone.client.get("/m/api/tasks")).json()["tasks"] if t["id"] == alarm], "a closed alarm is no open task"


@pytest.mark.parametrize(("photo", "status", "why"), [
    (("big.png", png(200, 200, (1, 2, 3)) + b"\0" * PHOTO_LIMIT, "image/png"), 413, "照片过大"),
    (("notes.png", b"<html>not an image</html>" * 4, "image/png"), 415, "只接受 JPEG、PNG 或 WebP"),
])
async def test_a_photo_too_large_or_not_an_image_is_refused_and_changes_nothing(phone: Phone, photo: tuple[str, bytes, str], status: int,
                                                                                 why: str) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    await phone.log_in(alarm, worker)
    before = await phone.snapshot(alarm, worker)
    got = await phone.move(alarm, "acknowledge", note="带照片", photo=photo)
    assert got.status_code == status, got.text
    assert why in got.json()["detail"]
    assert "本次未作任何更改" in got.json()["detail"]
    assert await phone.snapshot(alarm, worker) == before


# -- work orders on the phone --------------------------------------------------------------------------------------------


async def test_work_orders_assigned_to_me_are_tasks_and_are_worked_from_the_phone(phone: Phone) -> None:
    alarm = await phone.raise_("device:c01-b01-smoke-102", "c01-b01", household=HOUSEHOLD, unit=1)
    worker = await phone.paged(alarm, "grid_worker")
    phone.c.clock.advance(60)
    mine = await phone.orders.create("duty", description="配电箱线路老化，需更换", building_id="c01-b01", assignee_id=worker)
    other = await phone.orders.create("duty", description="楼道堆物", building_id="c01-b02", assignee_id="c01-b01-leader")
    await phone.log_in(alarm, worker)
    tasks = (await phone.client.get("/m/api/tasks")).json()["tasks"]
    assert [t["id"] for t in tasks if t["kind"] == "workorder"] == [mine.id]
    assert tasks[0]["id"] == mine.id, "newest first: the order was opened after the alarm"

    async def order_move(order_id: str, move: str, photo: tuple[str, bytes, str] | None = None) -> httpx.Response:
        return await phone.client.post(f"/m/api/workorders/{order_id}/moves", data={"move": move, "note": "已处理"},
                                       files={"photo": photo} if photo else None, headers=PHONE)

    refused = await order_move(other.id, "start")
    assert refused.status_code == 404
    assert "您的任务中没有这张工单" in refused.json()["detail"]
    early = await order_move(mine.id, "finish")
    assert early.status_code == 409
    assert "已派单" in early.json()["detail"]
    assert (await order_move(mine.id, "start")).status_code == 200
    no_photo = await order_move(mine.id, "finish")
    assert no_photo.status_code == 422, no_photo.text  # the work orders' rule: finishing needs a photo
    assert phone.orders.get(mine.id).state.value == "in_progress"  # type: ignore[union-attr]
    bad = await order_move(mine.id, "finish", ("x.png", b"GIF89a not ours" * 3, "image/png"))
    assert bad.status_code == 415
    assert phone.orders.photo_rows(mine.id) == []
    done = await order_move(mine.id, "finish", ("after.png", png(), "image/png"))
    assert done.status_code == 200, done.text
    assert phone.orders.get(mine.id).state.value == "done"  # type: ignore[union-attr]
    assert len(phone.orders.photo_rows(mine.id)) == 1
