"""What one simulation step produces: readings in bulk, and the rare discrete happenings one by one.

Readings stay numpy arrays (one row per report) until an encoder turns them into messages; events,
availability changes and patrols are few, so they are small frozen values. Times are Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from broker.kinds import AvailabilityState, DeviceKind, EventKind

__all__ = ["AvailabilityChange", "PatrolDue", "ReadingBatch", "SimEvent", "Step"]


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Reports of many devices of one class: row i is device `devices[i]` at time `t[i]`.

    A NaN in a reading column means "not measured in this report" and is left out of the message."""

    kind: DeviceKind
    devices: npt.NDArray[np.int64]  # indices into Fleet.devices
    t: npt.NDArray[np.float64]
    readings: dict[str, npt.NDArray[np.float64]]
    drill: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.devices)


@dataclass(frozen=True, slots=True)
class SimEvent:
    t: float
    device: str
    event: EventKind
    value: float | None = None
    detail: str | None = None
    needs_callback: bool = False
    drill: bool = False
    phantom: bool = False  # ground truth kept for reports: nobody pressed it (never on the wire)


@dataclass(frozen=True, slots=True)
class AvailabilityChange:
    t: float
    device: str
    state: AvailabilityState
    reason: str | None = None
    drill: bool = False


@dataclass(frozen=True, slots=True)
class PatrolDue:
    t: float
    gateway: str
    seq: int
    period_s: float


@dataclass(frozen=True, slots=True)
class Step:
    t0: float
    t1: float
    readings: tuple[ReadingBatch, ...]
    events: tuple[SimEvent, ...]
    availability: tuple[AvailabilityChange, ...]
    patrols: tuple[PatrolDue, ...]

    @property
    def message_count(self) -> int:
        return sum(len(b) for b in self.readings) + len(self.events) + len(self.availability) + len(self.patrols)
