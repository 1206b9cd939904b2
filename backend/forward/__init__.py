"""转警 119: confirmed fires forwarded to the fire brigade's receiving system within 3 s, with a receipt (docs/forward.md).

The package's modules are imported by name (backend.forward.forwarder, .store, .timeline); this file imports
nothing, so backend/settings.py can take `backend.forward.settings` without pulling in the alarm side.
"""

__all__: list[str] = []
