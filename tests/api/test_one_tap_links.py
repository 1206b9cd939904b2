"""One-tap answer links are single-purpose (issue 22, finding 5): never on a topic any broker client can read, bound
to one person and one alarm, expiring after 30 min by default, each move accepted once and only forward, a
replayed or out-of-order move refused with a reason (Chinese; English on Accept-Language: en) and nothing changed,
also after a restart and on PostgreSQL.

Before: 149 links were captured from sw/v1/notify/responder/... by an anonymous subscriber; links lived 6 h; a
fresh link's POST /r/{token}/handled stopped a confirmed fire's escalation; acknowledge, decline, handled were
accepted again and in any order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from alerting.ladder import Contact
from alerting.lifecycle import AlarmState
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.api.responses import OneTapLinks, next_move_refusal
from backend.api.tokens import TokenSigner
from backend.escalation.settings import EscalationSettings
from backend.sites import SiteDirectory
from backend.store.alarms import AlarmStore
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from backend.store.users import UserStore
from backend.stream import NoticeSent
from broker.topics import NOTIFY_PREFIX
from tests.escalation.centre import centre, centre_api
from tests.escalation.helpers import Rig, fire, make_rig
from tests.processes import fresh_database

SECRET = b"0123456789abcdef0123456789abcdef"
GRID_WORKER = Contact("c01-g1-w1", "杨敏")
STATION_HEAD = Contact("c01-mfs-head", "朱娜")


class R:
    """The answers, by the lifecycle's names (and the ladder's decline)."""

    ACKNOWLEDGE = "acknowledge"
    DEPART = "depart"
    ARRIVE = "arrive"
    FINISH = "finish"
    DECLINE = "decline"


@dataclass
class Api:
    rig: Rig
    links: OneTapLinks
    client: httpx.AsyncClient
    users: UserStore  # the one-tap ledger

    def url(self, contact: Contact, move: str | None = None, alarm: str = "A1") -> str:
        token = self.links.token(alarm, contact.id)
        return f"/r/{token}" if move is None else f"/r/{token}/{move}"

    async def reached(self) -> dict[str, int]:
        state = await self.rig.service.get("A1")
        assert state is not None
        return {s.value: t for s, t in state.reached}

    async def snapshot(self) -> tuple[object, ...]:
        """What a refused move must leave as it was: the ladder's state and the notices it queued."""
        state = await self.rig.service.get("A1")
        assert state is not None
        return state.step, state.stopped, state.reached, state.engagements, self.rig.store.outbox_counts()


@contextlib.asynccontextmanager
async def serve(rig: Rig, engine: sa.Engine) -> AsyncIterator[Api]:
    """The API on the escalation rig, its user store (the one-tap ledger) on `engine`, links with the default lifetime."""
    links = OneTapLinks(TokenSigner(SECRET), rig.clock, "https://sw.example")
    rig.service.links = links.link  # the notices carry real links
    users = UserStore(engine)
    deps = ApiDeps(alarms=AlarmStore(engine), users=users, signer=links.signer, clock=rig.clock, ingest_stats=dict,
                   escalation=rig.service, stream=rig.console, extras={"one_tap": links})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://api") as client:
        yield Api(rig, links, client, users)


