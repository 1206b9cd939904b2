"""Users and their API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Baseline. Before migrations these tables were made by `create_all` at start (since the thin slice): a
database that already has a table (an existing deployment) keeps it as it is, and this revision only stamps
the version table for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "users" not in existing:
        op.create_table(
            "users",
            sa.Column("username", sa.String(64), primary_key=True),
            sa.Column("password_hash", sa.String(200), nullable=False),
            sa.Column("role", sa.String(30), nullable=False),
            sa.Column("display_name", sa.String(100), nullable=False),
            sa.Column("scope", sa.String(64)),
        )
    if "api_tokens" not in existing:
        op.create_table(
            "api_tokens",
            sa.Column("id", sa.String(16), primary_key=True),
            sa.Column("username", sa.String(64), nullable=False),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("secret_sha256", sa.String(64), nullable=False),
            sa.Column("created_ms", sa.BigInteger, nullable=False),
            sa.Column("expires_ms", sa.BigInteger),
            sa.Column("revoked", sa.Boolean, nullable=False),
            sa.Column("last_used_ms", sa.BigInteger),
        )


def downgrade() -> None:
    for table in ("api_tokens", "users"):
        op.drop_table(table)
