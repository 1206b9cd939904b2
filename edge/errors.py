"""Errors of the edge agent.

    EdgeError
    ├── ConfigError          the edge configuration file is missing, unreadable or invalid (says where and why)
    └── OutboxError          the durable outbox cannot be opened or written (disk full, corrupt file)
        └── OutboxLocked     another agent (its PID named) holds the outbox: one agent per gateway

Device payloads never raise: an adapter returns a `Rejected` outcome instead, so one bad message cannot stop
the agent or the messages around it. Third-party errors (aiomqtt, sqlite3, yaml) are translated here at the
boundary and never leak inward.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "EdgeError", "OutboxError", "OutboxLocked"]


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


class OutboxLocked(OutboxError):
    """A second agent for the same outbox (a unit file and a manual run, a lost PID file): refused, not shared.

    Two agents on one outbox and one client id kick each other off the broker and re-forward every retained
    state; the second one therefore stops at start, naming the holder."""

    def __init__(self, path: Path | str, holder_pid: int | None) -> None:
        self.holder_pid = holder_pid
        who = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(path, f"already in use by {who}, another edge agent of this gateway: stop it first "
                               f"(`kill {holder_pid or 'PID'}`, or `systemctl stop shouwang-edge`), or give this agent its own outbox.path")
