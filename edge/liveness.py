"""Liveness: which devices are online, from what they send and what their dialect says about them (pure).

How this works: every configured device has an expected reporting interval and a number of misses after
which silence means offline (cameras: 60 s × 3, GB/T 28181; smoke detectors: daily). Time is an argument
(`now_ms`), never read here, so the rules run the same on a virtual clock.

    heard(device)        any report from the device: it is online (a transition if it was not)
    observe(device, s)   the dialect's own availability (Last Will, bridge, birth message): forwarded only
                         when it changes what we knew, so retained repeats are not resent
    rearm(device)        the bridge in front of it is back: its silence clock starts now
    check()              devices whose silence passed interval × misses become OFFLINE

A device that is UNKNOWN (its bridge is gone) or DISABLED (switched off on purpose) is never declared
offline by silence: the cause is already reported and one dead bridge must not become fifty alarms.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from broker.ids import DeviceId
from broker.kinds import AvailabilityState

__all__ = ["Expectation", "Liveness", "Transition"]

_SILENCE_WATCHED = (None, AvailabilityState.ONLINE)  # states in which silence can make a device offline


@dataclass(frozen=True, slots=True)
class Expectation:
    device: DeviceId
    interval_s: float
    misses: int

    @property
    def deadline_ms(self) -> int:
        return round(self.interval_s * self.misses * 1000)


@dataclass(frozen=True, slots=True)
class Transition:
    device: DeviceId
    state: AvailabilityState
    reason: str


@dataclass(slots=True)
class _Track:
    expect: Expectation
    state: AvailabilityState | None  # None: not known since the agent started
    since_ms: int  # last report, or when the clock was (re)armed


class Liveness:
    def __init__(self, expectations: Iterable[Expectation], now_ms: int) -> None:
        self._tracks = {e.device: _Track(e, None, now_ms) for e in expectations}
        self._undo: dict[DeviceId, tuple[AvailabilityState | None, int]] | None = None

    @contextlib.contextmanager
    def staged(self) -> Iterator[None]:
        """Changes made inside the block are undone if it raises: the messages they made were not stored, so the
        next report (or check) must make the same transition again rather than find it already made."""
        self._undo = {}
        try:
            yield
        except BaseException:
            for device, (state, since_ms) in self._undo.items():
                track = self._tracks[device]
                track.state, track.since_ms = state, since_ms
            raise
        finally:
            self._undo = None

    def _touch(self, device: DeviceId, track: _Track) -> None:
        if self._undo is not None and device not in self._undo:
            self._undo[device] = (track.state, track.since_ms)

    def __contains__(self, device: object) -> bool:
        return device in self._tracks

    def state(self, device: DeviceId) -> AvailabilityState | None:
        return self._tracks[device].state

    def heard(self, device: DeviceId, now_ms: int) -> Transition | None:
        track = self._tracks.get(device)
        if track is None:
            return None
        self._touch(device, track)
        track.since_ms = max(track.since_ms, now_ms)
        if track.state in (AvailabilityState.ONLINE, AvailabilityState.DISABLED):
            return None
        before = track.state
        track.state = AvailabilityState.ONLINE
        return Transition(device, AvailabilityState.ONLINE, "reporting" if before is None else f"reporting again (was {before.value})")

    def observe(self, device: DeviceId, state: AvailabilityState, now_ms: int) -> bool:
        """The dialect says the device is `state`; True if that is news worth forwarding."""
        track = self._tracks.get(device)
        if track is None:
            return True
        self._touch(device, track)
        changed = track.state is not state
        track.state = state
        if state is AvailabilityState.ONLINE:
            track.since_ms = max(track.since_ms, now_ms)
        return changed

    def rearm(self, device: DeviceId, now_ms: int) -> None:
        track = self._tracks.get(device)
        if track is not None and track.state is AvailabilityState.UNKNOWN:
            self._touch(device, track)
            track.state = None
            track.since_ms = now_ms

    def check(self, now_ms: int) -> list[Transition]:
        out = []
        for device, track in self._tracks.items():
            if track.state in _SILENCE_WATCHED and now_ms - track.since_ms > track.expect.deadline_ms:
                self._touch(device, track)
                track.state = AvailabilityState.OFFLINE
                e = track.expect
                out.append(
                    Transition(
                        device,
                        AvailabilityState.OFFLINE,
                        f"silent for {(now_ms - track.since_ms) / 1000:.0f} s: {e.misses} missed reports of every {e.interval_s:g} s",
                    )
                )
        return out

    def summary(self) -> dict[str, int]:
        counts = Counter(t.state.value if t.state else "pending" for t in self._tracks.values())
        return dict(sorted(counts.items()))
