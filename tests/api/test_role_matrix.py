"""Who may call what: every route of the API against every role, no login, a forged login and an expired one, on the
real alarm service, escalation service and time-series store; and every place-keyed route against a user of an
allowed role whose territory does not hold the place.

How this works: `EXPECTED` is the authorisation table written out by hand from what each role is for (docs/api.md,
"Who may call what", shows the same table and a test keeps the two equal). It is deliberately not derived from
`ROLE_CAPABILITIES`: the point is to catch that table, or a route's dependency, drifting from what people expect.
A test checks that `EXPECTED` names exactly the app's routes, so a new endpoint without a row fails the suite.

Each (route, caller) pair is its own test. `REQUESTS` builds a valid request for every route (a real alarm, building
or device inside the caller's territory, a valid body), so a refusal can only come from authorisation. An allowed
caller must get the route's success status and its effect must show (the alarm moved, the user exists...); a refused
one gets 403 naming the roles that may (the same roles as the table) or 401 saying to log in, and the effect must
not show. Callers that act get a fresh alarm of their own; refused and outside callers all aim at one sentinel
alarm, which must therefore never change.

Territory (docs/api.md): an alarm, building or device outside the caller's territory answers 404 exactly like an id
that does not exist; lists, the map, device health and the live feed leave it out. The home place is building
c01-b01, inside every login of the rig; each role has an outsider login: the other grid's worker (gw2), the next
building's leader (same grid), and for the community-scoped roles a login of community c02, which the sample
site does not hold (it has one community), so none of c01 is theirs.

One shared rig per module (building one per test would cost ~0.3 s for each of the ~400 tests). The SSE stream
is read over a real socket (uvicorn), like tests/api/test_feed.py, up to its `hello` event only.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from openpyxl import load_workbook
from pydantic import SecretStr
from starlette.routing import Mount

from alerting.lifecycle import Move
from backend.alarms.service import AlarmService
from backend.api.app import create_app
from backend.api.auth import Territory
from backend.api.console_collab import collab_of
from backend.api.console_records import ConsoleRecords, console_acts
from backend.api.console_workorders import service_of
from backend.api.deps import ApiDeps
from backend.api.responses import OneTapLinks
from backend.api.tokens import TokenSigner
from backend.duty import DutyService, OverrideRequest
from backend.feed import LiveFeed
from backend.notify.settings import NotifySettings
from backend.notify.shortlinks import ShortLinks
from backend.responder import COOKIE, ResponderSessions
from backend.sites import SiteDirectory
from backend.sites.model import Device
from backend.sites.roster import OverrideKind
from backend.store.db import make_engine, sqlite_url
from backend.store.timeseries import SqliteTimeSeries, TagDirectory
from backend.store.users import UserRole, UserStore
from broker.kinds import DeviceKind, EventKind
from tests.api.conftest import PASSWORD, PEOPLE, ApiRig
from tests.conftest import REPO
from tests.escalation.helpers import Rig, fire, make_rig
from tests.waiting import until
from tests.workorders.images import png

# -- the expected table (hand-written) ------------------------------------------------------------------------------


class Access(StrEnum):
    PUBLIC = "public"  # no login; an Authorization header, good or bad, is ignored
    LOGIN = "login"  # a bearer session (or machine API token); the listed roles may, other roles get 403, no/bad login 401
    LINK = "one-tap link"  # the signed answer link in the path is the credential; an Authorization header is ignored
    SECRET = "secret path"  # an SMS short-link code or a provider's receipt secret in the path is the credential (issue 18)
    SESSION = "responder session"  # the phone view's cookie, set by opening a one-tap link (issue 18); an Authorization header is ignored


class Outside(StrEnum):
    NONE = "—"  # not about a place
    NOT_FOUND = "404"  # keyed by an alarm, building or device: outside the territory it answers 404, like an unknown id
    FILTERED = "filtered"  # a list: only what lies in the caller's territory
    SITE_WIDE = "site-wide"  # aggregate counts over the whole site, the same for every allowed caller


ROLES: Final = ("admin", "duty_officer", "grid_worker", "building_leader", "micro_fire_station", "volunteer")
ADMIN: Final = frozenset({"admin"})
OFFICE: Final = frozenset({"admin", "duty_officer"})  # silence devices
CLOSERS: Final = OFFICE | {"grid_worker"}  # dispatch and close
FIELD: Final = CLOSERS | {"building_leader", "micro_fire_station"}  # acknowledge, verify, device health
EVERYONE: Final = FIELD | {"volunteer"}

PUBLIC, LOGIN, LINK = Access.PUBLIC, Access.LOGIN, Access.LINK
NO, NOT_FOUND, FILTERED, SITE_WIDE = Outside.NONE, Outside.NOT_FOUND, Outside.FILTERED, Outside.SITE_WIDE

# (method, path template) -> (access, roles allowed, outside the territory, status of success)
EXPECTED: Final[dict[tuple[str, str], tuple[Access, frozenset[str], Outside, int]]] = {
    ("GET", "/"): (PUBLIC, EVERYONE, NO, 200),  # the console's page; it logs in itself
    ("GET", "/api/health"): (PUBLIC, EVERYONE, NO, 200),
    ("POST", "/api/login"): (PUBLIC, EVERYONE, NO, 200),
    ("GET", "/api/me"): (LOGIN, EVERYONE, NO, 200),
    ("GET", "/api/ingest/stats"): (LOGIN, OFFICE, SITE_WIDE, 200),  # the system's health, site-wide: the command room only
    ("GET", "/api/alarms"): (LOGIN, EVERYONE, FILTERED, 200),
    ("GET", "/api/alarms/{alarm_id}"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("POST", "/api/alarms/{alarm_id}/acknowledge"): (LOGIN, FIELD, NOT_FOUND, 200),
    ("POST", "/api/alarms/{alarm_id}/verify"): (LOGIN, FIELD, NOT_FOUND, 200),
    ("POST", "/api/alarms/{alarm_id}/dispatch"): (LOGIN, CLOSERS, NOT_FOUND, 200),
    ("POST", "/api/alarms/{alarm_id}/close"): (LOGIN, CLOSERS, NOT_FOUND, 200),
    ("GET", "/api/alarms/{alarm_id}/collab"): (LOGIN, EVERYONE, NOT_FOUND, 200),  # working an alarm together (issue 17)
    ("POST", "/api/alarms/{alarm_id}/assign"): (LOGIN, CLOSERS, NOT_FOUND, 200),  # assigning is dispatching
    ("POST", "/api/alarms/{alarm_id}/comments"): (LOGIN, FIELD, NOT_FOUND, 201),  # the field writes the record, volunteers read it
    ("GET", "/api/alarms/{alarm_id}/photos/{photo_id}"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("POST", "/api/alarms/{alarm_id}/archive"): (LOGIN, CLOSERS, NOT_FOUND, 200),  # a closed or false alarm (tests/collab)
    ("POST", "/api/devices/{device_id}/silence"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("GET", "/api/maintenance"): (LOGIN, EVERYONE, FILTERED, 200),  # maintenance windows (issue 15)
    ("GET", "/api/maintenance/{window_id}"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("POST", "/api/buildings/{building_id}/maintenance"): (LOGIN, OFFICE, NOT_FOUND, 201),
    ("POST", "/api/maintenance/{window_id}/extend"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("POST", "/api/maintenance/{window_id}/end"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("GET", "/api/workorders"): (LOGIN, FIELD, FILTERED, 200),  # hazard work orders (issue 17): the field reads and works them
    ("POST", "/api/workorders"): (LOGIN, CLOSERS, NOT_FOUND, 201),  # opening one is dispatching
    ("GET", "/api/workorders/{order_id}"): (LOGIN, FIELD, NOT_FOUND, 200),
    ("POST", "/api/workorders/{order_id}/moves"): (LOGIN, FIELD, NOT_FOUND, 200),  # the matrix sends `start`; assign/close need more (tests/workorders)
    ("POST", "/api/workorders/{order_id}/photos"): (LOGIN, FIELD, NOT_FOUND, 201),
    ("GET", "/api/workorders/{order_id}/photos/{photo_id}"): (LOGIN, FIELD, NOT_FOUND, 200),
    ("GET", "/api/duty/now"): (LOGIN, EVERYONE, NO, 200),  # duty (issue 17): who is on duty now, GB 25506's two per shift
    ("GET", "/api/duty/roster"): (LOGIN, EVERYONE, FILTERED, 200),  # who holds each rung's seat now
    ("GET", "/api/duty/roster/overrides"): (LOGIN, EVERYONE, NO, 200),
    ("POST", "/api/duty/roster/overrides"): (LOGIN, CLOSERS, NO, 201),  # changing who goes is dispatching; the body names the people
    ("POST", "/api/duty/roster/overrides/{override_id}/cancel"): (LOGIN, CLOSERS, NOT_FOUND, 200),
    ("POST", "/api/duty/shifts/start"): (LOGIN, OFFICE, NO, 201),  # keeping watch in the command room
    ("POST", "/api/duty/shifts/end"): (LOGIN, OFFICE, NO, 200),
    ("GET", "/api/duty/handover/draft"): (LOGIN, OFFICE, NO, 200),
    ("POST", "/api/duty/handovers"): (LOGIN, OFFICE, NO, 201),
    ("GET", "/api/duty/handovers"): (LOGIN, OFFICE, NO, 200),
    ("GET", "/api/duty/handovers/{handover_id}"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("POST", "/api/duty/handovers/{handover_id}/accept"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("GET", "/api/duty/audit"): (LOGIN, OFFICE, NO, 200),
    ("POST", "/api/console/mute"): (LOGIN, EVERYONE, NO, 200),  # anyone whose console sounds may mute it for a while; audited
    ("GET", "/api/site/map"): (LOGIN, EVERYONE, FILTERED, 200),
    ("GET", "/api/buildings/{building_id}"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/health/devices"): (LOGIN, FIELD, FILTERED, 200),
    ("GET", "/api/admin/users"): (LOGIN, ADMIN, NO, 200),
    ("POST", "/api/admin/users"): (LOGIN, ADMIN, NO, 201),
    ("GET", "/api/admin/tokens"): (LOGIN, ADMIN, NO, 200),
    ("POST", "/api/admin/tokens"): (LOGIN, ADMIN, NO, 201),
    ("DELETE", "/api/admin/tokens/{token_id}"): (LOGIN, ADMIN, NO, 200),
    ("GET", "/api/admin/login-audit"): (LOGIN, ADMIN, NO, 200),
    ("GET", "/api/feed"): (LOGIN, EVERYONE, FILTERED, 200),
    ("GET", "/api/feed/events"): (LOGIN, EVERYONE, FILTERED, 200),
    ("GET", "/api/devices/{device_id}/latest"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/devices/{device_id}/series"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/buildings/{building_id}/readings"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/buildings/{building_id}/latest"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/escalation/misses"): (LOGIN, OFFICE, SITE_WIDE, 200),  # site-wide counts: the command room only
    ("GET", "/api/escalation/{alarm_id}"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/history"): (LOGIN, EVERYONE, FILTERED, 200),  # history (issue 17): every alarm kept, as the board shows alarms
    ("GET", "/api/history.csv"): (LOGIN, EVERYONE, FILTERED, 200),
    ("GET", "/api/history.xlsx"): (LOGIN, EVERYONE, FILTERED, 200),
    ("GET", "/api/history/{alarm_id}/record"): (LOGIN, EVERYONE, NOT_FOUND, 200),  # the printable 处置记录单
    ("GET", "/api/history/{alarm_id}/record.xlsx"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("GET", "/api/reports/communities"): (LOGIN, OFFICE, FILTERED, 200),  # the street office's monthly report: the command room
    ("GET", "/api/reports/communities/{community_id}/monthly"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("GET", "/api/reports/communities/{community_id}/monthly.xlsx"): (LOGIN, OFFICE, NOT_FOUND, 200),
    ("GET", "/r/{token}"): (LINK, EVERYONE, NO, 200),
    ("POST", "/r/{token}/{response}"): (LINK, EVERYONE, NO, 200),
    ("POST", "/api/responses/{token}"): (LINK, EVERYONE, NO, 200),
    ("GET", "/s/{code}"): (Access.SECRET, EVERYONE, NO, 302),  # issue 18: the short link of an SMS, 302 to its one-tap link
    ("POST", "/api/notify/voice-report/{secret}"): (Access.SECRET, EVERYONE, NO, 200),  # issue 18: the voice platform's call reports
    ("POST", "/api/notify/sms-report/{secret}"): (Access.SECRET, EVERYONE, NO, 200),  # issue 18: the SMS providers' status reports
    ("GET", "/m/"): (Access.SESSION, EVERYONE, NO, 200),  # issue 18: the responder's phone view (its person's own tasks only: tests/responder)
    ("GET", "/m/api/tasks"): (Access.SESSION, EVERYONE, NO, 200),
    ("POST", "/m/api/alarms/{alarm_id}/moves"): (Access.SESSION, EVERYONE, NO, 200),
    ("POST", "/m/api/workorders/{order_id}/moves"): (Access.SESSION, EVERYONE, NO, 200),
    ("GET", "/api/callbacks"): (LOGIN, EVERYONE, FILTERED, 200),  # issue 18: SOS call-backs (回访) waiting for their outcome
    ("GET", "/api/alarms/{alarm_id}/callback"): (LOGIN, EVERYONE, NOT_FOUND, 200),
    ("POST", "/api/alarms/{alarm_id}/callback"): (LOGIN, FIELD, NOT_FOUND, 200),  # the matrix sends no_answer; closing outcomes need close too
}
# Deliberately public, not in the table: the OpenAPI document and its viewers, the console's static files, and the
# operators' probes and metrics (docs/operations.md; the reverse proxy keeps /metrics, /livez and /readyz inside).
PUBLIC_DOCS: Final = frozenset({
    ("GET", "/api/openapi.json"), ("HEAD", "/api/openapi.json"), ("GET", "/api/docs"), ("HEAD", "/api/docs"),
    ("GET", "/docs/oauth2-redirect"), ("HEAD", "/docs/oauth2-redirect"), ("MOUNT", "/static"),
    ("GET", "/api/redoc"), ("HEAD", "/api/redoc"), ("MOUNT", "/api/docs-assets"), ("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics"),
})

# -- who calls --------------------------------------------------------------------------------------------------------

BAD_CALLERS: Final = ("no_token", "forged_token", "expired_token")
CALLERS: Final = (*ROLES, *BAD_CALLERS)
BAD_LINKS: Final = ("forged_token", "expired_token")
LOGIN_OF: Final = {"admin": "admin", **{role: name for name, (role, _scope) in PEOPLE.items() if name in ("duty", "gw1", "leader", "mfs", "vol")}}
HOME: Final = "c01-b01"  # inside every login of LOGIN_OF: gw1's grid c01-g1, the leader's building, everyone else's community
NEXT_DOOR: Final = "c01-b02"  # same grid as HOME
# login -> (role, scope): one per role, each of whose territory leaves HOME out
OUTSIDERS: Final = {"admin_c02": ("admin", "c02"), "duty_c02": ("duty_officer", "c02"), "gw2": ("grid_worker", "c01-g2"),
                    "leader_b02": ("building_leader", NEXT_DOOR), "mfs_c02": ("micro_fire_station", "c02"), "vol_c02": ("volunteer", "c02")}
OUTSIDER_OF: Final = {role: name for name, (role, _scope) in OUTSIDERS.items()}
RESPONDER: Final = "c01-mfs-head"  # the micro fire station head, paged by every fire ladder: answers one-tap links


# -- the rig ----------------------------------------------------------------------------------------------------------


@dataclass
class Matrix:
    api: ApiRig
    ladder: Rig
    app: FastAPI
    base_url: str  # uvicorn serving the same app, for the SSE stream
    sentinel: str = ""  # an open alarm in HOME with a ladder; refused and outside callers aim at it, so it never changes
    sos_sentinel: str = ""  # an SOS press in HOME whose call-back stays open (issue 18): the same, for the call-back routes
    unused: dict[str, Iterator[Device]] = field(default_factory=dict)  # building -> electrical devices without an alarm yet
    forger: TokenSigner = field(default_factory=lambda: TokenSigner(b"not the server's key, 32 bytes!!"))
    names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def signer(self) -> TokenSigner:
        return self.api.deps.signer

    def now_s(self) -> float:
        return self.api.clock.now_ms() / 1000

    def headers(self, caller: str) -> dict[str, str]:
        """The Authorization header of a role's login (or of an outsider login), or of a bad one."""
        if caller == "no_token":
            return {}
        if caller == "forged_token":  # claims to be the admin, signed with another key
            return {"Authorization": f"Bearer {self.forger.sign({'sub': 'admin'}, self.now_s(), 3600)}"}
        if caller == "expired_token":  # a real duty officer's session from two shifts ago
            return {"Authorization": f"Bearer {self.signer.sign({'sub': 'duty'}, self.now_s() - 24 * 3600, 12 * 3600)}"}
        return self.api.auth(LOGIN_OF.get(caller, caller))

    def link(self, alarm_id: str, caller: str) -> str:
        """An answer link for RESPONDER: valid, or forged / expired for those callers."""
        if caller == "forged_token":
            return self.forger.sign({"k": "respond", "sub": f"respond:{RESPONDER}", "a": alarm_id, "c": RESPONDER}, self.now_s(), 3600)
        if caller == "expired_token":
            return OneTapLinks(self.signer, self.api.clock, ttl_s=-60).token(alarm_id, RESPONDER)
        return OneTapLinks(self.signer, self.api.clock).token(alarm_id, RESPONDER)

    def session(self, caller: str) -> str:
        """RESPONDER's phone-view session (the cookie a one-tap link sets): valid, or forged / expired for those callers."""
        if caller == "forged_token":
            return ResponderSessions(self.forger, self.api.clock).issue(RESPONDER)
        return ResponderSessions(self.signer, self.api.clock, ttl_s=-60 if caller == "expired_token" else 3600).issue(RESPONDER)

    async def fresh_alarm(self, building: str = HOME) -> str:
        """A new open alarm in a building (an electrical alarm: each device its own alarm, no composite fire)."""
        if building not in self.unused:
            self.unused[building] = iter([d for d in self.api.sites.devices_by_building[building] if d.kind is DeviceKind.ELECTRICAL])
        device = next(self.unused[building], None)
        assert device is not None, f"every electrical device of {building} already has an alarm: use another building"
        return await self.api.smoke(device, event=EventKind.ELECTRICAL_ALARM)

    async def with_ladder(self, alarm_id: str) -> str:
        """Start the escalation ladder of a fire at the alarm's building."""
        a = self.api.service.store.get(alarm_id)
        assert a is not None
        assert a.place.building is not None
        await self.ladder.service.start(fire(alarm_id, a.place.building, roster=self.ladder.roster))
        return alarm_id

    def device_of(self, alarm_id: str) -> str:
        a = self.api.service.store.get(alarm_id)
        assert a is not None
        assert a.place.device is not None
        return a.place.device

    def alarm_effect(self, alarm_id: str) -> Effect:
        async def seen() -> object:
            a = self.api.service.store.get(alarm_id)
            assert a is not None
            acts = ConsoleRecords(self.api.service.store.engine).for_alarm(alarm_id)
            return a.state.value, len(self.api.service.store.audit(alarm_id)), len(acts)

        return seen


