"""The lifecycle table, move by move: every legal move works, every illegal move raises and changes nothing."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

from alerting.book import AlarmBook, replay, transition
from alerting.lifecycle import (
    CLOSED_STATES,
    OPEN_STATES,
    SYSTEM_ACTOR,
    TRANSITIONS,
    ActorRequired,
    AlarmState,
    IllegalMove,
    Move,
    mermaid,
    next_state,
)
from alerting.model import Alarm, AlarmKey, Place, Severity

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"
T0 = 1_767_225_600_000
OFFICER = "officer:zhang"
ALL_PAIRS = list(itertools.product(AlarmState, Move))
LEGAL = [(s, m) for s, m in ALL_PAIRS if (s, m) in TRANSITIONS]
ILLEGAL = [(s, m) for s, m in ALL_PAIRS if (s, m) not in TRANSITIONS]


def make_alarm(state: AlarmState, *, life_safety: bool = False) -> Alarm:
    return Alarm(
        id="A1", key=AlarmKey("device:d1", "tamper"), state=state, severity=Severity.MAJOR, life_safety=life_safety,
        title="t", place=Place(device="d1"), occurrences=1, first_seen_ms=T0, last_seen_ms=T0, raised_at_ms=T0,
        updated_ms=T0, audit_seq=1,
    )


def test_the_table_has_both_legal_and_illegal_moves() -> None:
    assert len(LEGAL) == len(TRANSITIONS) > 30
    assert len(ILLEGAL) > 100


@pytest.mark.parametrize(("state", "move"), LEGAL, ids=[f"{s}-{m}" for s, m in LEGAL])
def test_every_legal_move_lands_where_the_table_says(state: AlarmState, move: Move) -> None:
    alarm = make_alarm(state)
    after, entry = transition(alarm, move, OFFICER, T0 + 5, "note")
    assert after.state is TRANSITIONS[(state, move)]
    assert (entry.from_state, entry.to_state, entry.actor, entry.move, entry.seq) == (state, after.state, OFFICER, move.value, 1)
    assert after.audit_seq == 2


@pytest.mark.parametrize(("state", "move"), ILLEGAL, ids=[f"{s}-{m}" for s, m in ILLEGAL])
def test_every_illegal_move_raises_and_changes_nothing(state: AlarmState, move: Move) -> None:
    with pytest.raises(IllegalMove) as info:
        next_state(state, move)
    assert (info.value.state, info.value.move) == (state, move)
    if state in OPEN_STATES:
        book = AlarmBook()
        alarm = make_alarm(state)
        book.load([alarm])
        with pytest.raises(IllegalMove):
            book.move(alarm.id, move, OFFICER, T0 + 5, until_ms=T0 + 60_000)
        assert book.get(alarm.id) == alarm


def test_closed_states_are_the_only_ones_not_open() -> None:
    assert {AlarmState.CLOSED, AlarmState.FALSE_ALARM, AlarmState.ARCHIVED} == CLOSED_STATES
    assert not {m for (s, m) in TRANSITIONS if s is AlarmState.ARCHIVED}, "archived is the end"


@pytest.mark.parametrize("move", [Move.VERIFY_CLOSE, Move.MARK_FALSE])
def test_only_a_person_closes(move: Move) -> None:
    state = AlarmState.AWAITING_VERIFICATION
    alarm = make_alarm(state, life_safety=True)
    with pytest.raises(ActorRequired):
        transition(alarm, move, SYSTEM_ACTOR, T0)
    assert transition(alarm, move, OFFICER, T0)[0].state in CLOSED_STATES


def test_a_life_safety_alarm_never_resolves_by_itself() -> None:
    with pytest.raises(ActorRequired):
        transition(make_alarm(AlarmState.RAISED, life_safety=True), Move.RESOLVE, SYSTEM_ACTOR, T0)
    with pytest.raises(ActorRequired):
        transition(make_alarm(AlarmState.RAISED, life_safety=True), Move.RESOLVE, OFFICER, T0)
    assert transition(make_alarm(AlarmState.RAISED), Move.RESOLVE, SYSTEM_ACTOR, T0)[0].state is AlarmState.CLOSED


def test_the_full_field_path_replays_from_its_audit_log() -> None:
    alarm = make_alarm(AlarmState.RAISED)
    from alerting.model import AuditEntry

    log = [AuditEntry(alarm.id, 0, T0, SYSTEM_ACTOR, "raise", None, AlarmState.RAISED)]
    for i, move in enumerate([Move.NOTIFY, Move.ACKNOWLEDGE, Move.DEPART, Move.ARRIVE, Move.FINISH, Move.VERIFY_CLOSE, Move.ARCHIVE]):
        alarm, entry = transition(alarm, move, OFFICER if move is not Move.NOTIFY else SYSTEM_ACTOR, T0 + i, "")
        log.append(entry)
    assert alarm.state is AlarmState.ARCHIVED
    assert replay(log) is AlarmState.ARCHIVED
    with pytest.raises(IllegalMove):
        replay([log[0], log[2]])  # an entry that starts from a state the log is not in
    assert replay(log[:1]) is AlarmState.RAISED


def test_silence_needs_an_author_and_an_expiry() -> None:
    book = AlarmBook()
    alarm = make_alarm(AlarmState.RAISED)
    book.load([alarm])
    with pytest.raises(IllegalMove):
        book.move(alarm.id, Move.SILENCE, OFFICER, T0, until_ms=None)
    with pytest.raises(IllegalMove):
        book.move(alarm.id, Move.SILENCE, SYSTEM_ACTOR, T0, until_ms=T0 + 1000)
    assert book.get(alarm.id) == alarm
    [p] = book.move(alarm.id, Move.SILENCE, OFFICER, T0, note="replacing detector", until_ms=T0 + 3_600_000)
    assert (p.alarm.state, p.alarm.silenced_by, p.alarm.silenced_until_ms) == (AlarmState.SILENCED, OFFICER, T0 + 3_600_000)
    assert book.tick(T0 + 3_599_999) == []
    [p] = book.tick(T0 + 3_600_000)
    assert p.alarm.state is AlarmState.RAISED
    assert p.audit[0].move == "unsilence"


def test_the_docs_diagram_is_generated_from_the_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert m is not None, "docs/lifecycle.md must hold the mermaid diagram"
    assert m.group(1) == mermaid(), "regenerate: .venv/bin/python -m alerting.lifecycle > the mermaid block"
    # every state of the enum appears in the diagram
    for state in AlarmState:
        assert state.value in m.group(1)


def test_alarm_values_are_frozen() -> None:
    alarm = make_alarm(AlarmState.RAISED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        alarm.state = AlarmState.CLOSED  # type: ignore[misc]
