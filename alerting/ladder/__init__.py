"""The escalation ladder: policies as data and the pure (state, event, now) -> (state, actions) core.

No I/O here; backend/escalation persists the state and carries the actions out, backend/sites/roster.py
answers "who sits in this seat now".
"""

from alerting.ladder.engine import (
    AdvanceAlarm,
    AlarmFacts,
    EscalationState,
    LadderAction,
    LadderError,
    Note,
    NoteKind,
    Notify,
    NotifyReason,
    Response,
    advance,
    next_due,
    respond,
    start,
    stop,
    timers,
)
from alerting.ladder.policy import DEFAULT_POLICIES_RESOURCE, Policy, PolicyError, PolicySet, Rung, Seat, parse_policies
from alerting.ladder.targets import CONSOLE, Contact, ContactKind, Fill, Roster, SeatFill, Where

__all__ = [
    "CONSOLE",
    "DEFAULT_POLICIES_RESOURCE",
    "AdvanceAlarm",
    "AlarmFacts",
    "Contact",
    "ContactKind",
    "EscalationState",
    "Fill",
    "LadderAction",
    "LadderError",
    "Note",
    "NoteKind",
    "Notify",
    "NotifyReason",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Response",
    "Roster",
    "Rung",
    "Seat",
    "SeatFill",
    "Where",
    "advance",
    "next_due",
    "parse_policies",
    "respond",
    "start",
    "stop",
    "timers",
]