Effect = Callable[[], Awaitable[object]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory, sample_site: SiteDirectory) -> AsyncIterator[Matrix]:
    tmp = tmp_path_factory.mktemp("matrix")
    ladder = make_rig(tmp, sample_site)  # the escalation service on SQLite; its virtual clock is the API's too
    clock = ladder.clock
    engine = make_engine(sqlite_url(tmp / "alarms.db"))
    service = AlarmService.for_sites(engine, sample_site, clock)
    await service.start()
    users = UserStore(engine)
    users.add("admin", None, "admin", "管理员")
    for name, (role, scope) in {**PEOPLE, **OUTSIDERS}.items():
        users.add(name, PASSWORD if name == "duty" else None, role, name, scope)
    signer = TokenSigner(b"k" * 32)
    series = SqliteTimeSeries(tmp / "series.sqlite", TagDirectory(sample_site))
    deps = ApiDeps(alarms=service.store, users=users, signer=signer, clock=clock, ingest_stats=dict, sites=sample_site, alarm_service=service,
                   escalation=ladder.service, stream=service.stream, timeseries=series,
                   extras={"notify": NotifySettings(voice_report_token=SecretStr(VOICE_REPORT_TOKEN))})
    async with LiveFeed(clock, stream=service.stream, store=service.store, sites=sample_site) as feed:
        deps = ApiDeps(**{**deps.__dict__, "feed": feed})
        app = create_app(deps)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(), name="matrix-http")
        try:
            await until(lambda: server.started, 10, "uvicorn to start")
            base_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
                tokens = {name: signer.sign({"sub": name}, clock.now_ms() / 1000, 10 * 24 * 3600) for name in ["admin", *PEOPLE, *OUTSIDERS]}
                m = Matrix(ApiRig(client, service, clock, sample_site, users, feed, deps, tokens), ladder, app, base_url)
                m.sentinel = await m.with_ladder(await m.fresh_alarm())
                feed.wake()
                await until(lambda: any(e.building_id == HOME for e in feed.after(0) or []), 10, "the sentinel alarm in the live feed")
                yield m
        finally:
            server.should_exit = True
            await serving
    series.close()
    engine.dispose()


