"""One-tap moves per ladder round, in the lifecycle's names.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

`one_tap_moves` was keyed by (alarm, person): a responder who answered in the ladder's first round could not
answer by link in its second (the alarm live again: new pages, new links), every move was "already made". The
round the link was sent in (`ladder_round`) now joins the key and the once-per-move constraint. Rows made
before are round 1. The answers are stored by the lifecycle's names (alerting.lifecycle): en_route, on_scene
and handled become depart, arrive and finish (acknowledge and decline keep theirs).

The table is copied (SQLite cannot change a primary key in place): made anew, filled, the old one dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_RENAMED = {"en_route": "depart", "on_scene": "arrive", "handled": "finish"}


def _case(mapping: dict[str, str]) -> str:
    whens = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in mapping.items())
    return f"CASE move {whens} ELSE move END"


def upgrade() -> None:
    op.create_table(
        "one_tap_moves_r",
        sa.Column("alarm_id", sa.String(100), nullable=False),
        sa.Column("ladder_round", sa.Integer, nullable=False),
        sa.Column("contact_id", sa.String(100), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("move", sa.String(20), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("alarm_id", "ladder_round", "contact_id", "seq", name="pk_one_tap_moves_round"),
        sa.UniqueConstraint("alarm_id", "ladder_round", "contact_id", "move", name="uq_one_tap_moves_round_once"),
    )
    op.execute(f"INSERT INTO one_tap_moves_r (alarm_id, ladder_round, contact_id, seq, move, at_ms) "  # noqa: S608 (constant text)
               f"SELECT alarm_id, 1, contact_id, seq, {_case(_RENAMED)}, at_ms FROM one_tap_moves")
    op.drop_table("one_tap_moves")
    op.rename_table("one_tap_moves_r", "one_tap_moves")


def downgrade() -> None:
    op.create_table(
        "one_tap_moves_o",
        sa.Column("alarm_id", sa.String(100), primary_key=True),
        sa.Column("contact_id", sa.String(100), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("move", sa.String(20), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("alarm_id", "contact_id", "move", name="uq_one_tap_moves_once"),
    )
    # only the first round's answers fit the old key
    op.execute(f"INSERT INTO one_tap_moves_o (alarm_id, contact_id, seq, move, at_ms) "  # noqa: S608 (constant text)
               f"SELECT alarm_id, contact_id, seq, {_case({v: k for k, v in _RENAMED.items()})}, at_ms FROM one_tap_moves WHERE ladder_round = 1")
    op.drop_table("one_tap_moves")
    op.rename_table("one_tap_moves_o", "one_tap_moves")
