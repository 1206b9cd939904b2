"""The SOS call-back (回访) over HTTP, on the real alarm service, escalation service and bridge (SQLite, virtual clock).

An SOS press of a resident living alone opens a call-back for the grid worker (60 s); the console lists it and
records the outcome: no answer pages the family and the building leader at once; answered-fine closes the alarm
through the lifecycle as the officer; a false press closes it as a false alarm with its reason. Bad input is
refused in Chinese and changes nothing. A crash and restart re-derives the deadline from what is stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.lifecycle import AlarmState
from alerting.model import Place, Severity, Signal, SignalKind
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from tests.escalation.centre import Centre, CentreApi, centre, centre_api

SOS_DEVICE = "c01-b01-1-102-sos"
HOUSEHOLD = "c01-b01-1-102"  # vulnerable, lives alone; family: 徐涛（儿子）13491733095
RESIDENT_PHONE = "02161234567"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    yield engine
    engine.dispose()


def with_phone(site: SiteDirectory) -> SiteDirectory:
    hh = site.households[HOUSEHOLD]
    return dataclasses.replace(site, households={**site.households, HOUSEHOLD: dataclasses.replace(hh, phone=RESIDENT_PHONE)})


@asynccontextmanager
async def rig(db: sa.Engine, site: SiteDirectory) -> AsyncIterator[tuple[Centre, CentreApi]]:
    async with centre(db, with_phone(site)) as c, centre_api(c) as api:
        api.users.add("gw1", None, "grid_worker", "网格员一", "c01-g1")
        api.users.add("gw2", None, "grid_worker", "网格员二", "c01-g2")
        api.users.add("leader", None, "building_leader", "楼栋长", "c01-b01")
        yield c, api


def session(c: Centre, api: CentreApi, who: str) -> dict[str, str]:
    signer = api.links.signer
    return {"Authorization": f"Bearer {signer.sign({'sub': who}, c.clock.now_ms() / 1000, 12 * 3600)}"}


async def press(c: Centre, device: str = SOS_DEVICE, household: str = HOUSEHOLD, alarm_type: str = "sos") -> str:
    assert c.alarms is not None
    subject = f"device:{device}"
    sig = Signal(SignalKind.RAISE, alarm_type, subject, c.clock.now_ms(), Severity.CRITICAL, True, False, "一键呼救",
                 Place(device, None, "c01-b01", 1, household))
    actions = await c.alarms.signal(sig)
    alarm_id = next(a.alarm.id for a in actions if hasattr(a, "alarm") and a.alarm.key == sig.key)
    await c.settle()
    return alarm_id


def log_kinds(c: Centre, alarm_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.detail or "") for e in c.log(alarm_id) if e.kind.startswith("callback")]


async def test_the_console_lists_the_call_back_with_the_residents_phone_and_its_deadline(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with rig(db, sample_site) as (c, api):
        t0 = c.clock.now_ms()
        aid = await press(c)
        assert c.pages(aid, "page") == ["c01-g1-w1"]  # the grid worker calls back; the family is not woken yet
        r = await api.client.get("/api/callbacks", headers=api.duty)
        assert r.status_code == 200
        [cb] = r.json()["callbacks"]
        assert (cb["alarm_id"], cb["deadline_ms"], cb["resident_phone"], cb["open"]) == (aid, t0 + 60_000, RESIDENT_PHONE, True)
        assert cb["family"] == [{"name": "徐涛", "relation": "儿子", "phone": "13491733095"}]
        assert [o["text"] for o in cb["outcomes"]] == ["接通·平安", "接通·需要帮助", "无人接听", "误按"]
        assert (await api.client.get("/api/callbacks", headers=session(c, api, "gw2"))).json()["callbacks"] == []  # another grid's
        assert len((await api.client.get("/api/callbacks", headers=session(c, api, "gw1"))).json()["callbacks"]) == 1
        one = await api.client.get(f"/api/alarms/{aid}/callback", headers=session(c, api, "gw1"))
        assert one.json()["callback"]["deadline_text"]  # Beijing time


async def test_no_answer_pages_the_family_at_once_and_a_second_outcome_is_refused(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with rig(db, sample_site) as (c, api):
        aid = await press(c)
        c.clock.advance(20)
        at = c.clock.now_ms()
        r = await api.client.post(f"/api/alarms/{aid}/callback", json={"outcome": "no_answer"}, headers=session(c, api, "gw1"))
        assert r.status_code == 200, r.text
        assert r.json()["callback"]["outcome_text"] == "无人接听"
        assert c.pages(aid, "callback_failed") == ["family:c01-b01-1-102:0", "neighbour:c01-b01-1-102:0", "c01-b01-leader"]
        assert ("callback_outcome", "gw1: no_answer") in log_kinds(c, aid)
        entry = next(e for e in c.log(aid) if e.kind == "callback_outcome")
        assert entry.at_ms == at  # who and when
        before = c.log(aid)
        again = await api.client.post(f"/api/alarms/{aid}/callback", json={"outcome": "answered_fine"}, headers=api.duty)
        assert again.status_code == 409
        assert "已记录为「无人接听」" in again.json()["detail"]
        assert c.log(aid) == before
        assert (await api.client.get("/api/callbacks", headers=api.duty)).json()["callbacks"] == []
        timeline = (await api.client.get(f"/api/alarms/{aid}", headers=api.duty)).json()["timeline"]
        shown = [(e.get("label"), e.get("note_text")) for e in timeline if e.get("what") == "callback_outcome"]
        assert shown == [("回访结果", "gw1: 无人接听")]  # the console's timeline, in Chinese


async def test_answered_fine_closes_the_alarm_through_the_lifecycle_as_the_caller(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with rig(db, sample_site) as (c, api):
        aid = await press(c)
        r = await api.client.post(f"/api/alarms/{aid}/callback", json={"outcome": "answered_fine", "note": "老人说按错了位置，身体无恙"},
                                  headers=api.duty)
        assert r.status_code == 200, r.text
        await c.settle()
        assert c.alarms is not None
        alarm = c.alarms.store.get(aid)
        assert alarm is not None
        assert alarm.state is AlarmState.CLOSED
        moves = [(e.move, e.actor, e.note) for e in c.alarms.store.audit(aid) if e.actor == "duty"]
        assert [m for m, _, _ in moves] == ["acknowledge", "finish", "verify_close"]
        assert all(n.startswith("回访：接通·平安") for _, _, n in moves)
        assert c.pages(aid, "callback_failed") == []
        assert c.escalation is not None
        state = await c.escalation.get(aid)
        assert state is not None
        assert state.stopped is not None


async def test_a_false_press_needs_its_reason_and_closes_as_a_false_alarm(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with rig(db, sample_site) as (c, api):
        aid = await press(c)
        bare = await api.client.post(f"/api/alarms/{aid}/callback", json={"outcome": "false_press"}, headers=api.duty)
        assert bare.status_code == 422
        assert "原因" in bare.json()["detail"]
        assert log_kinds(c, aid) == [("callback_opened", "call the resident back and record the outcome")]
        r = await api.client.post(f"/api/alarms/{aid}/callback", json={"outcome": "false_press", "note": "按钮挂在床头被碰到"}, headers=api.duty)
        assert r.status_code == 200, r.text
        assert c.alarms is not None
        alarm = c.alarms.store.get(aid)
        assert alarm is not None
        assert alarm.state is AlarmState.FALSE_ALARM
        assert [(e.move, e.note) for e in c.alarms.store.audit(aid) if e.actor == "duty"] == [("mark_false", "回访：误按。按钮挂在床头被碰到")]


async def test_bad_requests_are_refused_in_chinese_and_change_nothing(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with rig(db, sample_site) as (c, api):
        aid = await press(c)
        smoke = await press(c, "c01-b01-smoke-1", "", "smoke")
        cases = [
            ("/api/alarms/nope/callback", {"outcome": "no_answer"}, api.duty, 404, "没有报警"),
            (f"/api/alarms/{smoke}/callback", {"outcome": "no_answer"}, api.duty, 409, "不是一键呼救"),
            (f"/api/alarms/{aid}/callback", {"outcome": "no_answer"}, session(c, api, "gw2"), 404, "辖区"),
            (f"/api/alarms/{aid}/callback", {"outcome": "answered_fine"}, session(c, api, "leader"), 403, "不能关闭报警"),
            (f"/api/alarms/{aid}/callback", {"outcome": "maybe"}, api.duty, 422, ""),
        ]
        before = c.log(aid)
        for url, body, headers, code, words in cases:
            r = await api.client.post(url, json=body, headers=headers)
            assert r.status_code == code, (url, body, r.text)
            assert words in r.json()["detail"]
        assert c.log(aid) == before
        assert c.alarms is not None
        alarm = c.alarms.store.get(aid)
        assert alarm is not None
        assert alarm.is_open


async def test_the_deadline_passing_climbs_to_the_family_and_survives_a_restart(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with rig(db, sample_site) as (c, _api):
        t0 = c.clock.now_ms()
        aid = await press(c)
        c.clock.advance(30)
        await c.restart()  # crash: nothing about the call-back is kept in memory
        assert c.escalation is not None
        c.clock.advance(29.999)
        await c.escalation.run_due()
        assert c.pages(aid, "callback_failed") == []
        c.clock.advance(0.001)
        assert c.escalation.store.next_due_ms() is not None
        await c.escalation.run_due()
        assert c.pages(aid, "callback_failed") == ["family:c01-b01-1-102:0", "neighbour:c01-b01-1-102:0", "c01-b01-leader"]
        expired = next(e for e in c.log(aid) if e.kind == "callback_expired")
        assert (expired.at_ms, expired.due_ms) == (t0 + 60_000, t0 + 60_000)
        await c.restart()
        c.clock.advance(600)
        await c.escalation.run_due()
        assert c.pages(aid, "callback_failed") == ["family:c01-b01-1-102:0", "neighbour:c01-b01-1-102:0", "c01-b01-leader"]  # once