# -- valid requests for every route ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    url: str  # `{link}` stands for an answer link, filled in per caller
    body: dict[str, Any] | list[Any] | None = None  # a JSON body (a list: the providers post their reports as arrays)
    key: str | None = None  # the id in the path that places the request (alarm, device or building)
    effect: Effect | None = None  # what the request changes: must change when allowed, must not when refused
    link_alarm: str | None = None  # one-tap routes: the alarm the link answers
    files: dict[str, Any] | None = None  # a multipart upload (work-order photos)
    form: dict[str, Any] | None = None  # a form body (the phone view's moves)
    session: bool = False  # the phone view: RESPONDER's session cookie (valid, or forged / expired for those callers)


Builder = Callable[[Matrix, bool], Awaitable[Call]]  # (rig, acting: the caller should succeed, so give it its own target)


def at(template: str, body: dict[str, Any] | None = None, *, acts_on_alarm: bool = False) -> Builder:
    """A request at HOME: `{alarm}` (the sentinel, or a fresh alarm for an acting caller when the request changes
    it), `{device}` (that alarm's device), `{building}` (HOME), `{cursor}` (the start of the feed's ring)."""

    async def build(m: Matrix, acting: bool) -> Call:
        alarm = await m.fresh_alarm() if acting and acts_on_alarm else m.sentinel
        values = {"alarm": alarm, "device": m.device_of(alarm), "building": HOME, "cursor": f"{m.api.feed.epoch}-0"}
        key = next((values[k] for k in ("alarm", "device", "building") if f"{{{k}}}" in template), None)
        return Call(template.format(**values), body, key, m.alarm_effect(alarm) if acts_on_alarm else None)

    return build


