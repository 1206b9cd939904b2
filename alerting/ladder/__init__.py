"""The escalation ladder: policies as data and the pure (state, event, now) -> (state, actions) core.

No I/O here; backend/escalation persists the state and carries the actions out, backend/sites/roster.py
answers "who sits in this seat now". Field progress is the lifecycle's (alerting.lifecycle): the ladder observes
the alarm's committed field states and has only two events of its own, `decline` and `verify`.
"""

from alerting.ladder.engine import (
    AlarmFacts,
    EscalationState,
    LadderAction,
    LadderError,
    Note,
    NoteKind,
    Notify,
    NotifyReason,
    RungStatus,
    advance,
    decline,
    next_due,
    observe,
    raise_severity,
    reopen,
    rung_status,
    start,
    stop,
    timers,
    verify,
)
from alerting.ladder.policy import DEFAULT_POLICIES_RESOURCE, Policy, PolicyError, PolicySet, Rung, Seat, parse_policies
from alerting.ladder.targets import CONSOLE, Contact, ContactKind, Fill, Roster, SeatFill, Where

__all__ = [
    "CONSOLE",
    "DEFAULT_POLICIES_RESOURCE",
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
    "Roster",
    "Rung",
    "RungStatus",
    "Seat",
    "SeatFill",
    "Where",
    "advance",
    "decline",
    "next_due",
    "observe",
    "parse_policies",
    "raise_severity",
    "reopen",
    "rung_status",
    "start",
    "stop",
    "timers",
    "verify",
]
