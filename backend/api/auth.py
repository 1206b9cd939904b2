"""Who is asking, what they may do, and where: roles, capabilities and territory for every API route.

How this works: a request carries `Authorization: Bearer <token>`: either a console session (a signed token
from POST /api/login, see backend.api.tokens) or a machine's API token (`swm_...`, see
backend.store.users). Either way it resolves to a `Principal`: the user, its role's `Capability` set, and
its `Territory`. Routes ask `auth.require(Capability.X)` and get the principal or a JSON 401/403 that says
what to do; then they filter what they read and refuse what they act on with `territory.covers(...)`.

Territory (from the user's role and scope, checked against the site directory):
- grid worker: the buildings of her grid; building leader: his building;
- everyone else: the community named by the scope, or every community when the scope is empty.
An alarm belongs to the territory if its building does (the site directory maps buildings to grids; the
alarm's own grid id is used when its building is unknown to the directory).

Invariant: a route never returns or changes an alarm outside the caller's territory; for such an alarm it
answers 404 exactly as for one that does not exist, so ids in other grids cannot be probed.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api.tokens import InvalidToken, TokenSigner
from backend.clock import Clock
from backend.sites.model import SiteDirectory
from backend.store.users import User, UserRole, UserStore

__all__ = ["ROLE_CAPABILITIES", "Auth", "Capability", "Principal", "Territory"]


class Capability(StrEnum):
    VIEW_ALARMS = "view_alarms"
    ACKNOWLEDGE = "acknowledge"  # for oneself
    ACKNOWLEDGE_FOR_OTHERS = "acknowledge_for_others"  # record a responder's acknowledgement (they phoned the command room)
    VERIFY = "verify"  # 核实: confirm the alarm is real
    DISPATCH = "dispatch"  # send a responder
    CLOSE = "close"  # close as real (复核关闭) or as a false alarm
    SILENCE = "silence"  # maintenance window on a device
    VIEW_VULNERABLE = "view_vulnerable"  # vulnerable-resident notes, family contacts
    VIEW_HEALTH = "view_health"  # device health
    VIEW_SYSTEM = "view_system"  # site-wide figures: ingest counters, rejections, event-loop lag, memory, ladder misses
    MANAGE_USERS = "manage_users"


C = Capability
_FIELD: Final = frozenset({C.VIEW_ALARMS, C.ACKNOWLEDGE, C.VERIFY, C.VIEW_VULNERABLE, C.VIEW_HEALTH})
ROLE_CAPABILITIES: Final[dict[UserRole, frozenset[Capability]]] = {
    UserRole.ADMIN: frozenset(Capability),
    UserRole.DUTY_OFFICER: frozenset(Capability) - {C.MANAGE_USERS},
    UserRole.GRID_WORKER: _FIELD | {C.DISPATCH, C.CLOSE},
    UserRole.BUILDING_LEADER: _FIELD,
    UserRole.MICRO_FIRE_STATION: _FIELD,
    UserRole.VOLUNTEER: frozenset({C.VIEW_ALARMS}),  # no residents' notes, no actions from the console
}


@dataclass(frozen=True, slots=True)
class Territory:
    """Where a user may look and act."""

    kind: str  # "all", "community", "grid", "building", "none"
    scope: str | None
    buildings: frozenset[str] | None  # the directory's buildings inside (None: no directory, or everywhere)
    grids: frozenset[str] | None
    known: frozenset[str] | None = None  # every building the directory knows

    @classmethod
    def of(cls, user: User, sites: SiteDirectory | None) -> "Territory":
        role = UserRole(user.role)
        scope = user.scope or None
        known = frozenset(sites.buildings) if sites else None
        if role in (UserRole.GRID_WORKER, UserRole.BUILDING_LEADER) and scope is None:
            return cls("none", None, frozenset(), frozenset())  # a field role without a place sees nothing
        if role is UserRole.GRID_WORKER:
            blds = frozenset(b.id for b in sites.buildings.values() if b.grid == scope) if sites else None
            return cls("grid", scope, blds, frozenset({scope}) if scope else None, known)
        if role is UserRole.BUILDING_LEADER:
            grid = sites.buildings[scope].grid if sites and scope in sites.buildings else None
            return cls("building", scope, frozenset({scope}) if scope else None, frozenset({grid}) if grid else None, known)
        if scope is None:
            return cls("all", None, None, None, known)
        grids = frozenset(g.id for g in sites.grids.values() if g.community == scope) if sites else None
        blds = frozenset(b.id for b in sites.buildings.values() if grids is not None and b.grid in grids) if sites else None
        return cls("community", scope, blds, grids, known)

    @property
    def everywhere(self) -> bool:
        return self.kind == "all"

    def covers(self, building_id: str | None, grid_id: str | None = None, community_id: str | None = None) -> bool:
        """Is a place (an alarm's building; else its grid; else its community) inside this territory?"""
        if self.kind in ("all", "none"):
            return self.kind == "all"
        if self.kind == "building":
            return building_id is not None and building_id == self.scope
        if building_id is not None and self.known is not None and building_id in self.known and self.buildings is not None:
            return building_id in self.buildings
        if self.kind == "grid":
            return grid_id is not None and grid_id == self.scope
        if grid_id is not None and self.grids is not None:
            return grid_id in self.grids
        return community_id is not None and community_id == self.scope

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "buildings": sorted(self.buildings) if self.buildings is not None else None}


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    role: UserRole
    capabilities: frozenset[Capability]
    territory: Territory
    via: str  # "session" or "api_token"

    @property
    def username(self) -> str:
        return self.user.username

    def can(self, cap: Capability) -> bool:
        return cap in self.capabilities