async def new_user(m: Matrix, _acting: bool) -> Call:
    name = f"matrix{next(m.names)}"

    async def exists() -> object:
        return m.api.users.get(name) is not None

    return Call("/api/admin/users", {"username": name, "role": "volunteer", "display_name": "新志愿者"}, effect=exists)


async def new_token(m: Matrix, _acting: bool) -> Call:
    async def count() -> object:
        return len(m.api.users.tokens())

    return Call("/api/admin/tokens", {"username": "vol", "name": "matrix bridge", "ttl_days": 1}, effect=count)


async def revoke_token(m: Matrix, _acting: bool) -> Call:
    token, _secret = m.api.users.issue_token("vol", "to revoke", m.api.clock.now_ms())

    async def revoked() -> object:
        return next(t.revoked for t in m.api.users.tokens() if t.id == token.id)

    return Call(f"/api/admin/tokens/{token.id}", effect=revoked)


def answer(template: str, body: dict[str, Any] | None = None) -> Builder:
    """A one-tap answer as RESPONDER, on a fresh alarm with a ladder of its own: the answer is the responder's own move,
    asked of the alarm service (the one writer of alarm state), so it shows in the alarm's state and audit log."""

    async def build(m: Matrix, _acting: bool) -> Call:
        alarm = await m.with_ladder(await m.fresh_alarm(NEXT_DOOR))  # links need no territory: spare HOME's devices
        return Call(template, body, effect=m.alarm_effect(alarm), link_alarm=alarm)

    return build


async def mute_sound(m: Matrix, _acting: bool) -> Call:
    """Mute the console's sound: each mute is a console act on record (who, when)."""

    async def recorded() -> object:
        with m.api.service.store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(console_acts).where(console_acts.c.act == "mute_sound")).scalar_one()

    return Call("/api/console/mute", {"minutes": 5}, effect=recorded)


def home_camera(m: Matrix) -> str:
    """A device of HOME that no alarm of the matrix uses: windows on it change no other route's target."""
    return next(d.id for d in m.api.sites.devices_by_building[HOME] if d.kind is DeviceKind.CAMERA)


_SHARED_WINDOW: dict[int, str] = {}  # rig -> the window refused and outside callers aim at (it must never change)


async def home_window(m: Matrix, acting: bool) -> str:
    """A maintenance window in force on HOME's camera: a fresh one for an acting caller, else the shared one."""
    if not acting and id(m) in _SHARED_WINDOW:
        return _SHARED_WINDOW[id(m)]
    w = await m.api.service.maintenance.create(building_id=HOME, scope="device", device_id=home_camera(m), author="admin", reason="matrix",
                                               ends_ms=m.api.clock.now_ms() + 5 * 24 * 3600_000)
    if not acting:
        _SHARED_WINDOW[id(m)] = w.id
    return w.id


def on_window(action: str, body: dict[str, Any] | None = None) -> Builder:
    """GET a window, or extend / end it (`action`), on HOME's camera."""

    async def build(m: Matrix, acting: bool) -> Call:
        wid = await home_window(m, acting and action != "")

        async def changed() -> object:
            w = m.api.service.maintenance.get(wid)
            assert w is not None
            return w.ends_ms, w.ended_ms

        return Call(f"/api/maintenance/{wid}{action}", body, key=wid, effect=changed if action else None)

    return build


async def open_window(m: Matrix, _acting: bool) -> Call:
    async def count() -> object:
        return len(m.api.service.maintenance.records())

    return Call(f"/api/buildings/{HOME}/maintenance", {"scope": "device", "device_id": home_camera(m), "minutes": 60, "reason": "matrix"},
                key=HOME, effect=count)


async def list_windows(m: Matrix, _acting: bool) -> Call:
    await home_window(m, False)  # at least one window in HOME to be left out or shown
    return Call("/api/maintenance")


_SHARED_PHOTO: dict[int, str] = {}  # rig -> a comment photo on the sentinel alarm


def on_collab(action: str) -> Builder:
    """Working an alarm together (issue 17): read it, assign, comment with a photo, read that photo, archive. Acting
    callers assign and archive a fresh alarm of their own (archive: closed as false first); they comment on the
    sentinel (a comment never moves an alarm); refused and outside callers aim at the sentinel."""

    async def build(m: Matrix, acting: bool) -> Call:
        collab = collab_of(m.api.deps)
        if action == "/photos":
            if id(m) not in _SHARED_PHOTO:
                _SHARED_PHOTO[id(m)] = (await collab.comment(m.sentinel, "admin", "matrix", [png()])).photos[0]["id"]
            return Call(f"/api/alarms/{m.sentinel}/photos/{_SHARED_PHOTO[id(m)]}", key=m.sentinel)
        alarm = await m.fresh_alarm() if acting and action in ("/assign", "/archive") else m.sentinel
        if action == "/archive" and acting:
            await m.api.service.move(alarm, Move.MARK_FALSE, "admin", note="matrix")

        async def seen() -> object:
            a = m.api.service.store.get(alarm)
            assert a is not None
            return a.state.value, len(collab.assignments(alarm)), len(collab.comments(alarm))

        body = {"/assign": {"assignee_id": "c01-g1-w1", "note": "matrix"}, "/archive": {"note": "matrix"}}.get(action)
        files = {"photos": ("scene.png", png(rgb=(next(m.names) % 256, 30, 30)), "image/png")} if action == "/comments" else None
        return Call(f"/api/alarms/{alarm}{action}", body, key=alarm, effect=seen if action else None, files=files,
                    form={"text": "现场已处置"} if action == "/comments" else None)

    return build


_SHARED_ORDER: dict[int, str] = {}  # rig -> the assigned work order (with a photo) refused and outside callers aim at


async def home_order(m: Matrix, acting: bool) -> str:
    """An assigned work order on HOME: a fresh one for an acting caller, else the shared one (which has a photo)."""
    if not acting and id(m) in _SHARED_ORDER:
        return _SHARED_ORDER[id(m)]
    svc = service_of(m.api.deps)
    o = await svc.create("admin", description="matrix", building_id=HOME, assignee_id="c01-g1-w1")
    if not acting:
        await svc.add_photo(o.id, "admin", png(), "matrix")
        _SHARED_ORDER[id(m)] = o.id
    return o.id


