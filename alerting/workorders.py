"""Hazard work orders (隐患整改): ONE transition table, (state, move) -> state, and the pure rules around it.

How this works (like alerting.lifecycle, after h11's `_state.py`): `TRANSITIONS` is the whole truth about where
an order may go. `next_state(state, move)` looks a move up and raises `IllegalOrderMove` when the table has no
entry; `check_move()` adds the rules a move carries (a reason to cancel or to send work back, an assignee to
assign, a photo of the rectified hazard to finish). Nothing here reads a clock or a database: the backend
(backend.workorders) stores the order and its audit and calls these functions with `now`. The Mermaid diagram
in docs/workorders.md is generated from the table (`.venv/bin/python -m alerting.workorders`); a test keeps
the file in step.

The flow of a real 隐患整改: the duty officer opens an order (from an electrical pre-warning or any alarm, or
standalone) → assigns it to a person on the site directory (派单) → the assignee starts the work (开始整改) →
finishes with a photo (整改完成) → a person re-inspects: passes (复查合格) or sends it back to work (复查不合格,
with a reason) → the order is closed (销号). Any order not yet re-inspected may be cancelled with a reason
(撤销: a duplicate, a false pre-warning). Reassigning (改派) is allowed while the work has not been finished.

Time: an order's due time is its creation time plus the hours its severity allows (`due_ms`, hours from
settings). `is_overdue(state, due_ms, now)` holds while the rectification is still owed (open, assigned, in
progress) and its due time has passed; `escalation_due()` says whether the overdue order has not yet been
escalated for its current due time, so a restart re-derives the same decision from the stored order and `now`
and escalates each due time once. The escalation goes to the assignee's supervisor (`supervisor_of`): a
building or unit leader, volunteer or fire-station member is supervised by the grid worker of the order's grid;
a grid worker (and an order nobody was assigned) by the community's duty officers (社区值班室).

Exceptions:

    WorkOrderError
     ├── IllegalOrderMove    (state, move) is not in the table
     └── OrderMoveRefused    the move needs something it lacks (a reason, an assignee, a photo, a person)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from alerting.directory import Seat
from alerting.errors import AlertingError

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "MOVE_ZH",
    "STATE_ZH",
    "TRANSITIONS",
    "IllegalOrderMove",
    "OrderMove",
    "OrderMoveRefused",
    "OrderState",
    "Supervisor",
    "WorkOrderError",
    "check_move",
    "due_ms",
    "escalation_due",
    "is_overdue",
    "mermaid",
    "moves_from",
    "next_state",
    "supervisor_of",
]

HOUR_MS: Final = 3_600_000
SYSTEM_ACTOR: Final = "system"


class OrderState(StrEnum):
    OPEN = "open"  # 待派单
    ASSIGNED = "assigned"  # 已派单
    IN_PROGRESS = "in_progress"  # 整改中
    DONE = "done"  # 整改完成，待复查
    REINSPECTED = "reinspected"  # 复查合格
    CLOSED = "closed"  # 已销号
    CANCELLED = "cancelled"  # 已撤销


class OrderMove(StrEnum):
    ASSIGN = "assign"  # 派单
    REASSIGN = "reassign"  # 改派
    START = "start"  # 开始整改
    FINISH = "finish"  # 整改完成 (with a photo)
    REINSPECT = "reinspect"  # 复查合格
    REJECT = "reject"  # 复查不合格，退回整改 (with a reason)
    CLOSE = "close"  # 销号
    CANCEL = "cancel"  # 撤销 (with a reason)


S = OrderState
M = OrderMove

TRANSITIONS: Final[dict[tuple[OrderState, OrderMove], OrderState]] = {
    (S.OPEN, M.ASSIGN): S.ASSIGNED,
    (S.ASSIGNED, M.REASSIGN): S.ASSIGNED,
    (S.IN_PROGRESS, M.REASSIGN): S.ASSIGNED,  # the new assignee starts again
    (S.ASSIGNED, M.START): S.IN_PROGRESS,
    (S.IN_PROGRESS, M.FINISH): S.DONE,
    (S.DONE, M.REINSPECT): S.REINSPECTED,
    (S.DONE, M.REJECT): S.IN_PROGRESS,  # re-inspection failed: back to the same assignee's work
    (S.REINSPECTED, M.CLOSE): S.CLOSED,
    (S.OPEN, M.CANCEL): S.CANCELLED,
    (S.ASSIGNED, M.CANCEL): S.CANCELLED,
    (S.IN_PROGRESS, M.CANCEL): S.CANCELLED,
    (S.DONE, M.CANCEL): S.CANCELLED,
}

FINAL_STATES: Final = frozenset({S.CLOSED, S.CANCELLED})
# The rectification is still owed in these states: an order here past its due time is overdue.
ACTIVE_STATES: Final = frozenset({S.OPEN, S.ASSIGNED, S.IN_PROGRESS})
NOTE_REQUIRED: Final = frozenset({M.CANCEL, M.REJECT})
ASSIGNEE_REQUIRED: Final = frozenset({M.ASSIGN, M.REASSIGN})
PHOTO_REQUIRED: Final = frozenset({M.FINISH})

STATE_ZH: Final[dict[OrderState, str]] = {
    S.OPEN: "待派单", S.ASSIGNED: "已派单", S.IN_PROGRESS: "整改中", S.DONE: "整改完成待复查", S.REINSPECTED: "复查合格",
    S.CLOSED: "已销号", S.CANCELLED: "已撤销",
}
MOVE_ZH: Final[dict[OrderMove, str]] = {
    M.ASSIGN: "派单", M.REASSIGN: "改派", M.START: "开始整改", M.FINISH: "整改完成", M.REINSPECT: "复查合格",
    M.REJECT: "复查不合格（退回整改）", M.CLOSE: "销号", M.CANCEL: "撤销",
}


class WorkOrderError(AlertingError):
    """Base of the work orders' errors; each carries a Chinese and an English sentence for a person."""

    def __init__(self, zh: str, en: str) -> None:
        self.zh, self.en = zh, en
        super().__init__(en)

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class IllegalOrderMove(WorkOrderError):
    def __init__(self, state: OrderState, move: OrderMove) -> None:
        self.state, self.move = state, move
        allowed = "、".join(MOVE_ZH[m] for m in moves_from(state)) or "无"
        super().__init__(f"工单当前为“{STATE_ZH[state]}”，不能“{MOVE_ZH[move]}”；此时可做：{allowed}",
                         f"a work order in state {state.value!r} cannot take the move {move.value!r}; "
                         f"allowed now: {', '.join(m.value for m in moves_from(state)) or 'none'}")


