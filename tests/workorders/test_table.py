"""The work-order transition table (alerting.workorders): pure, no event loop, no clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.directory import Seat
from alerting.workorders import (
    ACTIVE_STATES,
    FINAL_STATES,
    TRANSITIONS,
    IllegalOrderMove,
    OrderMove,
    OrderMoveRefused,
    OrderState,
    Supervisor,
    check_move,
    due_ms,
    escalation_due,
    is_overdue,
    mermaid,
    moves_from,
    next_state,
    supervisor_of,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "workorders.md"
S, M = OrderState, OrderMove
H = 3_600_000


def test_the_whole_flow_from_open_to_closed_with_a_failed_reinspection() -> None:
    state = S.OPEN
    for move in (M.ASSIGN, M.START, M.FINISH, M.REJECT, M.FINISH, M.REINSPECT, M.CLOSE):
        state = next_state(state, move)
    assert state is S.CLOSED


@pytest.mark.parametrize("state", list(OrderState))
@pytest.mark.parametrize("move", list(OrderMove))
def test_a_move_the_table_lacks_raises_with_both_languages(state: OrderState, move: OrderMove) -> None:
    if (state, move) in TRANSITIONS:
        assert next_state(state, move) is TRANSITIONS[(state, move)]
        return
    with pytest.raises(IllegalOrderMove) as err:
        next_state(state, move)
    assert err.value.state is state
    assert err.value.move is move
    assert "工单当前为" in err.value.zh
    assert "cannot take" in err.value.en


def test_final_states_take_no_move_and_every_other_state_can_reach_an_end() -> None:
    assert all(not moves_from(s) for s in FINAL_STATES)
    for s in set(OrderState) - FINAL_STATES:
        seen, todo = {s}, [s]
        while todo:
            cur = todo.pop()
            for m in moves_from(cur):
                nxt = TRANSITIONS[(cur, m)]
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & FINAL_STATES, f"{s} cannot reach an end"


@given(st.lists(st.sampled_from(list(OrderMove)), max_size=30))
def test_random_moves_change_the_state_only_through_the_table(moves: list[OrderMove]) -> None:
    state = S.OPEN
    for m in moves:
        before = state
        try:
            state = next_state(state, m)
        except IllegalOrderMove:
            assert (before, m) not in TRANSITIONS
            assert state is before
        else:
            assert TRANSITIONS[(before, m)] is state


def test_the_rules_of_a_move() -> None:
    with pytest.raises(OrderMoveRefused, match="reason"):
        check_move(S.DONE, M.REJECT, actor="duty1", note=" ")
    assert check_move(S.DONE, M.REJECT, actor="duty1", note="插座仍松动") is S.IN_PROGRESS
    with pytest.raises(OrderMoveRefused, match="reason"):
        check_move(S.OPEN, M.CANCEL, actor="duty1")
    with pytest.raises(OrderMoveRefused, match="assignee"):
        check_move(S.OPEN, M.ASSIGN, actor="duty1")
    with pytest.raises(OrderMoveRefused, match="photo"):
        check_move(S.IN_PROGRESS, M.FINISH, actor="gw1", photos=0)
    assert check_move(S.IN_PROGRESS, M.FINISH, actor="gw1", photos=0, require_photo_to_finish=False) is S.DONE
    assert check_move(S.IN_PROGRESS, M.FINISH, actor="gw1", photos=1) is S.DONE
    with pytest.raises(OrderMoveRefused, match="person"):
        check_move(S.ASSIGNED, M.START, actor="system")
    with pytest.raises(IllegalOrderMove):  # the table first: a closed order refuses whatever the note says
        check_move(S.CLOSED, M.CANCEL, actor="duty1", note="重复工单")


def test_due_time_by_severity_and_overdue_only_while_the_work_is_owed() -> None:
    hours = {"critical": 24.0, "major": 72.0, "minor": 168.0}
    assert due_ms("critical", 0, hours, 72.0) == 24 * H
    assert due_ms("minor", 5, hours, 72.0) == 5 + 168 * H
    assert due_ms("unknown", 0, hours, 72.0) == 72 * H
    for s in OrderState:
        assert is_overdue(s, 100, 100) is (s in ACTIVE_STATES)
        assert not is_overdue(s, 100, 99)
    assert not is_overdue(S.DONE, 0, 10 * H), "finished work waiting for re-inspection is not the assignee's delay"


def test_escalation_is_due_once_per_due_time_from_the_stored_order_and_now() -> None:
    assert escalation_due(S.ASSIGNED, 100, None, 100)
    assert not escalation_due(S.ASSIGNED, 100, 100, 5_000), "escalated for this due time already (also after a restart)"
    assert escalation_due(S.ASSIGNED, 9_000, 100, 9_000), "a new due time (reassigned) escalates anew"
    assert not escalation_due(S.ASSIGNED, 100, None, 99)
    assert not escalation_due(S.CLOSED, 100, None, 5_000)


def test_the_supervisor_is_the_next_rung_up_from_the_assignee() -> None:
    assert supervisor_of("building_leader", "c01-g1", "c01") == Supervisor(Seat.GRID_WORKER, "c01-g1")
    assert supervisor_of("volunteer", "c01-g1", "c01") == Supervisor(Seat.GRID_WORKER, "c01-g1")
    assert supervisor_of("grid_worker", "c01-g1", "c01") == Supervisor(Seat.DUTY_OFFICER, "c01")
    assert supervisor_of(None, "c01-g1", "c01") == Supervisor(Seat.DUTY_OFFICER, "c01")
    assert supervisor_of("building_leader", None, "c01") == Supervisor(Seat.DUTY_OFFICER, "c01")
    assert supervisor_of("grid_worker", None, None) is None


def test_the_docs_diagram_is_generated_from_the_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert m is not None, "docs/workorders.md must hold the mermaid diagram"
    assert m.group(1) == mermaid(), "regenerate: .venv/bin/python -m alerting.workorders > the mermaid block"
