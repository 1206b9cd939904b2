"""What the agent tells people about itself: the rejection ledger and the status file.

How this works: every adapter outcome is recorded in the `Ledger` (mapped, forwarded nothing with a note,
or rejected with a code), rejections counted per (adapter, device, code) with the last reason, so an
operator sees *which* device sends *what* we cannot read. The agent writes a JSON snapshot to the status
file every few seconds (write to a temporary file, then rename: a reader never sees half a file), and
`shouwang edge status` reads it back. The patrol heartbeat carries `rejected_total` to the centre.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.adapters import Mapped, Outcome

__all__ = ["Ledger", "read_status", "write_status"]

log = logging.getLogger("edge.rejections")


@dataclass(slots=True)
class _Rejections:
    count: int
    last_detail: str
    last_topic: str


class Ledger:
    def __init__(self) -> None:
        self.lan_messages = 0
        self.mapped = 0
        self.silent = 0  # understood, nothing to forward (see the note)
        self.rejected_total = 0
        self._rejected: dict[tuple[str, str, str], _Rejections] = {}

    def record(self, outcome: Outcome) -> None:
        self.lan_messages += 1
        if isinstance(outcome, Mapped):
            if outcome.messages:
                self.mapped += 1
            else:
                self.silent += 1
            return
        self.rejected_total += 1
        key = (outcome.adapter, outcome.device or "-", outcome.code.value)
        entry = self._rejected.get(key)
        if entry is None:
            entry = self._rejected[key] = _Rejections(0, "", "")
        entry.count += 1
        entry.last_detail = outcome.detail
        entry.last_topic = outcome.topic
        # 1st, 10th, 100th... of a kind: enough to notice, never a log flood from one chatty device
        if len(str(entry.count)) == str(entry.count).count("0") + 1 and str(entry.count).startswith("1"):
            log.warning(
                "rejected (%s x%d) adapter=%s device=%s topic=%r: %s", outcome.code.value, entry.count, outcome.adapter, key[1], outcome.topic, outcome.detail
            )

    def rejections(self) -> list[dict[str, Any]]:
        return [
            {"adapter": a, "device": d, "code": c, "count": e.count, "last_detail": e.last_detail, "last_topic": e.last_topic}
            for (a, d, c), e in sorted(self._rejected.items(), key=lambda kv: -kv[1].count)
        ]

    def by_adapter(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (a, _, _), e in self._rejected.items():
            out[a] = out.get(a, 0) + e.count
        return out


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
