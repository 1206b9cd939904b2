"""Administration routes: users (people with a role and a territory) and API tokens for machines.

How this works: only the admin role may call these. A user's scope is checked against the site directory (a
grid worker needs a grid, a building leader a building), so a login cannot be created with a territory that
does not exist. A token's secret is returned once, on creation, and never again. A new password is hashed on
the password threads (backend/api/auth.py `LoginGuard`), never on the pool that commits alarms. The login
audit (every password check and the throttled refusals) is read here, newest first.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from backend.api.auth import Auth, Capability, Principal
from backend.api.deps import ApiDeps
from backend.api.errors import ERRORS
from backend.duty.store import AuditRow, DutyStore
from backend.store.users import ApiToken, LoginAudit, User, UserExists, UserRole

__all__ = ["admin_router"]

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]


class UserIn(BaseModel):
    username: Name
    password: Annotated[str | None, Field(min_length=8, max_length=256, description="unset: a machine user that only uses API tokens")] = None
    role: UserRole
    display_name: Annotated[str, Field(max_length=100)] = ""
    scope: Annotated[str | None, Field(max_length=64, description="grid id (grid worker), building id (building leader), else community id or none")] = None


class UserOut(BaseModel):
    username: str
    role: str
    display_name: str
    scope: str | None


class TokenIn(BaseModel):
    username: Name
    name: Annotated[str, Field(min_length=1, max_length=100, description="what the machine is, e.g. '119 bridge'")]
    ttl_days: Annotated[int | None, Field(ge=1, le=3650)] = None


class TokenOut(BaseModel):
    id: str
    username: str
    name: str
    created_ms: int
    expires_ms: int | None
    revoked: bool
    last_used_ms: int | None
    token: str | None = Field(default=None, description="the secret: shown once, on creation")


class LoginAuditOut(BaseModel):
    at_ms: int
    username: str
    address: str
    outcome: str = Field(description="ok, wrong, throttled_account, throttled_address or busy")
    refused: int = Field(description="refusals this row stands for (throttled rows are written at most once a minute per account or address)")
    retry_after_s: int | None


def _audit(a: LoginAudit) -> LoginAuditOut:
    return LoginAuditOut(at_ms=a.at_ms, username=a.username, address=a.address, outcome=a.outcome, refused=a.refused, retry_after_s=a.retry_after_s)


def _user(u: User) -> UserOut:
    return UserOut(username=u.username, role=u.role, display_name=u.display_name, scope=u.scope)


def _token(t: ApiToken, secret: str | None = None) -> TokenOut:
    return TokenOut(id=t.id, username=t.username, name=t.name, created_ms=t.created_ms, expires_ms=t.expires_ms, revoked=t.revoked,
                    last_used_ms=t.last_used_ms, token=secret)


def admin_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/api/admin", tags=["admin"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 409, 422)})
    admin = auth.require(Capability.MANAGE_USERS)
    sites = deps.sites
    admin_log = DutyStore(deps.users.engine)  # issue 17: admin actions appear in the one audit view (backend/duty/audit.py)

    async def logged(actor: str, action: str, subject: str, detail: str) -> None:
        await asyncio.to_thread(admin_log.audit, AuditRow(deps.clock.now_ms(), actor, "admin", action, subject, None, detail))

    def check_scope(body: UserIn) -> None:
        if sites is None:
            return
        ok: dict[UserRole, tuple[bool, str]] = {
            UserRole.GRID_WORKER: (body.scope in sites.grids, "a grid worker's scope must be a grid id of the site directory"),
            UserRole.BUILDING_LEADER: (body.scope in sites.buildings, "a building leader's scope must be a building id of the site directory"),
        }
        good, why = ok.get(body.role, (body.scope is None or body.scope in sites.communities, "the scope must be a community id, or empty for all"))
        if not good:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{why} (got {body.scope!r})")

    @router.get("/users", summary="Every login")
    async def list_users(_: Annotated[Principal, Depends(admin)]) -> list[UserOut]:
        return [_user(u) for u in await asyncio.to_thread(deps.users.all)]

    @router.post("/users", status_code=201, summary="Create a login (a person with a password, or a machine user without one)")
    async def add_user(p: Annotated[Principal, Depends(admin)], body: UserIn) -> UserOut:
        check_scope(body)
        try:
            u = await auth.logins.hashing(deps.users.add, body.username, body.password, body.role.value, body.display_name, body.scope)
        except UserExists as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await logged(p.username, "user_add", u.username, f"新建账号 {u.username}（{u.role}，范围 {u.scope or '全部'}）")
        return _user(u)

    @router.get("/login-audit", summary="The login audit, newest first: password checks and throttled refusals (who, which address, when)")
    async def login_audit(_: Annotated[Principal, Depends(admin)],
                          limit: Annotated[int, Query(ge=1, le=1000, description="rows, newest first")] = 200) -> list[LoginAuditOut]:
        return [_audit(a) for a in await asyncio.to_thread(deps.users.login_audit, limit)]

    @router.get("/tokens", summary="API tokens (without their secrets)")
    async def list_tokens(_: Annotated[Principal, Depends(admin)]) -> list[TokenOut]:
        return [_token(t) for t in await asyncio.to_thread(deps.users.tokens)]

    @router.post("/tokens", status_code=201, summary="Issue an API token for a user; the secret is in the answer, once")
    async def issue(p: Annotated[Principal, Depends(admin)], body: TokenIn) -> TokenOut:
        if await asyncio.to_thread(deps.users.get, body.username) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {body.username!r}; create the machine user first (POST /api/admin/users)")
        now = deps.clock.now_ms()
        expires = now + body.ttl_days * 86_400_000 if body.ttl_days else None
        t, secret = await asyncio.to_thread(deps.users.issue_token, body.username, body.name, now, expires)
        await logged(p.username, "token_issue", t.id, f"为 {body.username} 签发接口令牌「{body.name}」")
        return _token(t, secret)

    @router.delete("/tokens/{token_id}", summary="Revoke an API token")
    async def revoke(p: Annotated[Principal, Depends(admin)], token_id: Annotated[str, Path(min_length=1, max_length=16)]) -> dict[str, Any]:
        if not await asyncio.to_thread(deps.users.revoke_token, token_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API token {token_id!r}; list them with GET /api/admin/tokens")
        await logged(p.username, "token_revoke", token_id, f"吊销接口令牌 {token_id}")
        return {"revoked": token_id}

    return router
