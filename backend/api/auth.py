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

Logging in (`LoginGuard`, issue 22): password checks (argon2, deliberately slow) run on a small executor of
their own (`api.login_hash_threads`, default 2), never on the default thread pool that commits alarms, so a
login flood cannot hold a smoke alarm's commit. Every attempt counts as a failure of its account and of its
client address until its password proves right; once either has `api.login_account_failures` /
`api.login_address_failures` failures within `api.login_window_s`, its logins answer 429 with Retry-After
(when the oldest failure leaves the window) without hashing anything (the password threads also run at a lower
CPU priority, `api.login_hash_niceness`, so on a busy machine alarms get the processor first); when more than `api.login_max_waiting`
checks already wait for the hashing threads, a new one answers 429 at once. A 429 is held for
`api.login_refusal_delay_s` (1 s) before it is sent, so a flood that ignores Retry-After slows itself down
instead of spinning the event loop the alarms share. Every password check is written
to the user store's login audit (who, which address, when, the outcome), and so are refusals, at most one row
a minute per account, per address (and for all "busy" refusals together) with the number of refusals it stands
for. A 429 is Chinese by default
(English for `Accept-Language: en`).

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
import collections
import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api.tokens import InvalidToken, TokenSigner
from backend.errors import BackendError
from backend.i18n import lang_of
from backend.sites.model import SiteDirectory
from backend.store.users import LoginAudit, User, UserRole, UserStore
from broker.clock import Clock

__all__ = ["ROLE_CAPABILITIES", "Auth", "Capability", "FailureWindow", "LoginGuard", "LoginPolicy", "LoginThrottled", "Principal", "Territory",
           "wants_english"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def wants_english(accept_language: str | None) -> bool:
    """Chinese unless the reader's most preferred language (of zh and en) is English (backend.i18n.lang_of)."""
    return lang_of(accept_language) == "en"


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

    def __init__(self, users: UserStore, signer: TokenSigner, clock: Clock, sites: SiteDirectory | None, login: "LoginPolicy | None" = None) -> None:
        self.users = users
        self.signer = signer
        self.clock = clock
        self.sites = sites
        self.logins = LoginGuard(users, clock, login)  # POST /api/login's password checks: own threads, throttled, audited
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


# -- logging in ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """How password checks run and are throttled (from backend.settings.ApiSettings, `api.login_*`)."""

    hash_threads: int = 2
    window_s: float = 300.0
    account_failures: int = 5
    address_failures: int = 20
    max_waiting: int = 16
    hash_niceness: int = 10
    refusal_delay_s: float = 1.0

    @classmethod
    def of(cls, extras: Mapping[str, Any] | None) -> "LoginPolicy":
        """From the server's `ApiDeps.extras["api"]` (an ApiSettings); the defaults when the server passed none."""
        api = (extras or {}).get("api")
        if api is None:
            return cls()
        return cls(api.login_hash_threads, api.login_window_s, api.login_account_failures, api.login_address_failures, api.login_max_waiting,
                   api.login_hash_niceness, api.login_refusal_delay_s)


class FailureWindow:
    """Failures per key (an account, an address) within a sliding window; pure, the time is an argument."""

    MAX_KEYS: Final = 10_000  # beyond this, keys whose failures all left the window are dropped, then the oldest

    def __init__(self, limit: int, window_ms: int) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self._fails: dict[str, collections.deque[int]] = {}

    def _live(self, key: str, now_ms: int) -> collections.deque[int] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and q[0] <= now_ms - self.window_ms:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def retry_after_ms(self, key: str, now_ms: int) -> int:
        """0: the key may try; else how long until the oldest failure leaves the window."""
        q = self._live(key, now_ms)
        if q is None or len(q) < self.limit:
            return 0
        return max(1, q[-self.limit] + self.window_ms - now_ms)

    def fail(self, key: str, now_ms: int) -> None:
        if key not in self._fails and len(self._fails) >= self.MAX_KEYS:
            for k in list(self._fails):
                self._live(k, now_ms)
            while len(self._fails) >= self.MAX_KEYS:
                del self._fails[next(iter(self._fails))]
        self._fails.setdefault(key, collections.deque()).append(now_ms)

    def forgive(self, key: str, at_ms: int, *, all_of_them: bool = False) -> None:
        """Take back the failure counted at `at_ms` (the password was right), or every failure of the key."""
        q = self._fails.get(key)
        if q is None:
            return
        if all_of_them:
            q.clear()
        else:
            with contextlib.suppress(ValueError):
                q.remove(at_ms)
        if not q:
            del self._fails[key]


class LoginThrottled(BackendError):
    def __init__(self, outcome: str, retry_after_s: int) -> None:
        self.outcome = outcome  # throttled_account, throttled_address, busy
        self.retry_after_s = retry_after_s
        super().__init__(f"{outcome}: retry after {retry_after_s} s")

    def detail(self, *, english: bool) -> str:
        n = self.retry_after_s
        if self.outcome == "busy":
            return f"too many logins at once; try again in {n} s" if english else f"登录请求过多，请{n}秒后再试。"
        return (f"too many failed logins; try again in {n} s, or ask an administrator to reset the password" if english
                else f"登录失败次数过多，请{n}秒后再试；如忘记密码请联系管理员。")


def _lower_priority(niceness: int) -> None:
    """Run the calling thread `niceness` nicer (Linux: nice is per thread, and the threads argon2 starts for its lanes
    inherit it), so on a busy machine the CPU goes to the alarm path first and a login waits a little longer."""
    if niceness <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: the separate threads still hold
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))


