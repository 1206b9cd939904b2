"""The HTTP API (FastAPI, under /api, OpenAPI at /api/openapi.json) and the duty console it serves.

How this works: `create_app(deps)` builds one `Auth` (bearer session tokens and machine API tokens → a
Principal with role capabilities and a territory) and mounts the routers: alarms and actions
(console_alarms), site map / buildings / device health (console_site), users and tokens (console_admin),
the live feed (feed), and the series API other engineers add (series). Routes stay thin; every error is JSON
`{"detail": "<what to do>"}` (backend.api.errors). The console is static HTML/JS/CSS from backend/api/static,
no build step and nothing from the internet.

The live feed needs a running `LiveFeed`: pass one in `ApiDeps.feed` (entered by the server), or let the
app's lifespan start its own (uvicorn with lifespan "on", or a TestClient).

(No `from __future__ import annotations` here: FastAPI must see the real dependency objects in route signatures.)
"""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from backend.api.auth import Auth, Capability, LoginPolicy, Principal
from backend.api.console_admin import admin_router
from backend.api.console_alarms import alarms_router
from backend.api.console_callbacks import callbacks_router
from backend.api.console_collab import collab_router
from backend.api.console_duty import duty_router, duty_service
from backend.api.console_history import history_router
from backend.api.console_maintenance import maintenance_router
from backend.api.console_records import ConsoleRecords
from backend.api.console_reports import reports_router
from backend.api.console_site import site_router
from backend.api.console_workorders import workorders_router
from backend.api.deps import AlarmMoves, ApiDeps, Unowned
from backend.api.errors import ERRORS, install
from backend.api.feed import feed_router
from backend.api.health import health_router
from backend.api.notify_links import notify_links_router
from backend.api.responder import responder_router
from backend.api.responses import responses_router
from backend.api.series import series_router
from backend.feed import LiveFeed
from backend.ops.checks import database_check, feed_check
from backend.ops.metrics import CONTENT_TYPE_LATEST, Metrics
from backend.ops.readiness import Readiness
from backend.ops.web import HeaderPolicy, SecurityHeaders, offline_docs

__all__ = ["ApiDeps", "create_app"]

SESSION_TTL_S = 12 * 3600  # one duty shift
STATIC = Path(__file__).resolve().parent / "static"


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginResponse(BaseModel):
    token: str
    username: str
    role: str
    display_name: str
    scope: str | None
    expires_in_s: int


class Me(BaseModel):
    username: str
    role: str
    display_name: str
    scope: str | None
    via: str
    capabilities: list[str]
    territory: dict[str, Any]


class _FeedHolder:
    """The feed the routes use: the server's, or one this app's lifespan runs."""

    def __init__(self, feed: LiveFeed | None) -> None:
        self.feed = feed


