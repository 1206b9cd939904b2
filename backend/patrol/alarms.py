"""Patrol alarms in the alarm store: `patrol_missed` on `gateway:<id>`, for the platform's owner.

How this works: `StorePatrolAlarms` keeps its own small `AlarmBook` (alerting.book, pure) for the one alarm
type it raises, loaded on `start()` with the open `patrol_missed` alarms from the store, so a restart keeps
one open alarm per gateway. A miss signals RAISE (the first opens the alarm, later ones count occurrences);
an answer after misses signals CLEAR, which resolves it (a technical alarm, not life safety). Actions are
written with `AlarmStore.apply` in one transaction, off the event loop. Its alarm ids start with `P` so they
never collide with the alarm service's. Severity is major, and the alarm's place is the gateway (and its
building): it is the platform's own health, routed to whoever owns the platform, not to a grid worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from alerting.book import AlarmBook
from alerting.model import Action, Place, Severity, Signal, SignalKind
from backend.alarms.store import AlarmStore
from backend.patrol.book import PatrolMiss, PatrolReturn
from backend.sites.model import SiteDirectory

__all__ = ["PATROL_MISSED", "StorePatrolAlarms"]

PATROL_MISSED = "patrol_missed"


def _hhmm(ms: int | None) -> str:
    return "never" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class StorePatrolAlarms:
    def __init__(self, store: AlarmStore, sites: SiteDirectory | None = None,
                 listener: Callable[[Sequence[Action]], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.sites = sites
        self.book: AlarmBook | None = None
        self.listener = listener  # told what was stored, like an AlarmService listener (the escalation bridge)

    async def start(self, now_ms: int) -> None:
        book = AlarmBook(id_prefix=f"P{now_ms:x}.")
        open_alarms = await asyncio.to_thread(self.store.open_alarms)
        book.load(a for a in open_alarms if a.alarm_type == PATROL_MISSED)
        self.book = book

    def _book(self) -> AlarmBook:
        if self.book is None:
            raise RuntimeError("call `await StorePatrolAlarms.start(now_ms)` first")
        return self.book

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
        await self._apply(self._book().signal(sig, now_ms))

    async def _apply(self, actions: Sequence[Action]) -> None:
        await asyncio.to_thread(self.store.apply, actions)
        if self.listener is not None and actions:
            await self.listener(actions)

    async def patrol_returned(self, ret: PatrolReturn, now_ms: int) -> None:
        sig = Signal(SignalKind.CLEAR, PATROL_MISSED, f"gateway:{ret.gateway}", ret.returned_ms,
                     detail=f"patrol {ret.patrol_id} came back after {ret.round_trip_ms} ms")
        await self._apply(self._book().signal(sig, now_ms))
