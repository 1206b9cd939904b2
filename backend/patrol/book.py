"""The patrol book: which gateway gets a patrol command when, and which patrols came back (pure, no I/O).

How this works: a patrol (巡检) is a synthetic test the centre sends to each gateway (`patrol` command, its
`cmd_id` is the patrol id); the edge agent answers with a PatrolHeartbeat carrying that id, which travels the
whole uplink (edge → broker → ingest → alarm service) like any message. `PatrolBook` keeps, per gateway, when
its next patrol is due and which patrols are outstanding; time is always an argument.

`period_s` is the promise: a gateway whose uplink dies is reported at most `period_s` later. So patrols go
out every `period_s - window_s`, each must return within `window_s`: a gateway that stops answering just
after a good patrol is caught at the next deadline, (period - window) + window = period after it. Gateways
are staggered over the interval (a stable hash of the id) so the centre never sends them all at once.

Invariants: a patrol id is outstanding at most once; every outstanding patrol either returns or expires at
its deadline; `next_wakeup_ms` is the earliest moment anything can change; a late answer still counts as
the gateway being back (it clears the alarm) but never un-misses the patrol it answered.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from backend.settings import PatrolConfig

__all__ = ["PATROL_CEILING_S", "GatewayPatrolStatus", "PatrolBook", "PatrolMiss", "PatrolReturn", "PatrolSent", "PatrolSettings"]

PATROL_CEILING_S: Final = 7200.0  # GB 50440-2007: patrol between the centre and each site device at most every 2 h
_LATE_KEPT: Final = 10_000  # missed patrol ids remembered for late answers


@dataclass(frozen=True, slots=True)
class PatrolSettings:
    period_s: float = 3600.0  # the longest a dead uplink goes unreported
    window_s: float = 120.0  # how long an answer may take
    stagger: bool = True
    start_grace_s: float = 0.0  # no patrol this soon after start (gateways still reconnecting)

    @classmethod
    def of(cls, config: PatrolConfig) -> PatrolSettings:
        """The book's settings from the `[patrol]` section."""
        return cls(period_s=config.period_s, window_s=config.window_s, start_grace_s=config.start_grace_s)

    def __post_init__(self) -> None:
        if not 0 < self.period_s <= PATROL_CEILING_S:
            raise ValueError(f"period_s must be in (0, {PATROL_CEILING_S:g}]: the standard's patrol ceiling is 2 h")
        if not 0 < self.window_s < self.period_s:
            raise ValueError("window_s must be positive and shorter than period_s")
        if self.start_grace_s < 0:
            raise ValueError("start_grace_s must not be negative")

    @property
    def interval_ms(self) -> int:
        return round((self.period_s - self.window_s) * 1000)

    @property
    def window_ms(self) -> int:
        return round(self.window_s * 1000)


@dataclass(frozen=True, slots=True)
class PatrolSent:
    gateway: str
    patrol_id: str
    sent_ms: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class PatrolMiss:
    gateway: str
    patrol_id: str
    sent_ms: int
    deadline_ms: int
    consecutive: int  # misses in a row for this gateway, this one included
    last_ok_ms: int | None


@dataclass(frozen=True, slots=True)
class PatrolReturn:
    gateway: str
    patrol_id: str
    sent_ms: int
    returned_ms: int
    late: bool  # after its deadline (the patrol was already counted as missed)
    was_missing: bool  # the gateway had missed patrols before this answer

    @property
    def round_trip_ms(self) -> int:
        return self.returned_ms - self.sent_ms


@dataclass(frozen=True, slots=True)
class GatewayPatrolStatus:
    gateway: str
    next_due_ms: int
    outstanding: str | None
    last_ok_ms: int | None
    last_round_trip_ms: int | None
    consecutive_misses: int
    sent: int
    returned: int
    missed: int


