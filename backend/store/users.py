"""Users and their passwords (argon2id), and the first admin login created on first start."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from backend.store.alarms import metadata

__all__ = ["User", "UserStore"]

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(30), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False, default=""),
    sa.Column("scope", sa.String(64)),  # a grid worker's grid, a building leader's building
)


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    display_name: str
    scope: str | None


class UserStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._hasher = PasswordHasher()
        metadata.create_all(engine)

    def add(self, username: str, password: str, role: str, display_name: str = "", scope: str | None = None) -> User:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(users).values(username=username, password_hash=self._hasher.hash(password), role=role,
                                                 display_name=display_name, scope=scope))
        return User(username, role, display_name, scope)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())

    def ensure_admin(self, username: str, password: str | None) -> str | None:
        """Create the admin login if no user exists; return the password when one was generated."""
        if self.count() > 0:
            return None
        generated = password is None
        pw = password if password is not None else secrets.token_urlsafe(12)
        self.add(username, pw, "admin", "管理员")
        return pw if generated else None

    def authenticate(self, username: str, password: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
        if row is None:
            self._hasher.hash(password)  # same cost whether or not the user exists
            return None
        try:
            self._hasher.verify(row.password_hash, password)
        except (VerifyMismatchError, InvalidHashError):
            return None
        return User(row.username, row.role, row.display_name, row.scope)

    def get(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
        return None if row is None else User(row.username, row.role, row.display_name, row.scope)