def on_order(action: str, body: dict[str, Any] | None = None, *, photo: bool = False) -> Builder:
    """GET a work order on HOME (or its photo), or act on it: a move (`/moves`) or a photo upload (`/photos`)."""

    async def build(m: Matrix, acting: bool) -> Call:
        oid = await home_order(m, acting and action != "")
        svc = service_of(m.api.deps)

        async def changed() -> object:
            o = svc.get(oid)
            assert o is not None
            return o.state, len(svc.photo_rows(oid))

        url = f"/api/workorders/{oid}{action}"
        if photo:
            url += f"/photos/{svc.photo_rows(oid)[0]['id']}"
        files = {"file": ("after.png", png(rgb=(next(m.names) % 256, 90, 90)), "image/png")} if action == "/photos" else None
        return Call(url, body, key=oid, effect=changed if action else None, files=files)

    return build


async def open_order(m: Matrix, _acting: bool) -> Call:
    async def count() -> object:
        return len(service_of(m.api.deps).records())

    return Call("/api/workorders", {"building_id": HOME, "description": "楼道电线老化"}, key=HOME, effect=count)


async def list_orders(m: Matrix, _acting: bool) -> Call:
    await home_order(m, False)  # at least one order in HOME to be left out or shown
    return Call("/api/workorders")


def duty_of(m: Matrix) -> DutyService:
    svc = m.app.state.duty
    assert isinstance(svc, DutyService)
    return svc


_SHARED_DUTY: dict[tuple[int, str], str] = {}  # (rig, what) -> the override / handover refused and outside callers aim at


async def home_override(m: Matrix, acting: bool) -> str:
    """A sick leave of HOME's grid worker: a fresh one for an acting caller, else the shared one."""
    if not acting and (id(m), "override") in _SHARED_DUTY:
        return _SHARED_DUTY[id(m), "override"]
    now = m.api.clock.now_ms()
    req = OverrideRequest(OverrideKind.SICK, now, now + 3600_000, "matrix", responder="c01-g1-w1")
    rec = await asyncio.to_thread(duty_of(m).add_override, req, "admin", Territory("all", None, None, None))
    if not acting:
        _SHARED_DUTY[id(m), "override"] = rec.override.id
    return rec.override.id


async def home_handover(m: Matrix, acting: bool) -> str:
    """A handover of c01 written by an officer none of the matrix's logins is: fresh for an acting caller, else shared."""
    if not acting and (id(m), "handover") in _SHARED_DUTY:
        return _SHARED_DUTY[id(m), "handover"]
    duty = duty_of(m)
    snap = await duty.snapshot("c01", None, [], None)
    rec = await asyncio.to_thread(duty.write_handover, "c01", "night-officer", "matrix", snap)
    if not acting:
        _SHARED_DUTY[id(m), "handover"] = rec.id
    return rec.id


async def new_override(m: Matrix, _acting: bool) -> Call:
    async def count() -> object:
        return len(duty_of(m).store.overrides())

    return Call("/api/duty/roster/overrides", {"kind": "leave", "responder": "c01-g1-w1", "minutes": 60, "reason": "matrix"}, effect=count)


async def cancel_override(m: Matrix, acting: bool) -> Call:
    oid = await home_override(m, acting)

    async def cancelled() -> object:
        rec = duty_of(m).store.get_override(oid)
        assert rec is not None
        return rec.cancelled_ms

    return Call(f"/api/duty/roster/overrides/{oid}/cancel", {"reason": "matrix"}, key=oid, effect=cancelled)


def shift(action: str) -> Builder:
    """Start a shift (the office's logins first end theirs) or end one (they first start one)."""

    async def build(m: Matrix, _acting: bool) -> Call:
        duty = duty_of(m)
        for name in ("admin", "duty"):
            on = duty.store.open_shift(name) is not None
            if action == "start" and on:
                await asyncio.to_thread(duty.end_shift, name, name)
            if action == "end" and not on:
                await asyncio.to_thread(duty.start_shift, name, name, "c01")

        async def open_shifts() -> object:
            return sorted(s.username for s in duty.store.open_shifts())

        return Call(f"/api/duty/shifts/{action}", {} if action == "start" else None, effect=open_shifts)

    return build


async def new_handover(m: Matrix, _acting: bool) -> Call:
    async def count() -> object:
        return len(duty_of(m).store.handovers())

    return Call("/api/duty/handovers", {"notes": "matrix"}, effect=count)


def on_handover(action: str) -> Builder:
    async def build(m: Matrix, acting: bool) -> Call:
        hid = await home_handover(m, acting and action != "")

        async def accepted() -> object:
            h = duty_of(m).store.get_handover(hid)
            assert h is not None
            return h.accepted_by

        return Call(f"/api/duty/handovers/{hid}{action}", {"objections": ""} if action else None, key=hid, effect=accepted if action else None)

    return build


def community_report(suffix: str) -> Builder:
    """HOME's community's monthly report (this month, the default)."""

    async def build(_m: Matrix, _acting: bool) -> Call:
        return Call(f"/api/reports/communities/c01/monthly{suffix}", key="c01")

    return build


EXPORTS: Final = frozenset({("GET", "/api/history.csv"), ("GET", "/api/history.xlsx")})


def export_shows_home(route: tuple[str, str], got: Answer) -> bool:
    """Does this export (CSV or XLSX, opened as a person would) hold an alarm of HOME (its building column, 楼栋)?"""
    if route == ("GET", "/api/history.csv"):
        table = list(csv.reader(io.StringIO(got.text.lstrip("\ufeff"))))
    else:
        sheet = load_workbook(io.BytesIO(got.content), read_only=True).worksheets[0]
        table = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    column = table[0].index("楼栋")
    return any(row[column] == "1号楼" for row in table[1:])  # HOME, c01-b01


VOICE_REPORT_TOKEN: Final = "matrix-voice-report-secret-0123"


async def short_link(m: Matrix, acting: bool) -> Call:
    """A live short link for a caller that may; an unknown code (never issued) for the forged and expired callers."""
    if not acting:
        return Call("/s/Zm9yZ2VkLWNv")
    links = ShortLinks(m.api.deps.alarms.engine)
    code = links.shorten(f"/r/{m.link(m.sentinel, RESPONDER)}", f"matrix/{next(m.names)}", now_ms=m.api.clock.now_ms(), ttl_ms=600_000)
    return Call(f"/s/{code}")


async def voice_report(m: Matrix, acting: bool) -> Call:
    """A call report (key 2: no acknowledgement) at the receipt URL, with its secret or a wrong one."""
    secret = VOICE_REPORT_TOKEN if acting else "not-the-secret-0123456789"
    return Call(f"/api/notify/voice-report/{secret}", {"call_id": "matrix^1", "status_code": "200000", "dtmf": "2"})


async def sms_report(m: Matrix, acting: bool) -> Call:
    """An SMS status report (Alibaba's SmsReport shape, for a message nobody sent) at the receipt URL, with its secret or a wrong one."""
    secret = VOICE_REPORT_TOKEN if acting else "not-the-secret-0123456789"
    return Call(f"/api/notify/sms-report/{secret}", [{"biz_id": "matrix-unknown", "success": True, "err_code": "DELIVERED"}])


async def answer_page(m: Matrix, _acting: bool) -> Call:
    return Call("/r/{link}", link_alarm=m.sentinel)


def phone(url: str) -> Builder:
    """A read of the responder's phone view as RESPONDER."""

    async def build(_m: Matrix, _acting: bool) -> Call:
        return Call(url, session=True)

    return build


async def phone_alarm_move(m: Matrix, _acting: bool) -> Call:
    """RESPONDER's 收到 from the phone on a fresh alarm whose ladder paged them: a move of the alarm service (state, audit)."""
    alarm = await m.with_ladder(await m.fresh_alarm(NEXT_DOOR))
    return Call(f"/m/api/alarms/{alarm}/moves", effect=m.alarm_effect(alarm), form={"move": "acknowledge", "note": "在路上"}, session=True)