class Auth:
    """The FastAPI dependencies that turn a bearer token into a Principal."""

    def __init__(self, users: UserStore, signer: TokenSigner, clock: Clock, sites: SiteDirectory | None) -> None:
        self.users = users
        self.signer = signer
        self.clock = clock
        self.sites = sites
        bearer = HTTPBearer(auto_error=False, description="a session token from POST /api/login, or a machine's API token (swm_...)")

        async def current(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
            return await self.principal(creds)

        self.current = current

    def principal_of(self, user: User, via: str) -> Principal:
        try:
            role = UserRole(user.role)
        except ValueError:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the role {user.role!r} of this login is unknown; ask an administrator") from None
        return Principal(user, role, ROLE_CAPABILITIES[role], Territory.of(user, self.sites), via)

    async def principal(self, creds: HTTPAuthorizationCredentials | None) -> Principal:
        if creds is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in first: POST /api/login, then send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        text = creds.credentials
        now_ms = self.clock.now_ms()
        if text.startswith("swm_"):
            user = await asyncio.to_thread(self.users.authenticate_token, text, now_ms)
            if user is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "this API token is unknown, revoked or expired; ask an administrator for a new one",
                                    headers={"WWW-Authenticate": "Bearer"})
            return self.principal_of(user, "api_token")
        try:
            claims = self.signer.verify(text, now_ms / 1000)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
        if "k" in claims:  # a purpose-bound token (a one-tap answer link), not a session
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "this is a one-tap answer link, not a login; log in first: POST /api/login",
                                headers={"WWW-Authenticate": "Bearer"})
        found = await asyncio.to_thread(self.users.get, str(claims.get("sub")))
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "this login no longer exists; ask an administrator", headers={"WWW-Authenticate": "Bearer"})
        return self.principal_of(found, "session")

    def require(self, cap: Capability) -> Callable[..., Coroutine[Any, Any, Principal]]:
        """A dependency: the principal, if its role grants `cap`; else 403 saying who may."""
        current = self.current

        async def dependency(p: Annotated[Principal, Depends(current)]) -> Principal:
            if cap not in p.capabilities:
                allowed = ", ".join(sorted(r.value for r, caps in ROLE_CAPABILITIES.items() if cap in caps))
                raise HTTPException(status.HTTP_403_FORBIDDEN, f"your role ({p.role.value}) may not {cap.value.replace('_', ' ')}; roles that may: {allowed}")
            return p

        return dependency

    def territory_guard(self) -> Callable[..., Coroutine[Any, Any, Principal]]:
        """A dependency for routes keyed by `device_id` or `building_id` in the path (e.g. the series API):
        the caller may view alarms, and the device's or building's place lies in their territory (else 404)."""
        viewer = self.require(Capability.VIEW_ALARMS)
        sites = self.sites

        async def dependency(request: Request, p: Annotated[Principal, Depends(viewer)]) -> Principal:
            if p.territory.everywhere or sites is None:
                return p
            device_id = request.path_params.get("device_id")
            building_id = request.path_params.get("building_id")
            if device_id is not None:
                d = sites.devices.get(str(device_id))
                building_id = d.building if d is not None else None
                if building_id is None or not p.territory.covers(building_id):
                    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r} in your territory")
            elif building_id is not None and not p.territory.covers(str(building_id)):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no building {building_id!r} in your territory")
            return p

        return dependency
