"""The SOS call-back (回访): the desk the console and the responder's phone use (backend.callbacks.service)."""

from backend.callbacks.service import (
    OUTCOME_ZH,
    CallbackConflict,
    CallbackDesk,
    CallbackDeskError,
    CallbackInvalid,
    CallbackNotFound,
)

__all__ = ["OUTCOME_ZH", "CallbackConflict", "CallbackDesk", "CallbackDeskError", "CallbackInvalid", "CallbackNotFound"]
