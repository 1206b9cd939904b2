"""Short links: the one-tap answer link in a form that fits one SMS part.

How this works: a one-tap link (backend.api.responses) carries a signed token and is far too long for a
70-character SMS. `ShortLinks.shorten(target, key)` stores the full link under a random code (12 characters of
a CSPRNG's URL-safe alphabet, 72 bits: not guessable, not enumerable) with an expiry, and `GET /s/{code}`
(backend.api.shortlinks) answers 302 to the full link while it lives. The code is stored by the notice's key,
so every retry of one SMS sends the same short link. The short link adds no power: the full link it leads to
still checks its own signature, expiry and single use. Expired rows are deleted as new ones are written.

Exceptions: none of its own; a database that is away raises SQLAlchemy's errors, which the API translates.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import sqlalchemy as sa

from backend.store.migrations import upgrade

__all__ = ["CODE_CHARS", "ShortLinks", "metadata", "short_links"]

MIGRATIONS = Path(__file__).resolve().parent / "shortlink_migrations"
VERSION_TABLE = "alembic_version_shortlinks"
CODE_CHARS = 12  # token_urlsafe(9) -> 12 characters, 72 random bits

metadata = sa.MetaData()

short_links = sa.Table(
    "notify_short_links",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("target", sa.String(2000), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False, index=True),
)


class ShortLinks:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        upgrade(engine, MIGRATIONS, VERSION_TABLE)

    def shorten(self, target: str, key: str, *, now_ms: int, ttl_ms: int) -> str:
        """The code of `target` for the notice `key` (the same code for every retry of that notice)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(short_links.c.code, short_links.c.target).where(short_links.c.key == key)).first()
            if row is not None and row.target == target:
                return str(row.code)
            conn.execute(sa.delete(short_links).where(sa.or_(short_links.c.expires_ms <= now_ms, short_links.c.key == key)))
            code = secrets.token_urlsafe(9)
            conn.execute(sa.insert(short_links).values(code=code, key=key, target=target, created_ms=now_ms, expires_ms=now_ms + ttl_ms))
            return code

    def resolve(self, code: str, *, now_ms: int) -> str | None:
        """The full link of a live code; None for an unknown or expired one."""
        if len(code) != CODE_CHARS:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(short_links.c.target, short_links.c.expires_ms).where(short_links.c.code == code)).first()
        if row is None or row.expires_ms <= now_ms:
            return None
        return str(row.target)
