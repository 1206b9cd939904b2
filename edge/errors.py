"""Errors of the edge agent.

    EdgeError
    ├── ConfigError          the edge configuration file is missing, unreadable or invalid (says where and why)
    └── OutboxError          the durable outbox cannot be opened or written (disk full, corrupt file)

Device payloads never raise: an adapter returns a `Rejected` outcome instead, so one bad message cannot stop
the agent or the messages around it. Third-party errors (aiomqtt, sqlite3, yaml) are translated here at the
boundary and never leak inward.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "EdgeError", "OutboxError"]


class EdgeError(Exception):
    """Base of every error the edge package raises."""


class ConfigError(EdgeError):
    def __init__(self, path: Path | str, why: str) -> None:
        self.path = str(path)
        self.why = why
        super().__init__(f"edge configuration {self.path}: {why}")


class OutboxError(EdgeError):
    def __init__(self, path: Path | str, why: str) -> None:
        self.path = str(path)
        self.why = why
        super().__init__(f"outbox {self.path}: {why}")
