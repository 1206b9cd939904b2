"""The alarm lifecycle: ONE transition table, (state, move) -> state.

How this works (after h11's `_state.py`): `TRANSITIONS` is the whole truth. `next_state(state, move)` looks a
move up and raises `IllegalMove` when the table has no entry; nothing else in the project decides where an
alarm may go. The Mermaid diagram in docs/lifecycle.md is generated from this table by `mermaid()`, and a
test keeps the file in step.

Invariants:
- an alarm is *open* in every state except CLOSED, FALSE_ALARM and ARCHIVED; one open alarm per key;
- `PERSON_ONLY_MOVES` (closing, calling it a false alarm) need a person as actor, never the system;
- `RESOLVE` (the system closing a recovered alarm by itself) is never allowed on a life-safety alarm;
  those close only through a person, or a device clear moves them to AWAITING_VERIFICATION.

Exceptions:

    LifecycleError
     ├── IllegalMove        (state, move) is not in the table
     └── ActorRequired      a person must make this move (life safety, closing)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from alerting.errors import AlertingError

__all__ = [
    "CLOSED_STATES",
    "FIELD_MOVES",
    "FIELD_ORDER",
    "OPEN_STATES",
    "PERSON_ONLY_MOVES",
    "SYSTEM_ACTOR",
    "TRANSITIONS",
    "ActorRequired",
    "AlarmState",
    "IllegalMove",
    "LifecycleError",
    "Move",
    "check_actor",
    "field_rank",
    "field_state_of",
    "mermaid",
    "next_state",
]


class AlarmState(StrEnum):
    RAISED = "raised"  # 报警
    NOTIFIED = "notified"  # 已通知
    ACKNOWLEDGED = "acknowledged"  # 我已收到
    EN_ROUTE = "en_route"  # 出发
    ON_SCENE = "on_scene"  # 到场
    HANDLED = "handled"  # 处置完成
    CLOSED = "closed"  # 复核关闭 (verified and closed)
    ARCHIVED = "archived"  # 归档
    FALSE_ALARM = "false_alarm"  # 误报
    SUPPRESSED = "suppressed"  # caused by another open alarm (a power cut takes cameras down)
    SILENCED = "silenced"  # maintenance window, with an expiry and an author
    AWAITING_VERIFICATION = "awaiting_verification"  # the device cleared; a person must verify


class Move(StrEnum):
    NOTIFY = "notify"
    ACKNOWLEDGE = "acknowledge"
    DEPART = "depart"
    ARRIVE = "arrive"
    FINISH = "finish"
    VERIFY_CLOSE = "verify_close"
    ARCHIVE = "archive"
    MARK_FALSE = "mark_false"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    SILENCE = "silence"
    UNSILENCE = "unsilence"  # a person lifts the window, or it expires
    DEVICE_CLEAR = "device_clear"
    RECUR = "recur"  # the device alarms again while its clear awaits verification
    RESOLVE = "resolve"  # the system closes a recovered non-life-safety alarm


S = AlarmState
M = Move

TRANSITIONS: Final[dict[tuple[AlarmState, Move], AlarmState]] = {
    # the field states, in order
    (S.RAISED, M.NOTIFY): S.NOTIFIED,
    (S.RAISED, M.ACKNOWLEDGE): S.ACKNOWLEDGED,  # the duty officer saw it before a notice went out
    (S.NOTIFIED, M.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, M.DEPART): S.EN_ROUTE,
    (S.ACKNOWLEDGED, M.ARRIVE): S.ON_SCENE,  # the responder was already there
    (S.EN_ROUTE, M.ARRIVE): S.ON_SCENE,
    (S.ACKNOWLEDGED, M.FINISH): S.HANDLED,  # handled remotely (a call-back, a battery swapped by the resident)
    (S.EN_ROUTE, M.FINISH): S.HANDLED,
    (S.ON_SCENE, M.FINISH): S.HANDLED,
    (S.HANDLED, M.VERIFY_CLOSE): S.CLOSED,
    (S.AWAITING_VERIFICATION, M.VERIFY_CLOSE): S.CLOSED,
    (S.CLOSED, M.ARCHIVE): S.ARCHIVED,
    (S.FALSE_ALARM, M.ARCHIVE): S.ARCHIVED,
    # a person calls it a false alarm at any point before it is handled
    (S.RAISED, M.MARK_FALSE): S.FALSE_ALARM,
    (S.NOTIFIED, M.MARK_FALSE): S.FALSE_ALARM,
    (S.ACKNOWLEDGED, M.MARK_FALSE): S.FALSE_ALARM,
    (S.EN_ROUTE, M.MARK_FALSE): S.FALSE_ALARM,
    (S.ON_SCENE, M.MARK_FALSE): S.FALSE_ALARM,
    (S.AWAITING_VERIFICATION, M.MARK_FALSE): S.FALSE_ALARM,
    # cause suppresses effect
    (S.RAISED, M.SUPPRESS): S.SUPPRESSED,
    (S.NOTIFIED, M.SUPPRESS): S.SUPPRESSED,
    (S.SUPPRESSED, M.UNSUPPRESS): S.RAISED,
    # maintenance windows
    (S.RAISED, M.SILENCE): S.SILENCED,
    (S.NOTIFIED, M.SILENCE): S.SILENCED,
    (S.ACKNOWLEDGED, M.SILENCE): S.SILENCED,
    (S.SILENCED, M.UNSILENCE): S.RAISED,
    (S.SILENCED, M.DEVICE_CLEAR): S.AWAITING_VERIFICATION,  # the window ends; a life-safety device cleared during it
    # the device says it is over; a person verifies (life safety never closes by itself)
    (S.RAISED, M.DEVICE_CLEAR): S.AWAITING_VERIFICATION,
    (S.NOTIFIED, M.DEVICE_CLEAR): S.AWAITING_VERIFICATION,
    (S.ACKNOWLEDGED, M.DEVICE_CLEAR): S.AWAITING_VERIFICATION,
    (S.EN_ROUTE, M.DEVICE_CLEAR): S.AWAITING_VERIFICATION,
    (S.ON_SCENE, M.DEVICE_CLEAR): S.AWAITING_VERIFICATION,
    (S.AWAITING_VERIFICATION, M.RECUR): S.RAISED,
    # recovered technical alarms (communication lost, low battery...) close by themselves
    (S.RAISED, M.RESOLVE): S.CLOSED,
    (S.NOTIFIED, M.RESOLVE): S.CLOSED,
    (S.ACKNOWLEDGED, M.RESOLVE): S.CLOSED,
    (S.SUPPRESSED, M.RESOLVE): S.CLOSED,
    (S.SILENCED, M.RESOLVE): S.CLOSED,
    (S.AWAITING_VERIFICATION, M.RESOLVE): S.CLOSED,
}

CLOSED_STATES: Final = frozenset({S.CLOSED, S.FALSE_ALARM, S.ARCHIVED})
# The field states people reach, in order (a later one implies the earlier ones); every move of the table
# between two of them goes forward. The escalation ladder reads its field progress from here and from the table.
FIELD_ORDER: Final[tuple[AlarmState, ...]] = (S.ACKNOWLEDGED, S.EN_ROUTE, S.ON_SCENE, S.HANDLED, S.CLOSED)


def _field_moves() -> dict[Move, AlarmState]:
    """Each move that leads to exactly one field state, read from the table."""
    targets: dict[Move, set[AlarmState]] = {}
    for (_src, move), dst in TRANSITIONS.items():
        targets.setdefault(move, set()).add(dst)
    return {m: next(iter(d)) for m, d in targets.items() if len(d) == 1 and next(iter(d)) in FIELD_ORDER}


# The field moves (acknowledge -> acknowledged, depart -> en_route, arrive -> on_scene, finish -> handled,
# verify_close -> closed), derived from the table: the one vocabulary of field progress, for the ladder too.
FIELD_MOVES: Final[dict[Move, AlarmState]] = _field_moves()
OPEN_STATES: Final = frozenset(set(AlarmState) - CLOSED_STATES)
PERSON_ONLY_MOVES: Final = frozenset({M.VERIFY_CLOSE, M.MARK_FALSE, M.FINISH, M.ARRIVE, M.DEPART, M.ACKNOWLEDGE})
SYSTEM_ACTOR: Final = "system"


class LifecycleError(AlertingError):
    """Base of the lifecycle's errors."""