class PatrolBook:
    def __init__(self, gateways: Iterable[str], settings: PatrolSettings, start_ms: int) -> None:
        self.settings = settings
        interval = settings.interval_ms
        self._next: dict[str, int] = {}
        for gw in sorted(set(gateways)):
            offset = zlib.crc32(gw.encode()) % interval if settings.stagger else 0
            self._next[gw] = start_ms + round(settings.start_grace_s * 1000) + offset
        self._out: dict[str, PatrolSent] = {}  # patrol id -> patrol
        self._out_by_gw: dict[str, str] = {}
        self._late: OrderedDict[str, PatrolSent] = OrderedDict()
        self._seq = 0
        self._last_ok: dict[str, int] = {}
        self._rtt: dict[str, int] = {}
        self._misses: dict[str, int] = dict.fromkeys(self._next, 0)
        self._counts: dict[str, list[int]] = {gw: [0, 0, 0] for gw in self._next}  # sent, returned, missed

    @property
    def gateways(self) -> list[str]:
        return list(self._next)

    def due(self, now_ms: int) -> list[PatrolSent]:
        """Patrols to send now. A gateway with one still outstanding gets none (its deadline will speak)."""
        out = []
        interval = self.settings.interval_ms
        for gw, at in self._next.items():
            if at > now_ms:
                continue
            behind = (now_ms - at) // interval + 1  # a late wake-up sends one patrol, not a burst
            self._next[gw] = at + behind * interval
            if gw in self._out_by_gw:
                continue
            self._seq += 1
            sent = PatrolSent(gw, f"patrol-{now_ms:x}-{self._seq}", now_ms, now_ms + self.settings.window_ms)
            self._out[sent.patrol_id] = sent
            self._out_by_gw[gw] = sent.patrol_id
            self._counts[gw][0] += 1
            out.append(sent)
        return out

    def answered(self, gateway: str, patrol_id: str, now_ms: int) -> PatrolReturn | None:
        """A PatrolHeartbeat with this patrol id arrived from `gateway`. None: not one of ours (or not this gateway's)."""
        sent = self._out.get(patrol_id)
        late = False
        if sent is None:
            sent = self._late.get(patrol_id)
            late = True
        if sent is None or sent.gateway != gateway:
            return None
        if late:
            del self._late[patrol_id]
        else:
            del self._out[patrol_id]
            self._out_by_gw.pop(gateway, None)
        was_missing = self._misses.get(gateway, 0) > 0
        self._misses[gateway] = 0
        self._last_ok[gateway] = now_ms
        self._rtt[gateway] = now_ms - sent.sent_ms
        self._counts[gateway][1] += 1
        return PatrolReturn(gateway, patrol_id, sent.sent_ms, now_ms, late, was_missing)

    def expire(self, now_ms: int) -> list[PatrolMiss]:
        """Outstanding patrols whose deadline has passed, now missed."""
        gone = [p for p in self._out.values() if p.deadline_ms <= now_ms]
        out = []
        for p in sorted(gone, key=lambda p: (p.deadline_ms, p.gateway)):
            del self._out[p.patrol_id]
            self._out_by_gw.pop(p.gateway, None)
            self._late[p.patrol_id] = p
            while len(self._late) > _LATE_KEPT:
                self._late.popitem(last=False)
            self._misses[p.gateway] += 1
            self._counts[p.gateway][2] += 1
            out.append(PatrolMiss(p.gateway, p.patrol_id, p.sent_ms, p.deadline_ms, self._misses[p.gateway], self._last_ok.get(p.gateway)))
        return out

    def next_wakeup_ms(self) -> int | None:
        times = list(self._next.values()) + [p.deadline_ms for p in self._out.values()]
        return min(times) if times else None

    def status(self) -> list[GatewayPatrolStatus]:
        return [GatewayPatrolStatus(gw, self._next[gw], self._out_by_gw.get(gw), self._last_ok.get(gw), self._rtt.get(gw), self._misses[gw],
                                    *self._counts[gw]) for gw in self._next]
