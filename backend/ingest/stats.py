"""Counters of what ingest accepted and rejected, and the most recent rejections with their reasons."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from broker.errors import MessageRejected

__all__ = ["IngestStats", "Rejection"]


@dataclass(frozen=True, slots=True)
class Rejection:
    at_ms: int
    topic: str
    reason: str
    detail: str
    payload_head: str


@dataclass
class IngestStats:
    accepted: int = 0
    duplicates: int = 0
    reconnects: int = 0
    unknown_device_events: int = 0  # life-safety events from devices not in the site directory: raised, and counted
    reused_ids: int = 0  # messages reusing a msg_id with different content: kept under a flagged id, counted
    rejected: Counter[str] = field(default_factory=Counter)  # by reason code
    rejected_by_gateway: Counter[str] = field(default_factory=Counter)
    recent: deque[Rejection] = field(default_factory=lambda: deque(maxlen=100))

    def reject(self, exc: MessageRejected, payload: bytes, at_ms: int, gateway: str | None) -> Rejection:
        self.rejected[exc.reason.value] += 1
        self.rejected_by_gateway[gateway or "(unknown)"] += 1
        r = Rejection(at_ms, exc.topic, exc.reason.value, exc.detail, payload[:120].decode("utf-8", errors="replace"))
        self.recent.append(r)
        return r

    def snapshot(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "reconnects": self.reconnects,
            "unknown_device_events": self.unknown_device_events,
            "reused_ids": self.reused_ids,
            "rejected_total": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
            "rejected_by_gateway": dict(self.rejected_by_gateway.most_common(50)),
            "recent_rejections": [_as_dict(r) for r in list(self.recent)[-20:]],
        }


def _as_dict(r: Rejection) -> dict[str, Any]:
    return {"at_ms": r.at_ms, "topic": r.topic, "reason": r.reason, "detail": r.detail, "payload_head": r.payload_head}