class LoginGuard:
    """Password checks on their own threads, throttled per account and per client address, audited."""

    AUDIT_COALESCE_MS: Final = 60_000  # refusals of one account or address are written at most once a minute
    MAX_HELD: Final = 1_000  # refusals held for refusal_delay_s at once; beyond, answered at once (a held one costs a few KB)

    def __init__(self, users: UserStore, clock: Clock, policy: LoginPolicy | None = None) -> None:
        self.users = users
        self.clock = clock
        self.policy = policy or LoginPolicy()
        window_ms = int(self.policy.window_s * 1000)
        self.accounts = FailureWindow(self.policy.account_failures, window_ms)
        self.addresses = FailureWindow(self.policy.address_failures, window_ms)
        self.pool = ThreadPoolExecutor(self.policy.hash_threads, thread_name_prefix="password-hash", initializer=_lower_priority,
                                       initargs=(self.policy.hash_niceness,))
        self.audit_pool = ThreadPoolExecutor(1, thread_name_prefix="login-audit")  # normal priority, never queued behind password checks
        self.waiting = 0
        self.refused = 0
        self.held = 0
        self._refusals: dict[tuple[str, str], tuple[int, int]] = {}  # (outcome, key) -> (last row written at, refusals since)

    async def hashing(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` (a password hash or check) on the password threads, not on the alarm path's default pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def login(self, username: str, password: str, address: str) -> User | None:
        """The user, or None for a wrong name or password; LoginThrottled when this attempt is not even checked."""
        now = self.clock.now_ms()
        account_wait = self.accounts.retry_after_ms(username, now)
        address_wait = self.addresses.retry_after_ms(address, now)
        if account_wait or address_wait:
            outcome = "throttled_account" if account_wait >= address_wait else "throttled_address"
            await self._refuse(LoginThrottled(outcome, math.ceil(max(account_wait, address_wait) / 1000)), username, address, now)
        if self.waiting >= self.policy.max_waiting:
            await self._refuse(LoginThrottled("busy", 1), username, address, now)
        # counted as failed until the password proves right, so a burst in flight cannot outrun the limits
        self.accounts.fail(username, now)
        self.addresses.fail(address, now)
        self.waiting += 1
        try:
            user = await self.hashing(self.users.authenticate, username, password)
        finally:
            self.waiting -= 1
        # written from a thread at normal priority: a nicer password thread holding SQLite's write lock could stall an alarm's commit
        entry = LoginAudit(now, username, address, "ok" if user is not None else "wrong", 0, None)
        await asyncio.get_running_loop().run_in_executor(self.audit_pool, self.users.audit_login, entry)
        if user is not None:
            self.accounts.forgive(username, now, all_of_them=True)
            self.addresses.forgive(address, now)
        return user

    async def attempt(self, request: Request, username: str, password: str) -> User:
        """POST /api/login's check: the user, or the HTTP answer (401 wrong name or password, 429 throttled)."""
        address = request.client.host if request.client is not None else "unknown"
        try:
            user = await self.login(username, password, address)
        except LoginThrottled as exc:
            delay = min(self.policy.refusal_delay_s, exc.retry_after_s)
            if delay > 0 and self.held < self.MAX_HELD:  # a flood ignoring Retry-After waits here, cheaply, not in a busy loop
                self.held += 1
                try:
                    await asyncio.sleep(delay)
                finally:
                    self.held -= 1
            english = wants_english(request.headers.get("accept-language"))
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, exc.detail(english=english),
                                headers={"Retry-After": str(exc.retry_after_s)}) from exc
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
        return user

    async def _refuse(self, exc: LoginThrottled, username: str, address: str, now_ms: int) -> None:
        self.refused += 1
        # one row a minute per account, per address, and for all "busy" refusals together (a flood from many addresses)
        key = (exc.outcome, {"throttled_address": address, "busy": ""}.get(exc.outcome, username))
        last, since = self._refusals.get(key, (-self.AUDIT_COALESCE_MS, 0))
        since += 1
        if now_ms - last < self.AUDIT_COALESCE_MS:
            self._refusals[key] = (last, since)
            raise exc
        self._refusals[key] = (now_ms, 0)  # before the write: refusals arriving meanwhile count towards the next row
        if len(self._refusals) > FailureWindow.MAX_KEYS:
            del self._refusals[next(iter(self._refusals))]
        if since == 1:
            log.warning("login refused (%s) for %r from %s: retry after %d s", exc.outcome, username, address, exc.retry_after_s)
        entry = LoginAudit(now_ms, username, address, exc.outcome, since, exc.retry_after_s)
        await asyncio.get_running_loop().run_in_executor(self.audit_pool, self.users.audit_login, entry)
        raise exc

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.audit_pool.shutdown(wait=False, cancel_futures=True)