async def phone_order_move(m: Matrix, _acting: bool) -> Call:
    """RESPONDER's 开始整改 from the phone on a fresh work order assigned to them."""
    svc = service_of(m.api.deps)
    o = await svc.create("admin", description="matrix", building_id=NEXT_DOOR, assignee_id=RESPONDER)

    async def state() -> object:
        got = svc.get(o.id)
        assert got is not None
        return got.state

    return Call(f"/m/api/workorders/{o.id}/moves", effect=state, form={"move": "start"}, session=True)


async def home_sos(m: Matrix, acting: bool) -> str:
    """An SOS press in HOME with its call-back open (issue 18): the shared one, or a fresh one for an acting caller."""
    if m.sos_sentinel and not acting:
        return m.sos_sentinel
    key = f"sos:{HOME}"
    if key not in m.unused:
        m.unused[key] = iter([d for d in m.api.sites.devices_by_building[HOME] if d.kind is DeviceKind.SOS])
    device = next(m.unused[key], None)
    assert device is not None, f"every SOS button of {HOME} already has an alarm"
    alarm_id = await m.api.smoke(device, event=EventKind.SOS_PRESS)
    a = m.api.service.store.get(alarm_id)
    assert a is not None
    await m.ladder.service.start(fire(alarm_id, HOME, alarm_type="sos", household=a.place.household, roster=m.ladder.roster))
    if not acting:
        m.sos_sentinel = alarm_id
    return alarm_id


def on_sos(template: str, body: dict[str, Any] | None = None) -> Builder:
    """A call-back request at HOME's SOS press; a POST records an outcome, so an acting caller gets a press of its own."""

    async def build(m: Matrix, acting: bool) -> Call:
        alarm = await home_sos(m, acting and body is not None)

        async def recorded() -> object:
            state = await m.ladder.service.get(alarm)
            assert state is not None
            assert state.callback is not None
            return state.callback.outcome, len(m.ladder.store.log(alarm))

        return Call(template.format(alarm=alarm), body, alarm if "{alarm}" in template else None, recorded if body is not None else None)

    return build


REQUESTS: Final[dict[tuple[str, str], Builder]] = {
    ("GET", "/"): at("/"),
    ("GET", "/api/health"): at("/api/health"),
    ("POST", "/api/login"): at("/api/login", {"username": "duty", "password": PASSWORD}),
    ("GET", "/api/me"): at("/api/me"),
    ("GET", "/api/ingest/stats"): at("/api/ingest/stats"),
    ("GET", "/api/alarms"): at("/api/alarms"),
    ("GET", "/api/alarms/{alarm_id}"): at("/api/alarms/{alarm}"),
    ("POST", "/api/alarms/{alarm_id}/acknowledge"): at("/api/alarms/{alarm}/acknowledge", {"note": "on my way"}, acts_on_alarm=True),
    ("POST", "/api/alarms/{alarm_id}/verify"): at("/api/alarms/{alarm}/verify", {"note": "burning smell at the meter box"}, acts_on_alarm=True),
    ("POST", "/api/alarms/{alarm_id}/dispatch"): at("/api/alarms/{alarm}/dispatch", {"responder_id": "c01-b01-leader", "note": "please check"},
                                                    acts_on_alarm=True),
    ("POST", "/api/alarms/{alarm_id}/close"): at("/api/alarms/{alarm}/close", {"outcome": "false_alarm", "note": "breaker tested by the owner"},
                                                 acts_on_alarm=True),
    ("GET", "/api/alarms/{alarm_id}/collab"): on_collab(""),
    ("POST", "/api/alarms/{alarm_id}/assign"): on_collab("/assign"),
    ("POST", "/api/alarms/{alarm_id}/comments"): on_collab("/comments"),
    ("GET", "/api/alarms/{alarm_id}/photos/{photo_id}"): on_collab("/photos"),
    ("POST", "/api/alarms/{alarm_id}/archive"): on_collab("/archive"),
    ("POST", "/api/devices/{device_id}/silence"): at("/api/devices/{device}/silence", {"minutes": 60, "note": "work order 42"}, acts_on_alarm=True),
    ("POST", "/api/console/mute"): mute_sound,
    ("GET", "/api/maintenance"): list_windows,
    ("GET", "/api/maintenance/{window_id}"): on_window(""),
    ("POST", "/api/buildings/{building_id}/maintenance"): open_window,
    ("POST", "/api/maintenance/{window_id}/extend"): on_window("/extend", {"minutes": 10, "reason": "matrix"}),
    ("POST", "/api/maintenance/{window_id}/end"): on_window("/end", {"reason": "matrix"}),
    ("GET", "/api/workorders"): list_orders,
    ("POST", "/api/workorders"): open_order,
    ("GET", "/api/workorders/{order_id}"): on_order(""),
    ("POST", "/api/workorders/{order_id}/moves"): on_order("/moves", {"move": "start"}),
    ("POST", "/api/workorders/{order_id}/photos"): on_order("/photos"),
    ("GET", "/api/workorders/{order_id}/photos/{photo_id}"): on_order("", photo=True),
    ("GET", "/api/site/map"): at("/api/site/map"),
    ("GET", "/api/buildings/{building_id}"): at("/api/buildings/{building}"),
    ("GET", "/api/health/devices"): at("/api/health/devices"),
    ("GET", "/api/admin/users"): at("/api/admin/users"),
    ("POST", "/api/admin/users"): new_user,
    ("GET", "/api/admin/tokens"): at("/api/admin/tokens"),
    ("POST", "/api/admin/tokens"): new_token,
    ("DELETE", "/api/admin/tokens/{token_id}"): revoke_token,
    ("GET", "/api/admin/login-audit"): at("/api/admin/login-audit"),
    ("GET", "/api/feed"): at("/api/feed?after={cursor}"),
    ("GET", "/api/feed/events"): at("/api/feed/events?after={cursor}"),
    ("GET", "/api/devices/{device_id}/latest"): at("/api/devices/{device}/latest"),
    ("GET", "/api/devices/{device_id}/series"): at("/api/devices/{device}/series?metric=residual_current_ma"),
    ("GET", "/api/buildings/{building_id}/readings"): at("/api/buildings/{building}/readings"),
    ("GET", "/api/buildings/{building_id}/latest"): at("/api/buildings/{building}/latest"),
    ("GET", "/api/escalation/misses"): at("/api/escalation/misses"),
    ("GET", "/api/escalation/{alarm_id}"): at("/api/escalation/{alarm}"),
    ("GET", "/api/history"): at("/api/history"),
    ("GET", "/api/history.csv"): at("/api/history.csv"),
    ("GET", "/api/history.xlsx"): at("/api/history.xlsx"),
    ("GET", "/api/history/{alarm_id}/record"): at("/api/history/{alarm}/record"),
    ("GET", "/api/history/{alarm_id}/record.xlsx"): at("/api/history/{alarm}/record.xlsx"),
    ("GET", "/api/reports/communities"): at("/api/reports/communities"),
    ("GET", "/api/reports/communities/{community_id}/monthly"): community_report(""),
    ("GET", "/api/reports/communities/{community_id}/monthly.xlsx"): community_report(".xlsx"),
    ("GET", "/api/duty/now"): at("/api/duty/now"),
    ("GET", "/api/duty/roster"): at("/api/duty/roster"),
    ("GET", "/api/duty/roster/overrides"): at("/api/duty/roster/overrides"),
    ("POST", "/api/duty/roster/overrides"): new_override,
    ("POST", "/api/duty/roster/overrides/{override_id}/cancel"): cancel_override,
    ("POST", "/api/duty/shifts/start"): shift("start"),
    ("POST", "/api/duty/shifts/end"): shift("end"),
    ("GET", "/api/duty/handover/draft"): at("/api/duty/handover/draft"),
    ("POST", "/api/duty/handovers"): new_handover,
    ("GET", "/api/duty/handovers"): at("/api/duty/handovers"),
    ("GET", "/api/duty/handovers/{handover_id}"): on_handover(""),
    ("POST", "/api/duty/handovers/{handover_id}/accept"): on_handover("/accept"),
    ("GET", "/api/duty/audit"): at("/api/duty/audit"),
    ("GET", "/r/{token}"): answer_page,
    ("POST", "/r/{token}/{response}"): answer("/r/{link}/acknowledge"),
    ("POST", "/api/responses/{token}"): answer("/api/responses/{link}", {"response": "acknowledge", "note": "coming"}),
    ("GET", "/s/{code}"): short_link,
    ("POST", "/api/notify/voice-report/{secret}"): voice_report,
    ("POST", "/api/notify/sms-report/{secret}"): sms_report,
    ("GET", "/m/"): phone("/m/"),
    ("GET", "/m/api/tasks"): phone("/m/api/tasks"),
    ("POST", "/m/api/alarms/{alarm_id}/moves"): phone_alarm_move,
    ("POST", "/m/api/workorders/{order_id}/moves"): phone_order_move,
    ("GET", "/api/callbacks"): on_sos("/api/callbacks"),
    ("GET", "/api/alarms/{alarm_id}/callback"): on_sos("/api/alarms/{alarm}/callback"),
    ("POST", "/api/alarms/{alarm_id}/callback"): on_sos("/api/alarms/{alarm}/callback", {"outcome": "no_answer"}),
}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    text: str
    events: list[tuple[str, dict[str, Any]]]  # SSE: (event, data) up to `hello`, or up to `until_kind` when asked
    content: bytes = b""  # the body as sent (an XLSX export)

    def json(self) -> Any:
        return json.loads(self.text)


