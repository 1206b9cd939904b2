"""The HTTP API (FastAPI) and the console page it serves.

(No `from __future__ import annotations` here: FastAPI must see the real dependency objects in route signatures.)

Routes stay thin: each one checks who is asking and calls a store. Every error is JSON with a `detail`
that says what to do. Authentication is a bearer token from POST /api/login (see backend.api.tokens).
"""


import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from backend.api.series import series_router
from backend.api.tokens import InvalidToken, TokenSigner
from backend.clock import Clock
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmStore
from backend.store.timeseries.model import TimeSeriesStore
from backend.store.users import User, UserStore

__all__ = ["ApiDeps", "create_app"]

SESSION_TTL_S = 12 * 3600  # one duty shift


@dataclass(frozen=True)
class ApiDeps:
    alarms: AlarmStore
    users: UserStore
    signer: TokenSigner
    clock: Clock
    ingest_stats: Callable[[], dict[str, Any]]
    timeseries: TimeSeriesStore | None = None
    sites: SiteDirectory | None = None


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginResponse(BaseModel):
    token: str
    username: str
    role: str
    display_name: str
    expires_in_s: int


def create_app(deps: ApiDeps) -> FastAPI:
    app = FastAPI(title="Shouwang 守望 API", version="0.1.0", docs_url="/api/docs", openapi_url="/api/openapi.json")
    bearer = HTTPBearer(auto_error=False)

    def current_user(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> User:
        if creds is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in first: POST /api/login, then send 'Authorization: Bearer <token>'")
        try:
            claims = deps.signer.verify(creds.credentials, deps.clock.now_ms() / 1000)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from exc
        user = deps.users.get(str(claims.get("sub")))
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "this login no longer exists")
        return user

    @app.get("/api/health", tags=["system"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/login", tags=["auth"], responses={401: {"description": "wrong username or password"}})
    async def login(body: LoginRequest) -> LoginResponse:
        user = await asyncio.to_thread(deps.users.authenticate, body.username, body.password)
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
        token = deps.signer.sign({"sub": user.username}, deps.clock.now_ms() / 1000, SESSION_TTL_S)
        return LoginResponse(token=token, username=user.username, role=user.role, display_name=user.display_name, expires_in_s=SESSION_TTL_S)

    @app.get("/api/me", tags=["auth"])
    async def me(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        return {"username": user.username, "role": user.role, "display_name": user.display_name, "scope": user.scope}

    @app.get("/api/alarms", tags=["alarms"])
    async def list_alarms(
        user: Annotated[User, Depends(current_user)],
        open_only: Annotated[bool, Query(alias="open", description="only alarms not yet closed")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        rows = await asyncio.to_thread(deps.alarms.list, open_only=open_only, limit=limit)
        return {"alarms": [r.as_json() for r in rows]}

    @app.get("/api/ingest/stats", tags=["system"])
    async def ingest_stats(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        return deps.ingest_stats()

    app.include_router(series_router(deps.timeseries, deps.sites, deps.clock, current_user))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def console() -> str:
        return resources.files("backend.api").joinpath("static/console.html").read_text(encoding="utf-8")

    return app
