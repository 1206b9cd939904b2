"""Users (people, with roles and a territory), their passwords (argon2id), and API tokens for machines.

How this works: a `User` has one `UserRole` and an optional `scope` naming its territory: the grid of a grid
worker, the building of a building leader, the community of anyone else (no scope: every community). People
log in with a password (argon2id hash; the same cost whether or not the name exists). Machines (a 119
bridge, a reporting job) get API tokens instead: `swm_<id>_<secret>`, of which only a SHA-256 of the secret
is stored (the secret has 256 bits of entropy, so a slow hash buys nothing); a token acts as the user it
belongs to, may expire and may be revoked. A machine user has no password ("!" can never verify).

Two ledgers live here too. `one_tap_moves` holds every answer a responder made through a one-tap link, per
(alarm, ladder round, person), numbered: `record_move` inserts the next number and fails when another request
took it first, so the API (backend/api/responses.py) can accept each move once per round and in order, also
across processes and restarts; a new round of the ladder (the alarm live again) takes the person's answers
afresh. `login_audit` holds who tried to log in, from which address, when, and what came of it
(backend/api/auth.py writes it).

Invariants: a grid worker's scope names a grid and a building leader's a building (checked by the API
against the site directory); usernames are unique; a revoked or expired token never authenticates.

The constructor brings the tables to the newest revision of backend/store/users_migrations (version table
`alembic_version_users`).

Exceptions:

    UserError
     ├── UserExists      the username is taken
     └── UnknownUser     no such username
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.errors import BackendError, Unavailable
from backend.store.migrations import upgrade

__all__ = ["ApiToken", "LoginAudit", "OneTapMove", "UnknownUser", "User", "UserError", "UserExists", "UserRole", "UserStore", "metadata"]

MIGRATIONS = Path(__file__).resolve().parent / "users_migrations"
VERSION_TABLE = "alembic_version_users"  # its own: the alarm store and others migrate the same database

NO_PASSWORD = "!"  # noqa: S105 - stored for machine users: never a valid argon2 hash, so password login always fails

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(30), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False, default=""),
    sa.Column("scope", sa.String(64)),  # a grid worker's grid, a building leader's building, else a community or none
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("last_used_ms", sa.BigInteger),
)

one_tap_moves = sa.Table(
    "one_tap_moves",
    metadata,
    sa.Column("alarm_id", sa.String(100), primary_key=True),
    sa.Column("ladder_round", sa.Integer, primary_key=True),  # the ladder's round the link was sent in (1, 2, ...)
    sa.Column("contact_id", sa.String(100), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # 1, 2, ... per (alarm, round, person): the race for a number decides
    sa.Column("move", sa.String(20), nullable=False),  # a lifecycle field move (acknowledge, depart, arrive, finish) or decline
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("alarm_id", "ladder_round", "contact_id", "move", name="uq_one_tap_moves_round_once"),
)

login_audit = sa.Table(
    "login_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(24), nullable=False),  # ok, wrong, throttled_account, throttled_address, busy
    sa.Column("refused", sa.Integer, nullable=False),  # refusals this row stands for (throttled rows are coalesced)
    sa.Column("retry_after_s", sa.Integer),
)


class UserRole(StrEnum):
    DUTY_OFFICER = "duty_officer"  # 值班员
    GRID_WORKER = "grid_worker"  # 网格员
    BUILDING_LEADER = "building_leader"  # 楼栋长
    MICRO_FIRE_STATION = "micro_fire_station"  # 微型消防站
    VOLUNTEER = "volunteer"  # 志愿者
    ADMIN = "admin"  # 管理员


class UserError(BackendError):
    pass


class UserExists(UserError):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"the username {username!r} is taken; pick another")


class UsersUnavailable(UserError, Unavailable):
    """The login database is away (connection refused, locked, read-only): nothing was read or written."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the login database is unavailable: {why}")
        self.why = why


