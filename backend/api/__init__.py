"""The HTTP API and the console."""

from backend.api.app import ApiDeps, create_app

__all__ = ["ApiDeps", "create_app"]