async def send(m: Matrix, method: str, call: Call, headers: dict[str, str], *, link_caller: str = "no_token",
               until_kind: str = "hello") -> Answer:
    url = call.url.replace("{link}", m.link(call.link_alarm, link_caller)) if call.link_alarm is not None else call.url
    if url.startswith("/api/feed?"):
        return await read_stream(m, url, headers, until_kind)
    if call.session:
        headers = {**headers, "Cookie": f"{COOKIE}={m.session(link_caller)}", "X-Shouwang-Responder": "1"}
    r = await m.api.client.request(method, url, headers=headers, json=call.body, files=call.files, data=call.form)
    return Answer(r.status_code, r.headers, r.text, [], r.content)


async def read_stream(m: Matrix, url: str, headers: dict[str, str], until_kind: str) -> Answer:
    """The SSE stream over a socket: the status line and headers, then events up to `until_kind`, with a deadline."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with httpx.AsyncClient(base_url=m.base_url, timeout=10) as http, http.stream("GET", url, headers=headers) as s:
        if s.status_code != 200:
            return Answer(s.status_code, s.headers, (await s.aread()).decode(), [])
        kind = ""
        async with asyncio.timeout(10):
            async for line in s.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    if kind == until_kind:
                        break
        return Answer(s.status_code, s.headers, "", events)


# -- the table names exactly the app's routes, and docs/api.md shows the same table ------------------------------------


def app_routes(m: Matrix) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for rc in iter_route_contexts(m.app.routes):
        if isinstance(rc.original_route, Mount):
            out.add(("MOUNT", str(rc.path)))
        else:
            out |= {(method, str(rc.path)) for method in rc.methods or ()}
    return out


@pytest.mark.asyncio(loop_scope="module")
async def test_the_table_names_every_route_of_the_app(matrix: Matrix) -> None:
    routes = app_routes(matrix)
    assert not PUBLIC_DOCS & set(EXPECTED)
    missing = routes - set(EXPECTED) - PUBLIC_DOCS
    assert not missing, f"routes without a row in EXPECTED (say who may call them): {sorted(missing)}"
    gone = (set(EXPECTED) | PUBLIC_DOCS) - routes
    assert not gone, f"rows for routes the app no longer has: {sorted(gone)}"
    assert set(REQUESTS) == set(EXPECTED)
    assert set(ROLES) == {r.value for r in UserRole}, "a new role needs its column in EXPECTED"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_openapi_document_and_the_console_files_are_public(matrix: Matrix) -> None:
    for url in ("/api/openapi.json", "/api/docs", "/docs/oauth2-redirect", "/static/console.js"):
        assert (await matrix.api.client.get(url)).status_code == 200, url


def doc_table() -> dict[tuple[str, str], tuple[Access, frozenset[str], Outside]]:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("\n## Who may call what\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    header = next(line for line in section.splitlines() if line.startswith("| route"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["route", "access", *ROLES, "outside your territory"]
    out = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        m = re.fullmatch(r"`([A-Z]+) (\S+)`", cells[0])
        assert m, f"a route cell reads `METHOD /path`: {cells[0]}"
        allowed = frozenset(role for role, cell in zip(ROLES, cells[2:8], strict=True) if cell == "✓")
        assert all(cell in ("✓", "✗") for cell in cells[2:8]), row
        out[m.group(1), m.group(2)] = (Access(cells[1]), allowed, Outside(cells[8]))
    return out


def test_the_docs_table_is_this_table() -> None:
    documented = doc_table()
    expected = {k: v[:3] for k, v in EXPECTED.items()}
    assert set(documented) == set(expected), f"docs/api.md lacks {sorted(set(expected) - set(documented))}, has extra {sorted(set(documented) - set(expected))}"
    wrong = {k: (documented[k], expected[k]) for k in expected if documented[k] != expected[k]}
    assert not wrong, f"docs/api.md 'Who may call what' differs from EXPECTED (doc, test): {wrong}"


# -- every route against every caller -----------------------------------------------------------------------------------


def _ids(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", list(EXPECTED), ids=_ids)
async def test_who_may_call_what(matrix: Matrix, route: tuple[str, str], caller: str) -> None:
    access, allowed, _outside, ok = EXPECTED[route]
    method = route[0]
    # on a one-tap route the link is the credential: the forged and expired callers bring such a link, the others a valid one
    may = caller not in BAD_LINKS if access in (Access.LINK, Access.SECRET, Access.SESSION) else access is Access.PUBLIC or caller in allowed
    call = await REQUESTS[route](matrix, may)
    before = await call.effect() if call.effect else None
    got = await send(matrix, method, call, matrix.headers(caller), link_caller=caller)
    after = await call.effect() if call.effect else None

    if may:
        assert got.status == ok, f"{caller} may {_ids(route)}, got {got.status}: {got.text[:300]}"
        if call.effect is not None:
            assert after != before, f"{_ids(route)} answered {ok} for {caller} but changed nothing ({before!r})"
        if route == ("GET", "/api/feed"):
            hello = dict(got.events)["hello"]
            assert got.headers["content-type"].startswith("text/event-stream")
            assert hello["user"] == LOGIN_OF[caller]
        return
    assert after == before, f"a refused {_ids(route)} by {caller} still changed {before!r} into {after!r}"
    detail = got.json()["detail"]
    if access is Access.SECRET:
        assert got.status == 401, got.text
        assert ("新的链接" if route[1].startswith("/s/") else "密钥不符") in detail
    elif access is Access.LINK:
        assert got.status == 401, got.text
        assert "新的链接" in detail  # Chinese: a responder's phone reads it (English on Accept-Language: en)
    elif access is Access.SESSION:
        assert got.status == 401, got.text
        assert "链接" in detail  # Chinese: open the page from the link of the SMS
    elif caller in BAD_CALLERS:
        assert got.status == 401, f"{caller} on {_ids(route)}: {got.status} {got.text[:300]}"
        assert got.headers.get("www-authenticate") == "Bearer"
        assert "登录" in detail  # Chinese by default (backend/i18n.py; English on Accept-Language: en)
        if caller == "expired_token":
            assert "过期" in detail
    else:
        assert got.status == 403, f"{caller} may not {_ids(route)}, got {got.status}: {got.text[:300]}"
        assert f"您的角色（{caller}）" in detail
        may_roles = frozenset(detail.rsplit("可以执行的角色：", 1)[1].split(", "))
        assert may_roles == allowed, f"the 403 of {_ids(route)} names {sorted(may_roles)}; the table says {sorted(allowed)}"


# -- outside the territory ----------------------------------------------------------------------------------------------

KEYED: Final = [(route, role) for route, (_a, allowed, outside, _ok) in EXPECTED.items() if outside is NOT_FOUND for role in ROLES if role in allowed]
LISTS: Final = [(route, role) for route, (_a, allowed, outside, _ok) in EXPECTED.items() if outside is FILTERED for role in ROLES if role in allowed]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("route", "role"), KEYED, ids=[f"{_ids(r)}-{role}" for r, role in KEYED])
async def test_outside_the_territory_is_not_found_like_an_unknown_id(matrix: Matrix, route: tuple[str, str], role: str) -> None:
    outsider = OUTSIDER_OF[role]
    call = await REQUESTS[route](matrix, False)
    assert call.key is not None
    body = json.loads(json.dumps(call.body).replace(f'"{call.key}"', '"nosuch-0"')) if call.body else call.body  # a place in the body, too
    unknown = Call(call.url.replace(f"/{call.key}", "/nosuch-0", 1), body, files=call.files)
    before = await call.effect() if call.effect else None
    got = await send(matrix, route[0], call, matrix.api.auth(outsider))
    after = await call.effect() if call.effect else None
    assert got.status == 404, f"{outsider} ({role}, outside {HOME}) on {_ids(route)}: {got.status} {got.text[:300]}"
    assert after == before, f"{outsider} changed {before!r} into {after!r} outside their territory"
    nosuch = await send(matrix, route[0], unknown, matrix.api.auth(outsider))
    assert nosuch.status == 404
    assert got.json()["detail"].replace(call.key, "<id>") == nosuch.json()["detail"].replace("nosuch-0", "<id>"), "ids outside can be told apart"
    if call.effect is None:  # a read: the same request from inside succeeds (acting inside is the matrix's job, on fresh alarms)
        inside = await send(matrix, route[0], call, matrix.api.auth(LOGIN_OF[role]))
        assert inside.status == EXPECTED[route][3], f"the same request from {LOGIN_OF[role]} (inside) must succeed: {inside.text[:300]}"


def shows_home(route: tuple[str, str], body: Any) -> bool:
    """Does this list show anything of HOME?"""
    if route == ("GET", "/api/alarms"):
        return any(a["building_id"] == HOME for a in body["alarms"])
    if route in (("GET", "/api/site/map"), ("GET", "/api/health/devices")):
        return any(b["id"] == HOME for b in body["buildings"])
    if route == ("GET", "/api/feed/events"):
        return any(e["building_id"] == HOME for e in body["events"])
    if route == ("GET", "/api/maintenance"):
        return any(w["building_id"] == HOME for w in body["windows"])
    if route == ("GET", "/api/workorders"):
        return any(o["building_id"] == HOME for o in body["orders"])
    if route == ("GET", "/api/duty/roster"):
        return any(r["seat"] == "building_leader" and r["scope"] == HOME for r in body["seats"])
    if route == ("GET", "/api/history"):
        return any(a["building_id"] == HOME for a in body["alarms"])
    if route == ("GET", "/api/reports/communities"):
        return any(c["id"] == "c01" for c in body["communities"])  # HOME's community
    if route == ("GET", "/api/callbacks"):
        return any(c["building_id"] == HOME for c in body["callbacks"])
    raise AssertionError(f"no check for {route}")


def marker_place(login: str) -> tuple[str | None, str | None, str]:
    """A place inside this login's territory, for a feed event that ends the backlog it reads."""
    role, scope = OUTSIDERS.get(login) or PEOPLE.get(login) or ("admin", None)
    if role == "grid_worker":
        return None, scope, "c01"
    if role == "building_leader":
        return scope, None, "c01"
    return None, None, scope or "c01"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("route", "role"), LISTS, ids=[f"{_ids(r)}-{role}" for r, role in LISTS])
