"""What the ladder asks the outside world: who sits in a seat for this place now.

How this works: the ladder core names a `Seat` and a `Where`; a `Roster` (implemented in backend/sites/roster.py
from the site directory's shifts) answers with a `SeatFill`: the contacts to page and how the seat was filled
(the holder, their deputy, or nobody). The core never reads a clock or a file: `at_ms` is an argument.

`CONSOLE` is the command room's live console, staffed around the clock (GB 25506): the last resort that makes
sure an alarm never ends up with nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from alerting.directory import Seat

__all__ = ["CONSOLE", "Contact", "ContactKind", "Fill", "Roster", "SeatFill", "Where"]


class ContactKind(StrEnum):
    RESPONDER = "responder"  # someone on a roster (grid worker, building leader, fire station, volunteer, duty officer)
    FAMILY = "family"  # 家属
    NEIGHBOUR = "neighbour"  # 邻居
    CONSOLE = "console"  # the command room's console


@dataclass(frozen=True, slots=True)
class Contact:
    id: str  # responder id; family:<household>:<n>; neighbour:<household>:<n>; console
    name: str
    kind: ContactKind = ContactKind.RESPONDER
    phone: str | None = None


CONSOLE = Contact("console", "值班控制台", ContactKind.CONSOLE)


@dataclass(frozen=True, slots=True)
class Where:
    """Where an alarm is, as far as routing needs to know."""

    community: str | None = None
    grid: str | None = None
    building: str | None = None
    unit: int | None = None
    household: str | None = None
    vulnerable: bool = False


class Fill(StrEnum):
    HOLDER = "holder"  # the person on the shift
    DEPUTY = "deputy"  # the holder is away; the shift's deputy stands in
    VACANT = "vacant"  # nobody: the ladder moves on, and records it


@dataclass(frozen=True, slots=True)
class SeatFill:
    contacts: tuple[Contact, ...]
    via: Fill
    note: str = ""  # why, for the record: "c01-g1-w1 on leave; deputy c01-g1-w2"


class Roster(Protocol):
    def fill(self, seat: Seat, where: Where, at_ms: int, *, skill: str | None = None, exclude: frozenset[str] = frozenset()) -> SeatFill:
        """Who to page for `seat` at `where` now. Volunteers come nearest first, `exclude`d ids left out."""
        ...
