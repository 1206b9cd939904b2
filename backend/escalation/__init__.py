"""The escalation service: the ladder's state in the alarm store, timers re-derived, steps fired exactly once."""

from backend.escalation.runtime import EscalationRuntime, load_policies
from backend.escalation.service import EscalationService, StepReport, Timeline
from backend.escalation.settings import EscalationSettings
from backend.escalation.store import EscalationStore, StepConflict, UnknownEscalation

__all__ = [
    "EscalationRuntime",
    "EscalationService",
    "EscalationSettings",
    "EscalationStore",
    "StepConflict",
    "StepReport",
    "Timeline",
    "UnknownEscalation",
    "load_policies",
]