class IllegalMove(LifecycleError):
    def __init__(self, state: AlarmState, move: Move, why: str = "") -> None:
        self.state, self.move = state, move
        super().__init__(why or f"an alarm in state {state.value!r} cannot take the move {move.value!r}")


class ActorRequired(LifecycleError):
    def __init__(self, move: Move, why: str) -> None:
        self.move = move
        super().__init__(why)


def next_state(state: AlarmState, move: Move) -> AlarmState:
    """The state after `move`, or IllegalMove (nothing changes: the caller still holds the old state)."""
    try:
        return TRANSITIONS[(state, move)]
    except KeyError:
        raise IllegalMove(state, move) from None


def field_rank(state: AlarmState | None) -> int:
    """How far along FIELD_ORDER a state is: 0 for none (or a state off the field path), 1 for acknowledged ... 5
    for verified and closed."""
    return FIELD_ORDER.index(state) + 1 if state in FIELD_ORDER else 0


def field_state_of(move: Move | str) -> AlarmState | None:
    """The field state a move reaches (acknowledge -> acknowledged ...), None for a move off the field path."""
    try:
        return FIELD_MOVES.get(Move(move))
    except ValueError:
        return None


def check_actor(move: Move, actor: str, *, life_safety: bool) -> None:
    """Raise unless `actor` may make `move` on an alarm of this kind."""
    if not actor.strip():
        raise ActorRequired(move, "every move needs an actor")
    if move in PERSON_ONLY_MOVES and actor == SYSTEM_ACTOR:
        raise ActorRequired(move, f"only a person may {move.value} an alarm")
    if move is M.RESOLVE and life_safety:
        raise ActorRequired(move, "a life-safety alarm never closes by itself: a person verifies and closes it")


def mermaid() -> str:
    """The state diagram, generated from TRANSITIONS (docs/lifecycle.md embeds this text)."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.RAISED.value}"]
    for (src, move), dst in TRANSITIONS.items():
        lines.append(f"    {src.value} --> {dst.value}: {move.value}")
    lines.append(f"    {S.ARCHIVED.value} --> [*]")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate the diagram for docs/lifecycle.md
    print(mermaid(), end="")
