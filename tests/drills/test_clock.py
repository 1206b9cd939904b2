"""Waiting on a drill's compressed clock: a deadline of the system under drill (a ladder rung, a patrol) is slept in
drill time, not `speed` times longer."""

from __future__ import annotations

from backend.clock import SystemClock, VirtualClock, wall_seconds
from simulators.drill import DrillClock


def test_wall_seconds_follow_the_clocks_speed() -> None:
    assert wall_seconds(SystemClock(), 2_000) == 2.0
    assert wall_seconds(VirtualClock(), 2_000) == 2.0
    assert wall_seconds(DrillClock(speed=10), 60_000) == 6.0, "a 60 s rung deadline at 10x is 6 s of real waiting"
    assert wall_seconds(DrillClock(speed=10), -5_000) == 0.0, "an overdue deadline is not waited for"