async def test_lists_leave_out_what_lies_outside_the_territory(matrix: Matrix, route: tuple[str, str], role: str) -> None:
    call = await REQUESTS[route](matrix, False)
    for login, inside in ((OUTSIDER_OF[role], False), (LOGIN_OF[role], True)):
        if route == ("GET", "/api/feed"):  # read from the start of the ring up to a marker this login sees, published after
            b, g, c = marker_place(login)
            matrix.api.feed.publish("marker", {"for": login}, building_id=b, grid_id=g, community_id=c)
            got = await send(matrix, "GET", call, matrix.api.auth(login), until_kind="marker")
            assert got.status == 200, got.text
            seen = any(kind == "alarm" and data["building_id"] == HOME for kind, data in got.events)
        else:
            got = await send(matrix, route[0], call, matrix.api.auth(login))
            assert got.status == 200, got.text
            seen = export_shows_home(route, got) if route in EXPORTS else shows_home(route, got.json())
        assert seen is inside, f"{login} ({role}, {'inside' if inside else 'outside'} {HOME}) on {_ids(route)}: shows {HOME} = {seen}"


# -- a login is not an answer link, and an answer link is not a login ---------------------------------------------------

LINK_ROUTES: Final = [route for route, (access, *_rest) in EXPECTED.items() if access is Access.LINK]
LOGIN_ROUTES: Final = [route for route, (access, *_rest) in EXPECTED.items() if access is Access.LOGIN]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", LINK_ROUTES, ids=_ids)
async def test_a_login_is_not_an_answer_link(matrix: Matrix, route: tuple[str, str], role: str) -> None:
    call = await REQUESTS[route](matrix, True)
    session = matrix.api.tokens[LOGIN_OF[role]]
    before = await call.effect() if call.effect else None
    got = await send(matrix, route[0], Call(call.url.replace("{link}", session), call.body), {})
    assert got.status == 401, got.text
    assert "不是应答链接" in got.json()["detail"]
    assert (await call.effect() if call.effect else None) == before


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("route", LOGIN_ROUTES, ids=_ids)
async def test_an_answer_link_is_not_a_login(matrix: Matrix, route: tuple[str, str]) -> None:
    call = await REQUESTS[route](matrix, False)
    link = matrix.link(matrix.sentinel, "no_token")
    got = await send(matrix, route[0], call, {"Authorization": f"Bearer {link}"})
    assert got.status == 401, got.text
    assert "一键应答链接，不是登录凭证" in got.json()["detail"], "the sentence says what the caller holds and what to do"