def create_app(deps: ApiDeps) -> FastAPI:
    holder = _FeedHolder(deps.feed)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if holder.feed is not None:
            yield
            return
        # No stream in this process (an app over a store alone): the store is the feed's durable source.
        async with LiveFeed(deps.clock, stream=deps.stream, store=deps.alarms, sites=deps.sites, watch_store=deps.stream is None) as feed:
            holder.feed = feed
            try:
                yield
            finally:
                holder.feed = None

    app = FastAPI(title="Shouwang 守望 API", version="0.2.0", docs_url=None, openapi_url="/api/openapi.json", redoc_url=None, lifespan=lifespan,
                  description="Alarms, actions, site map, device health and the live feed of the duty console. Every route needs a bearer token "
                              "(POST /api/login for people, an API token for machines) and answers only about the caller's territory; "
                              "the exceptions are /api/health, /livez, /readyz, /metrics, /api/login, the API documentation and the one-tap "
                              "answer links (/r/... and POST /api/responses/..., which carry their own signed, expiring token).")
    install(app)
    # Operations (docs/operations.md): security headers on every response, local API docs, /livez, /readyz and /metrics.
    # The server adds the checks and metric hooks of what it runs (backend.ops.checks.instrument_backend).
    app.state.header_policy = HeaderPolicy()
    app.add_middleware(SecurityHeaders, policy=app.state.header_policy)
    offline_docs(app)
    readiness = app.state.readiness = Readiness()
    readiness.add("database", database_check(deps.alarms.engine, timeout_s=2.0))
    readiness.add("live_feed", feed_check(lambda: holder.feed))
    metrics = app.state.metrics = Metrics(stats=deps.ingest_stats, engine=deps.alarms.engine)
    app.include_router(health_router(readiness))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    auth = Auth(deps.users, deps.signer, deps.clock, deps.sites, LoginPolicy.of(deps.extras))
    moves: AlarmMoves = deps.alarm_service if deps.alarm_service is not None else Unowned()  # the alarm service alone writes alarm state
    records = ConsoleRecords(deps.alarms.engine)

    @app.post("/api/login", tags=["auth"], summary="Log in with a password; returns a session token for one duty shift",
              responses={400: ERRORS[400], 401: ERRORS[401], 422: ERRORS[422], 429: {**ERRORS[401], "description": "too many logins: see Retry-After"}})
    async def login(request: Request, body: LoginRequest) -> LoginResponse:
        user = await auth.logins.attempt(request, body.username, body.password)  # own threads, throttled, audited (backend/api/auth.py)
        auth.principal_of(user, "session")  # a login with an unknown role is refused here, not on every request
        token = deps.signer.sign({"sub": user.username}, deps.clock.now_ms() / 1000, SESSION_TTL_S)
        return LoginResponse(token=token, username=user.username, role=user.role, display_name=user.display_name, scope=user.scope, expires_in_s=SESSION_TTL_S)

    @app.get("/api/me", tags=["auth"], summary="Who you are: role, capabilities, territory", responses=ERRORS)
    async def me(p: Annotated[Principal, Depends(auth.current)]) -> Me:
        return Me(username=p.username, role=p.role.value, display_name=p.user.display_name, scope=p.user.scope, via=p.via,
                  capabilities=sorted(c.value for c in p.capabilities), territory=p.territory.as_json())

    @app.get("/api/ingest/stats", tags=["system"], summary="Ingest counters (accepted, rejected by reason, duplicates)",
             responses=ERRORS)
    async def ingest_stats(_: Annotated[Principal, Depends(auth.require(Capability.VIEW_SYSTEM))]) -> dict[str, Any]:
        return deps.ingest_stats()

    # Every router's operations document the JSON error bodies (routers other engineers write included).
    def feed_cursor() -> str | None:
        feed = holder.feed
        return feed.cursor() if feed is not None and feed.ready.is_set() else None

    app.include_router(alarms_router(deps, auth, moves, records, feed_cursor), responses=ERRORS)
    app.include_router(site_router(deps, auth), responses=ERRORS)
    app.include_router(admin_router(deps, auth), responses=ERRORS)
    app.include_router(feed_router(lambda: holder.feed, auth), responses=ERRORS)
    app.include_router(series_router(deps.timeseries, deps.sites, deps.clock, auth.territory_guard()), responses=ERRORS)
    app.include_router(responses_router(deps, auth), responses=ERRORS)  # issue 6: one-tap answers, the ladder's timelines and misses
    app.include_router(responder_router(deps), responses=ERRORS)  # issue 18: the responder's phone view (GET /r/{token}, /m/...)
    app.include_router(maintenance_router(deps, auth), responses=ERRORS)  # issue 15: maintenance windows as records
    app.include_router(history_router(deps, auth), responses=ERRORS)  # issue 17: every alarm kept, filtered, exported; 处置记录单
    app.include_router(reports_router(deps, auth), responses=ERRORS)  # issue 17: the street office's monthly report (统计报表)
    duty = app.state.duty = duty_service(deps)  # issue 17: rosters the ladder reads, shifts, handovers, the one audit view
    if duty is not None:
        app.include_router(duty_router(deps, auth, duty), responses=ERRORS)
    app.include_router(workorders_router(deps, auth), responses=ERRORS)  # issue 17: hazard work orders (隐患整改)
    app.include_router(collab_router(deps, auth, moves), responses=ERRORS)  # issue 17: assignee, comments with photos, archive (协同处置)
    app.include_router(notify_links_router(deps), responses=ERRORS)  # issue 18: SMS short links, voice keypress receipts
    app.include_router(callbacks_router(deps, auth, moves), responses=ERRORS)  # issue 18: the SOS call-back (回访)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "console.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    return app