class OrderMoveRefused(WorkOrderError):
    def __init__(self, move: OrderMove, zh: str, en: str) -> None:
        self.move = move
        super().__init__(zh, en)


def next_state(state: OrderState, move: OrderMove) -> OrderState:
    """The state after `move`, or IllegalOrderMove (nothing changes: the caller still holds the old state)."""
    try:
        return TRANSITIONS[(state, move)]
    except KeyError:
        raise IllegalOrderMove(state, move) from None


def moves_from(state: OrderState) -> tuple[OrderMove, ...]:
    """The moves the table allows from `state`, in table order (the console's buttons)."""
    return tuple(m for (s, m) in TRANSITIONS if s is state)


def check_move(state: OrderState, move: OrderMove, *, actor: str, note: str = "", assignee: str | None = None,
               photos: int = 0, require_photo_to_finish: bool = True) -> OrderState:
    """The state after `move` if every rule of the move holds; IllegalOrderMove or OrderMoveRefused otherwise."""
    new = next_state(state, move)
    if not actor.strip() or actor == SYSTEM_ACTOR:
        raise OrderMoveRefused(move, "工单的每一步都须由具体的人操作", "every move of a work order needs a person as actor")
    if move in NOTE_REQUIRED and len(note.strip()) < 2:
        raise OrderMoveRefused(move, f"“{MOVE_ZH[move]}”须写明原因（至少 2 个字）", f"{move.value} needs a reason (at least 2 characters)")
    if move in ASSIGNEE_REQUIRED and not (assignee or "").strip():
        raise OrderMoveRefused(move, f"“{MOVE_ZH[move]}”须选择整改责任人", f"{move.value} needs an assignee")
    if move in PHOTO_REQUIRED and require_photo_to_finish and photos < 1:
        raise OrderMoveRefused(move, "整改完成须先上传至少一张整改后的现场照片", "finishing needs at least one photo of the rectified hazard")
    return new


def due_ms(severity: str, created_ms: int, hours_by_severity: Mapping[str, float], default_hours: float) -> int:
    """When the rectification is due: the creation time plus the hours the order's severity allows."""
    return created_ms + round(hours_by_severity.get(severity, default_hours) * HOUR_MS)


def is_overdue(state: OrderState, due_at_ms: int, now_ms: int) -> bool:
    """The rectification is still owed and its due time has passed."""
    return state in ACTIVE_STATES and now_ms >= due_at_ms


def escalation_due(state: OrderState, due_at_ms: int, escalated_for_due_ms: int | None, now_ms: int) -> bool:
    """Overdue and not yet escalated for this due time (a new due time after a reassignment escalates anew, once)."""
    return is_overdue(state, due_at_ms, now_ms) and escalated_for_due_ms != due_at_ms


@dataclass(frozen=True, slots=True)
class Supervisor:
    """The seat an overdue order climbs to, over a scope (a grid id or a community id)."""

    seat: Seat
    scope: str


def supervisor_of(assignee_role: str | None, grid: str | None, community: str | None) -> Supervisor | None:
    """Who supervises the assignee: the grid worker of the order's grid for those below the grid (building and
    unit leaders, volunteers, fire-station members); the community's duty officers for a grid worker, a duty
    officer, or an order nobody was assigned. None when the order has no place to climb to."""
    below_grid = assignee_role in ("building_leader", "unit_leader", "volunteer", "fire_station_head", "fire_station_member")
    if below_grid and grid:
        return Supervisor(Seat.GRID_WORKER, grid)
    if community:
        return Supervisor(Seat.DUTY_OFFICER, community)
    return Supervisor(Seat.GRID_WORKER, grid) if grid else None


def mermaid() -> str:
    """The state diagram, generated from TRANSITIONS (docs/workorders.md embeds this text)."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.OPEN.value}"]
    for (src, move), dst in TRANSITIONS.items():
        lines.append(f"    {src.value} --> {dst.value}: {move.value}")
    lines += [f"    {s.value} --> [*]" for s in (S.CLOSED, S.CANCELLED)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate the diagram for docs/workorders.md
    print(mermaid(), end="")
