"""Helpers shared by the simulator tests."""

from __future__ import annotations

from simulators.fleet import Fleet
from simulators.records import ReadingBatch, SimEvent, Step

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC = 08:00 in Beijing


def run(fleet: Fleet, seconds: float, step_s: float = 60.0) -> list[Step]:
    """Advance a fleet by `seconds` of simulated time in steps of step_s."""
    steps = []
    end = fleet.t + seconds
    while fleet.t < end:
        steps.append(fleet.advance(min(end, fleet.t + step_s)))
    return steps


def events(steps: list[Step]) -> list[SimEvent]:
    return [e for s in steps for e in s.events]


def batches(steps: list[Step]) -> list[ReadingBatch]:
    return [b for s in steps for b in s.readings]
