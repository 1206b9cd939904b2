"""Responses through the API: one-tap links (signed, expiring), the app's JSON answers, timelines and misses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from alerting.ladder import Contact
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.sites import SiteDirectory
from backend.store.alarms import AlarmStore
from backend.store.db import make_engine, sqlite_url
from backend.store.users import UserStore
from tests.escalation.helpers import Rig, fire, make_rig


@dataclass
class Api:
    rig: Rig
    client: httpx.AsyncClient
    links: OneTapLinks
    token: str  # a duty officer's session


@pytest.fixture
async def api(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[Api]:
    rig = make_rig(tmp_path, sample_site)
    engine = make_engine(sqlite_url(tmp_path / "api.db"))
    users = UserStore(engine)
    users.ensure_admin("admin", "correct horse battery")
    signer = TokenSigner(b"0123456789abcdef0123456789abcdef")
    links = OneTapLinks(signer, rig.clock, "https://sw.example", ttl_s=3600)
    deps = ApiDeps(alarms=AlarmStore(engine), users=users, signer=signer, clock=rig.clock, ingest_stats=dict, sites=sample_site,
                   escalation=rig.service, stream=rig.console, extras={"one_tap": links})
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        login = await client.post("/api/login", json={"username": "admin", "password": "correct horse battery"})
        assert login.status_code == 200, login.text
        yield Api(rig, client, links, login.json()["token"])


def token_of(link: str) -> str:
    return link.rsplit("/r/", 1)[1]


async def test_one_tap_link_acknowledges_and_the_time_is_served(api: Api) -> None:
    await api.rig.service.start(fire(roster=api.rig.roster))
    api.rig.clock.advance(14)
    link = api.links.link("A1", 1, Contact("c01-mfs-head", "朱娜"))
    page = await api.client.get(f"/r/{token_of(link)}")
    assert page.status_code == 200
    assert "我已收到" in page.text
    assert "烟感报警" in page.text
    t = await api.client.get("/api/escalation/A1", headers={"Authorization": f"Bearer {api.token}"})
    assert t.json()["reached"] == {}
    done = await api.client.post(f"/r/{token_of(link)}/acknowledge")
    assert done.status_code == 200
    assert "已记录" in done.text
    t = await api.client.get("/api/escalation/A1", headers={"Authorization": f"Bearer {api.token}"})
    assert t.status_code == 200
    assert t.json()["reached"] == {"acknowledged": 14_000}
    assert t.json()["engaged"]["fire_station"]["progress"] == "acknowledged"


async def test_app_answers_json_and_decline_passes_on(api: Api) -> None:
    await api.rig.service.start(fire(roster=api.rig.roster))
    api.rig.clock.advance(120)
    await api.rig.service.run_due()  # unverified: volunteers paged
    state = await api.rig.service.get("A1")
    assert state is not None
    vols = state.engagement("volunteers_extinguisher")
    assert vols is not None
    first = vols.contacts[0]
    r = await api.client.post(f"/api/responses/{token_of(api.links.link('A1', 1, first))}", json={"response": "decline"})
    assert r.status_code == 200, r.text
    after = await api.rig.service.get("A1")
    assert after is not None
    e = after.engagement("volunteers_extinguisher")
    assert e is not None
    assert first.id not in [c.id for c in e.contacts]
    assert len(e.contacts) == 2


async def test_expired_or_forged_links_are_refused(api: Api) -> None:
    await api.rig.service.start(fire(roster=api.rig.roster))
    link = api.links.link("A1", 1, Contact("c01-g1-w1", "杨敏"))
    api.rig.clock.advance(3601)
    expired = await api.client.post(f"/api/responses/{token_of(link)}", json={"response": "acknowledge"})
    assert expired.status_code == 401
    assert "新的链接" in expired.json()["detail"]  # Chinese unless Accept-Language asks for English (issue 22)
    forged = token_of(api.links.link("A1", 1, Contact("c01-g1-w1", "杨敏")))[:-2] + "xx"
    assert (await api.client.post(f"/api/responses/{forged}", json={"response": "acknowledge"})).status_code == 401
    # a console session is not an answer link, and an answer link is not a login
    assert (await api.client.post(f"/api/responses/{api.token}", json={"response": "acknowledge"})).status_code == 401
    fresh = token_of(api.links.link("A1", 1, Contact("c01-g1-w1", "杨敏")))
    assert (await api.client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})).status_code == 401


async def test_closing_is_not_a_responder_answer(api: Api) -> None:
    await api.rig.service.start(fire(roster=api.rig.roster))
    link = api.links.link("A1", 1, Contact("c01-g1-w1", "杨敏"))
    r = await api.client.post(f"/api/responses/{token_of(link)}", json={"response": "false_alarm"})
    assert r.status_code == 422


async def test_misses_per_rung_are_served(api: Api) -> None:
    await api.rig.service.start(fire(roster=api.rig.roster))
    api.rig.clock.advance(60)
    await api.rig.service.run_due()
    r = await api.client.get("/api/escalation/misses", headers={"Authorization": f"Bearer {api.token}"})
    assert r.status_code == 200
    assert r.json() == {"drill": False, "misses": {"grid_worker": 1, "fire_station": 1}}
    assert (await api.client.get("/api/escalation/misses")).status_code == 401
