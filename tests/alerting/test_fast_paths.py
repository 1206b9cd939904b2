"""The core's storm fast paths decide exactly as the general forms they stand in for.

A device event's liveness and clock check take a scalar path (`Engine._seen_one`, issue 19: the column form's
array set-up cost ~0.1 ms a smoke alarm in a storm). It must decide exactly as the column form does: the same
actions and the same presence columns, for random histories of events, drills, skewed clocks, silence, blind
bridges and restarts from a cold start."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
import pytest

from alerting.engine import Engine
from alerting.model import Action, Persist, evolve
from broker.kinds import AvailabilityState, EventKind
from tests.alerting.site import DEVICES, T0, H, S, engine


def _columns(eng: Engine, i: int, now_ms: int, seen: int, drill: bool) -> list[Action]:
    """What on_event did before the scalar path: `_seen` and `_clock_check` on one-element columns."""
    dev, recv, d = np.array([i], dtype=np.int64), np.array([now_ms], dtype=np.int64), np.array([drill])
    return eng._seen(dev, recv, now_ms, d) + eng._clock_check(dev, np.array([seen], dtype=np.int64), recv, d, now_ms)


EVENTS = [EventKind.SMOKE_ALARM, EventKind.SMOKE_CLEAR, EventKind.TAMPER, EventKind.LOW_BATTERY, EventKind.SOS_PRESS]


def _history(rng: random.Random, eng: Engine) -> list[Action]:
    out: list[Action] = []
    now = T0
    for _ in range(60):
        now += rng.choice([S, 30 * S, 10 * 60 * S, 2 * H])
        d = rng.choice(DEVICES)
        roll = rng.random()
        if roll < 0.6:
            skew = rng.choice([0, 0, -20 * S, 20 * S, 15 * 60 * S])
            out += eng.on_event(d.id, rng.choice([d.gateway, d.gateway, "g9"]), rng.choice(EVENTS), now, seen_ms=now - skew,
                                drill=rng.random() < 0.2)
        elif roll < 0.8:
            state = rng.choice([AvailabilityState.ONLINE, AvailabilityState.OFFLINE, AvailabilityState.UNKNOWN])
            out += eng.on_availability(d.id, state, now, drill=rng.random() < 0.2)
        else:
            out += eng.tick(now)
    return out


def _presence(eng: Engine) -> dict[str, Any]:
    return {name: getattr(eng.presence, name).copy() for name in eng.presence._state}


@pytest.mark.parametrize("seed", range(40))
def test_the_scalar_path_decides_as_the_column_form(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    commissioned = seed % 2 == 0
    fast = engine(commissioned=commissioned)
    slow = engine(commissioned=commissioned)
    monkeypatch.setattr(slow, "_seen_one", lambda i, now_ms, seen, drill: _columns(slow, i, now_ms, seen, drill))
    a, b = _history(random.Random(seed), fast), _history(random.Random(seed), slow)
    assert a == b
    pa, pb = _presence(fast), _presence(slow)
    for name, col in pa.items():
        assert np.array_equal(col, pb[name]), name
    assert fast.gateways.heard.tolist() == slow.gateways.heard.tolist()
    assert fast._lost_drill == slow._lost_drill  # the drill's own presence: devices a drill reported offline


def test_evolve_is_dataclasses_replace_and_refuses_a_field_alarm_does_not_have() -> None:
    eng = engine()
    [alarm] = [a.alarm for a in eng.on_event("s1", "g1", EventKind.SMOKE_ALARM, T0 + S) if isinstance(a, Persist) and a.alarm.alarm_type == "smoke"]
    for changes in ({}, {"occurrences": 7, "updated_ms": T0 + 9}, {"detail": None, "recent_changes_ms": (1, 2)}):
        assert evolve(alarm, **changes) == dataclasses.replace(alarm, **changes)
    with pytest.raises(TypeError, match="occurences"):
        evolve(alarm, occurences=2)