@pytest.fixture
async def api(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[Api]:
    rig = make_rig(tmp_path, sample_site)
    async with serve(rig, make_engine(sqlite_url(tmp_path / "api.db"))) as a:
        await rig.service.start(fire(roster=rig.roster))  # a fire at c01-b01: the grid worker and the micro fire station are paged
        yield a


# -- where links travel -------------------------------------------------------------------------------------------------


async def test_notices_on_mqtt_and_the_console_carry_no_link_and_each_sms_carries_its_own_persons(api: Api) -> None:
    with api.rig.console.tap() as feed:
        assert await api.rig.service.deliver_pending() == 8
        console_texts = [e.text for e in [feed.get_nowait() for _ in range(feed.qsize())] if isinstance(e, NoticeSent)]
    on_mqtt = [json.loads(p) for t, p, _ in api.rig.published if t.startswith(f"{NOTIFY_PREFIX}/")]
    assert on_mqtt, "the responder apps are paged over MQTT"
    for notice in on_mqtt:
        assert notice["link"] is None, "any client of the broker may read a notice: it must carry no answer link"
        assert "/r/" not in notice["text"]
        assert notice["alarm_id"] == "A1"
        assert notice["title"] == "烟感报警"
    assert console_texts
    assert all("/r/" not in text for text in console_texts), "the console feed shows everyone's notices: no one's link"
    sms = [m for m in api.rig.sms.sent if m.contact.id == GRID_WORKER.id]
    assert sms, "the grid worker gets an SMS"
    token = sms[0].text.rsplit("/r/", 1)[1]
    assert api.links.open(token) == ("A1", 1, GRID_WORKER.id), "her SMS carries her own link for this alarm"


# -- bound, expiring ------------------------------------------------------------------------------------------------------


def _claims(token: str) -> dict[str, object]:
    body = token.split(".", maxsplit=1)[0]
    parsed: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return parsed


async def test_a_link_acts_only_as_its_person_on_its_alarm(api: Api) -> None:
    token = api.links.token("A1", GRID_WORKER.id)
    claims = _claims(token)
    assert (claims["a"], claims["c"]) == ("A1", GRID_WORKER.id)
    # the same link re-written to speak for the fire station's head: the signature no longer matches
    forged_claims = {**claims, "c": STATION_HEAD.id, "sub": f"respond:{STATION_HEAD.id}"}
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    forged = f"{forged_body}.{token.split('.')[1]}"
    before = await api.snapshot()
    got = await api.client.post(f"/r/{forged}/acknowledge")
    assert got.status_code == 401
    assert got.json()["detail"] == "这个链接无效（签名不符），请向值班室索取新的链接。"
    assert await api.snapshot() == before
    # her own link acknowledges for her only: the fire station's engagement is untouched and its head may still answer
    assert (await api.client.post(f"/r/{token}/acknowledge")).status_code == 200
    state = await api.rig.service.get("A1")
    assert state is not None
    grid, station = state.engagement("grid_worker"), state.engagement("fire_station")
    assert grid is not None
    assert station is not None
    assert grid.progress is not None
    assert station.progress is None
    assert (await api.client.post(api.url(STATION_HEAD, R.ACKNOWLEDGE))).status_code == 200
    # her link of this alarm is no link for another alarm
    assert (await api.client.post(api.url(GRID_WORKER, R.ACKNOWLEDGE, alarm="A2"))).status_code == 404


async def test_links_expire_after_30_minutes_by_default(api: Api) -> None:
    assert EscalationSettings().link_ttl_s == 30 * 60
    assert api.links.ttl_s == 30 * 60
    early, late = api.links.token("A1", GRID_WORKER.id), api.links.token("A1", STATION_HEAD.id)
    api.rig.clock.advance(29 * 60)
    assert (await api.client.post(f"/r/{early}/acknowledge")).status_code == 200
    api.rig.clock.advance(2 * 60)  # 31 min after it was sent
    before = await api.snapshot()
    got = await api.client.post(f"/r/{late}/acknowledge")
    assert got.status_code == 401
    assert got.json()["detail"] == "这个链接已过期，请向值班室索取新的链接。"
    english = await api.client.post(f"/api/responses/{late}", json={"response": "acknowledge"}, headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert english.status_code == 401
    assert english.json()["detail"] == "this link has expired; ask the duty room for a new link"
    assert await api.snapshot() == before


# -- each move once, forward only ---------------------------------------------------------------------------------------


async def test_handled_from_a_fresh_link_does_not_stop_the_escalation_of_a_fire(api: Api) -> None:
    """The captured-link attack: POST /r/{token}/handled with no login stopped a confirmed fire's escalation."""
    before = await api.snapshot()
    got = await api.client.post(api.url(GRID_WORKER, R.FINISH))
    assert got.status_code == 409
    assert got.json()["detail"] == "请先点「我已收到」，再报告「处置完成」；本次未作任何更改。"
    assert await api.snapshot() == before
    state = await api.rig.service.get("A1")
    assert state is not None
    assert state.stopped is None


async def test_each_move_is_accepted_once_and_only_forward(api: Api) -> None:
    ok = [R.ACKNOWLEDGE, R.DEPART, R.FINISH]
    refused = {
        R.ACKNOWLEDGE: "您已提交过「我已收到」，本次未作任何更改。",
        R.DECLINE: "您已确认收到，不能再选择「无法前往」，本次未作任何更改；请致电值班室。",
        R.ARRIVE: "您已报告「处置完成」，不能再报告更早的「到场」；本次未作任何更改。",
        R.FINISH: "您已提交过「处置完成」，本次未作任何更改。",
    }
    assert (await api.client.post(api.url(GRID_WORKER, ok[0]))).status_code == 200
    replay = await api.client.post(api.url(GRID_WORKER, R.ACKNOWLEDGE))  # a second link of hers, replaying the same move
    assert replay.status_code == 409
    assert replay.json()["detail"] == refused[R.ACKNOWLEDGE]
    for move in ok[1:]:
        got = await api.client.post(api.url(GRID_WORKER, move))
        assert got.status_code == 200, got.text
    assert set(await api.reached()) == {"acknowledged", "en_route", "on_scene", "handled"}
    before = await api.snapshot()
    for move, why in refused.items():
        got = await api.client.post(api.url(GRID_WORKER, move))
        assert got.status_code == 409, (move, got.text)
        assert got.json()["detail"] == why
        app = await api.client.post(f"/api/responses/{api.links.token('A1', GRID_WORKER.id)}", json={"response": move},
                                    headers={"Accept-Language": "en"})
        assert app.status_code == 409
        assert "nothing was changed" in app.json()["detail"]
    assert await api.snapshot() == before, "a refused move changed the ladder"
    page = await api.client.get(api.url(GRID_WORKER), headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "已提交：处置完成" in page.text
    assert "<button>" not in page.text, "no move is left to offer"


async def test_decline_only_before_acknowledging_and_nothing_after_it(api: Api) -> None:
    api.rig.clock.advance(120)
    await api.rig.service.run_due()  # unverified: the volunteers are paged
    state = await api.rig.service.get("A1")
    assert state is not None
    vols = state.engagement("volunteers_extinguisher")
    assert vols is not None
    volunteer = vols.contacts[0]
    got = await api.client.post(api.url(volunteer, R.DECLINE))
    assert got.status_code == 200, got.text
    before = await api.snapshot()
    for move, why in ((R.DECLINE, "您已提交过「无法前往」"), (R.ACKNOWLEDGE, "您已表示无法前往"), (R.FINISH, "您已表示无法前往")):
        again = await api.client.post(api.url(volunteer, move), headers={"Accept": "text/html,application/xhtml+xml"})
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("text/html"), "a phone's browser gets a page, not JSON"
        assert why in again.text
    assert await api.snapshot() == before


async def test_racing_requests_for_the_same_move_are_accepted_once(api: Api) -> None:
    link = api.url(GRID_WORKER, R.ACKNOWLEDGE)
    answers = await asyncio.gather(*(api.client.post(link) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert [m.move for m in api.users.moves("A1", GRID_WORKER.id)] == ["acknowledge"]


def test_the_order_rules() -> None:
    assert next_move_refusal([], R.ACKNOWLEDGE) is None
    assert next_move_refusal([], R.DECLINE) is None
    for move in (R.DEPART, R.ARRIVE, R.FINISH):
        refusal = next_move_refusal([], move)
        assert refusal is not None
        assert refusal.reason == "ack_first"
    assert next_move_refusal([R.ACKNOWLEDGE], R.ARRIVE) is None  # skipping forward is fine: she ran straight there
    assert next_move_refusal([R.ACKNOWLEDGE, R.ARRIVE], R.FINISH) is None
    for made, move, reason in [([R.ACKNOWLEDGE, R.ARRIVE], R.DEPART, "backwards"), ([R.ACKNOWLEDGE], R.DECLINE, "decline_late"),
                               ([R.DECLINE], R.ACKNOWLEDGE, "declined"), ([R.ACKNOWLEDGE, R.DEPART], R.DEPART, "replayed")]:
        refusal = next_move_refusal(made, move)
        assert refusal is not None
        assert refusal.reason == reason, (made, move)


# -- durable: a restart, and PostgreSQL ---------------------------------------------------------------------------------


async def test_a_restart_does_not_reopen_replays(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire(roster=rig.roster))
    db = tmp_path / "api.db"
    async with serve(rig, make_engine(sqlite_url(db))) as first:
        link = first.url(GRID_WORKER, R.ACKNOWLEDGE)
        assert (await first.client.post(link)).status_code == 200
    async with serve(rig, make_engine(sqlite_url(db))) as second:  # a new process on the same database
        before = await second.snapshot()
        got = await second.client.post(link)
        assert got.status_code == 409
        assert got.json()["detail"] == "您已提交过「我已收到」，本次未作任何更改。"
        assert await second.snapshot() == before


@pytest.mark.postgres
async def test_moves_are_kept_on_postgresql_too(tmp_path: Path, sample_site: SiteDirectory, postgres_server: LocalPostgres) -> None:
    url = fresh_database(postgres_server, "users")
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire(roster=rig.roster))
    engine = sa.create_engine(url)
    try:
        async with serve(rig, engine) as first:
            assert (await first.client.post(first.url(GRID_WORKER, R.ACKNOWLEDGE))).status_code == 200
            answers = await asyncio.gather(*(first.client.post(first.url(GRID_WORKER, R.DEPART)) for _ in range(3)))
            assert sorted(a.status_code for a in answers) == [200, 409, 409]
        async with serve(rig, sa.create_engine(url)) as second:
            got = await second.client.post(second.url(GRID_WORKER, R.DEPART))
            assert got.status_code == 409
            assert [m.move for m in second.users.moves("A1", GRID_WORKER.id)] == ["acknowledge", "depart"]
            second.users.engine.dispose()
    finally:
        engine.dispose()


# -- one owner: a one-tap answer is a move asked of the alarm service; the ladder learns of it from the commit --------------

_REFUSED = ("refused", "not applied", "IllegalMove", "cannot take the move")


def _refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if any(w in r.getMessage() for w in _REFUSED)]


async def test_one_tap_field_answers_are_committed_moves_one_audit_entry_each_observed_by_the_ladder(
    tmp_path: Path, sample_site: SiteDirectory, caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the ladder took the answer, then queued a move for the bridge to apply later (the answer came back before
    the alarm moved), and 到场 straight after 我已收到 was applied as two moves, 出发 (never tapped) and 到场."""
    caplog.set_level(logging.DEBUG)
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    async with centre(engine, sample_site) as c, centre_api(c) as api:
        assert c.alarms is not None
        assert c.escalation is not None
        aid = await c.raise_()
        await c.settle()  # the ladder pages the grid worker and the fire station; the alarm is notified

        def people() -> list[tuple[str, str]]:
            assert c.alarms is not None
            return [(e.actor, e.move) for e in c.alarms.store.audit(aid) if e.actor != "system"]

        async def tap(who: Contact, answer: str) -> None:
            got = await api.client.post(f"/r/{api.links.token(aid, who.id)}/{answer}")
            assert got.status_code == 200, got.text

        await tap(GRID_WORKER, R.ACKNOWLEDGE)
        assert people() == [(GRID_WORKER.id, "acknowledge")], "committed before the answer returns"
        await tap(STATION_HEAD, R.ACKNOWLEDGE)  # the alarm is acknowledged already: his answer is his rung's, no move
        assert people() == [(GRID_WORKER.id, "acknowledge")]
        await tap(GRID_WORKER, R.DEPART)
        assert people()[-1] == (GRID_WORKER.id, "depart")
        await tap(STATION_HEAD, R.ARRIVE)  # he ran straight there: one move, arrive (no depart he never tapped)
        assert people()[-1] == (STATION_HEAD.id, "arrive")
        await tap(GRID_WORKER, R.FINISH)
        assert people() == [(GRID_WORKER.id, "acknowledge"), (GRID_WORKER.id, "depart"), (STATION_HEAD.id, "arrive"), (GRID_WORKER.id, "finish")]
        state = await c.escalation.get(aid)
        assert state is not None
        assert state.stopped == "handled"
        assert [s for s, _ in state.reached] == [AlarmState.ACKNOWLEDGED, AlarmState.EN_ROUTE, AlarmState.ON_SCENE, AlarmState.HANDLED]
        assert {e.rung: e.progress for e in state.engagements} == {"grid_worker": AlarmState.HANDLED, "fire_station": AlarmState.ON_SCENE}
        ladder = [(e.kind, e.detail.split(" ")[0]) for e in c.log(aid) if e.kind in ("observed", "response")]
        assert ladder == [("observed", f"{GRID_WORKER.id}:"), ("observed", f"{STATION_HEAD.id}:"), ("observed", f"{GRID_WORKER.id}:"),
                          ("observed", f"{STATION_HEAD.id}:"), ("observed", f"{GRID_WORKER.id}:")], "each answer taken in once, as observed"
        await c.settle()
        assert _refused_lines(caplog) == []
        assert c.alarms.store.get(aid).state is AlarmState.HANDLED  # type: ignore[union-attr]
    engine.dispose()


async def test_a_responder_who_answered_in_round_one_answers_again_by_link_in_round_two(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """Before: one-tap moves were kept per (alarm, person), so the grid worker's 我已收到 of the first round made every
    link of the second round answer 'you already acknowledged' and change nothing."""
    engine = make_engine(sqlite_url(tmp_path / "centre.db"))
    async with centre(engine, sample_site) as c, centre_api(c) as api:
        assert c.alarms is not None
        assert c.escalation is not None
        aid = await c.raise_()
        await c.settle()
        await c.escalation.deliver_pending()
        first = next(m.link for m in c.sms.sent if m.contact.id == GRID_WORKER.id and m.link)
        assert first is not None
        assert api.links.open(first.rsplit("/r/", 1)[1])[1] == 1
        assert (await api.client.post(f"/r/{first.rsplit('/r/', 1)[1]}/acknowledge")).status_code == 200
        # the detector clears, then alarms again: the alarm is live and unacknowledged again, a second round pages
        await c.clear("smoke", "device:c01-b01-smoke-1")
        c.clock.advance(600)
        await c.raise_()
        await c.settle()
        state = await c.escalation.get(aid)
        assert state is not None
        assert state.round == 2
        c.sms.sent.clear()
        await c.escalation.deliver_pending()
        second = next(m.link for m in c.sms.sent if m.contact.id == GRID_WORKER.id and m.link)
        assert second is not None
        token = second.rsplit("/r/", 1)[1]
        assert api.links.open(token) == (aid, 2, GRID_WORKER.id), "the round travels in the link"
        page = await api.client.get(f"/r/{token}", headers={"Accept": "text/html"})
        assert "我已收到</button>" in page.text
        got = await api.client.post(f"/r/{token}/acknowledge")
        assert got.status_code == 200, got.text
        assert [(e.actor, e.move) for e in c.alarms.store.audit(aid) if e.actor == GRID_WORKER.id] == [
            (GRID_WORKER.id, "acknowledge"), (GRID_WORKER.id, "acknowledge")]
        state = await c.escalation.get(aid)
        assert state is not None
        assert state.engagement("grid_worker").progress is AlarmState.ACKNOWLEDGED  # type: ignore[union-attr]
        # each link is still single-use within its round
        again = await api.client.post(f"/r/{token}/acknowledge")
        assert again.status_code == 409
        old = await api.client.post(f"/r/{first.rsplit('/r/', 1)[1]}/acknowledge")
        assert old.status_code == 409
        assert [m.move for m in api.users.moves(aid, GRID_WORKER.id, round_=1)] == ["acknowledge"]
        assert [m.move for m in api.users.moves(aid, GRID_WORKER.id, round_=2)] == ["acknowledge"]
    engine.dispose()
