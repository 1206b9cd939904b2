"""The command room's duty work (issue 17): roster overrides the ladder resolves from, officers' shifts, the
shift handover (交接班), and one audit view. docs/duty.md describes it; backend/api/console_duty.py serves it."""

from backend.duty.audit import audit_view
from backend.duty.service import DutyConflict, DutyError, DutyNotFound, DutyRefused, DutyService, OverrideRequest
from backend.duty.store import DutyStore

__all__ = ["DutyConflict", "DutyError", "DutyNotFound", "DutyRefused", "DutyService", "DutyStore", "OverrideRequest", "audit_view"]
