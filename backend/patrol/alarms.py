"""Patrol alarms: `patrol_missed` on `gateway:<id>`, for the platform's owner.

How this works: `PatrolAlarms` turns the patrol scheduler's misses and returns into signals and hands them to
the alarm service (`AlarmService.signal`): the same alarm book, lock, transaction and listeners (the ladder,
the live feed) as every other alarm, so a move by the ladder or a person on a patrol alarm and the next miss
never work from two copies of it. A miss signals RAISE (the first opens the alarm, later ones count
occurrences); any answer signals CLEAR, which resolves an open alarm (a technical alarm, not life safety)
and does nothing otherwise, so an alarm left open across a restart clears on the gateway's first answer.
Severity is major, and the alarm's place is the gateway (and its building): it is the platform's own
health, routed to whoever owns the platform, not to a grid worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from alerting.model import Action, Place, Severity, Signal, SignalKind
from backend.patrol.book import PatrolMiss, PatrolReturn
from backend.sites.model import SiteDirectory

__all__ = ["PATROL_MISSED", "PatrolAlarms", "SignalSink"]

PATROL_MISSED = "patrol_missed"


def _hhmm(ms: int | None) -> str:
    return "never" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class SignalSink(Protocol):
    async def signal(self, sig: Signal, now_ms: int | None = None) -> Sequence[Action]: ...


class PatrolAlarms:
    def __init__(self, alarms: SignalSink, sites: SiteDirectory | None = None) -> None:
        self.alarms = alarms  # the alarm service
        self.sites = sites

    def _place(self, gateway: str) -> tuple[Place, str]:
        gw = self.sites.gateways.get(gateway) if self.sites else None
        building = gw.building if gw else None
        b = self.sites.buildings.get(building) if self.sites and building else None
        return Place(gateway=gateway, building=building), (gw.name if gw and gw.name else gateway) + (f"（{b.name}）" if b else "")

    async def patrol_missed(self, miss: PatrolMiss, now_ms: int) -> None:
        place, name = self._place(miss.gateway)
        sig = Signal(SignalKind.RAISE, PATROL_MISSED, f"gateway:{miss.gateway}", miss.deadline_ms, Severity.MAJOR,
                     title=f"巡检未返回 · {name}", place=place,
                     detail=f"patrol {miss.patrol_id} sent {_hhmm(miss.sent_ms)} did not come back by {_hhmm(miss.deadline_ms)}; "
                            f"{miss.consecutive} in a row; last good patrol {_hhmm(miss.last_ok_ms)}")
        await self.alarms.signal(sig, now_ms)

    async def patrol_returned(self, ret: PatrolReturn, now_ms: int) -> None:
        sig = Signal(SignalKind.CLEAR, PATROL_MISSED, f"gateway:{ret.gateway}", ret.returned_ms,
                     detail=f"patrol {ret.patrol_id} came back after {ret.round_trip_ms} ms")
        await self.alarms.signal(sig, now_ms)