class UnknownUser(UserError):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"there is no user {username!r}")


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    display_name: str
    scope: str | None


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    username: str
    name: str
    created_ms: int
    expires_ms: int | None
    revoked: bool
    last_used_ms: int | None


@dataclass(frozen=True, slots=True)
class OneTapMove:
    seq: int
    move: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class LoginAudit:
    at_ms: int
    username: str
    address: str
    outcome: str
    refused: int
    retry_after_s: int | None


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user(row: sa.Row[tuple[str, ...]] | sa.Row[object]) -> User:
    m = row._mapping
    return User(m["username"], m["role"], m["display_name"], m["scope"])


class UserStore:
    """Blocking; the API calls it off the event loop."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._hasher = PasswordHasher()
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    @contextlib.contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A connection (a transaction when `write`); the driver's "not now" errors become UsersUnavailable here, at the
        store's boundary (IntegrityError and the rest pass through to the callers that expect them)."""
        try:
            with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise UsersUnavailable(str(exc.orig or exc).strip().splitlines()[0]) from exc

    # -- people ----------------------------------------------------------------------------------------------
    def add(self, username: str, password: str | None, role: str, display_name: str = "", scope: str | None = None) -> User:
        """Add a user; `password=None` makes a machine user that can only use API tokens."""
        UserRole(role)  # raises ValueError for an unknown role
        pw_hash = self._hasher.hash(password) if password is not None else NO_PASSWORD
        try:
            with self._db(write=True) as conn:
                conn.execute(sa.insert(users).values(username=username, password_hash=pw_hash, role=role, display_name=display_name, scope=scope))
        except sa.exc.IntegrityError as exc:
            raise UserExists(username) from exc
        return User(username, role, display_name, scope)

    def count(self) -> int:
        with self._db() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())

    def ensure_admin(self, username: str, password: str | None) -> str | None:
        """Create the admin login if no user exists; return the password when one was generated."""
        if self.count() > 0:
            return None
        generated = password is None
        pw = password if password is not None else secrets.token_urlsafe(12)
        self.add(username, pw, UserRole.ADMIN, "管理员")
        return pw if generated else None

    def authenticate(self, username: str, password: str) -> User | None:
        with self._db() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
        if row is None:
            self._hasher.hash(password)  # same cost whether or not the user exists
            return None
        try:
            self._hasher.verify(row.password_hash, password)
        except (VerifyMismatchError, InvalidHashError, VerificationError):
            return None
        return _user(row)

    def get(self, username: str) -> User | None:
        with self._db() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
        return None if row is None else _user(row)

    def all(self) -> list[User]:
        with self._db() as conn:
            return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.username))]

    def set_password(self, username: str, password: str) -> None:
        with self._db(write=True) as conn:
            n = conn.execute(sa.update(users).where(users.c.username == username).values(password_hash=self._hasher.hash(password))).rowcount
        if n == 0:
            raise UnknownUser(username)

    def remove(self, username: str) -> None:
        with self._db(write=True) as conn:
            n = conn.execute(sa.delete(users).where(users.c.username == username)).rowcount
            conn.execute(sa.update(api_tokens).where(api_tokens.c.username == username).values(revoked=True))
        if n == 0:
            raise UnknownUser(username)

    # -- machines --------------------------------------------------------------------------------------------
    def issue_token(self, username: str, name: str, now_ms: int, expires_ms: int | None = None) -> tuple[ApiToken, str]:
        """A new API token for `username`; returns it and the secret text, which is shown once and never stored."""
        if self.get(username) is None:
            raise UnknownUser(username)
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._db(write=True) as conn:
            conn.execute(sa.insert(api_tokens).values(id=token_id, username=username, name=name, secret_sha256=_sha(secret), created_ms=now_ms,
                                                      expires_ms=expires_ms, revoked=False, last_used_ms=None))
        return ApiToken(token_id, username, name, now_ms, expires_ms, False, None), f"swm_{token_id}_{secret}"

    def tokens(self, username: str | None = None) -> list[ApiToken]:
        q = sa.select(api_tokens).order_by(api_tokens.c.created_ms)
        if username is not None:
            q = q.where(api_tokens.c.username == username)
        with self._db() as conn:
            return [ApiToken(r.id, r.username, r.name, r.created_ms, r.expires_ms, r.revoked, r.last_used_ms) for r in conn.execute(q)]

    def revoke_token(self, token_id: str) -> bool:
        with self._db(write=True) as conn:
            return bool(conn.execute(sa.update(api_tokens).where(api_tokens.c.id == token_id).values(revoked=True)).rowcount)

    def authenticate_token(self, text: str, now_ms: int) -> User | None:
        """The user an API token acts as, or None (malformed, unknown, wrong secret, revoked, expired)."""
        parts = text.split("_", 2)
        if len(parts) != 3 or parts[0] != "swm" or not parts[1] or not parts[2]:
            return None
        with self._db() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == parts[1])).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, _sha(parts[2])) or row.revoked:
            return None
        if row.expires_ms is not None and row.expires_ms <= now_ms:
            return None
        if row.last_used_ms is None or now_ms - row.last_used_ms > 60_000:  # a write a minute at most, not one per request
            with self._db(write=True) as conn:
                conn.execute(sa.update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_ms=now_ms))
        return self.get(row.username)

    # -- one-tap moves -----------------------------------------------------------------------------------------
    def moves(self, alarm_id: str, contact_id: str, *, round_: int = 1) -> list[OneTapMove]:
        """The answers this person already made on this alarm in this ladder round through one-tap links, oldest first."""
        t = one_tap_moves
        q = (sa.select(t).where(t.c.alarm_id == alarm_id, t.c.ladder_round == round_, t.c.contact_id == contact_id).order_by(t.c.seq))
        with self._db() as conn:
            return [OneTapMove(r.seq, r.move, r.at_ms) for r in conn.execute(q)]

    def record_move(self, alarm_id: str, contact_id: str, seq: int, move: str, at_ms: int, *, round_: int = 1) -> bool:
        """Claim number `seq` for `move` in this round; False if that number or that move is already taken (a racing
        request won)."""
        try:
            with self._db(write=True) as conn:
                conn.execute(sa.insert(one_tap_moves).values(alarm_id=alarm_id, ladder_round=round_, contact_id=contact_id, seq=seq, move=move,
                                                             at_ms=at_ms))
        except sa.exc.IntegrityError:
            return False
        return True

    def forget_move(self, alarm_id: str, contact_id: str, seq: int, *, round_: int = 1) -> None:
        """Give a claimed number back: the move it stood for was not carried out (the ladder refused it)."""
        t = one_tap_moves
        with self._db(write=True) as conn:
            conn.execute(sa.delete(t).where(t.c.alarm_id == alarm_id, t.c.ladder_round == round_, t.c.contact_id == contact_id, t.c.seq == seq))

    # -- login audit -------------------------------------------------------------------------------------------
    def audit_login(self, entry: LoginAudit) -> None:
        with self._db(write=True) as conn:
            conn.execute(sa.insert(login_audit).values(at_ms=entry.at_ms, username=entry.username[:64], address=entry.address[:64],
                                                       outcome=entry.outcome, refused=entry.refused, retry_after_s=entry.retry_after_s))

    def login_audit(self, limit: int = 200, since_ms: int = 0) -> list[LoginAudit]:
        """The newest login audit rows first."""
        q = sa.select(login_audit).where(login_audit.c.at_ms >= since_ms).order_by(login_audit.c.id.desc()).limit(limit)
        with self._db() as conn:
            return [LoginAudit(r.at_ms, r.username, r.address, r.outcome, r.refused, r.retry_after_s) for r in conn.execute(q)]
