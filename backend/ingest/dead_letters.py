"""Dead letters: messages ingest gives up on, kept with their exact bytes for a person to look at and replay.

How this works: one JSON line per message is appended to `dead-letters.jsonl` beside the journals and fsynced
before ingest lets go of the message. Two kinds arrive here (docs/ingest.md "Outages and poison"):
- `parked`: a message alerting refused `feed_max_attempts` times for its content, or one the intake itself
  failed on (a bug of ours); counted in `lanes.dead_letters`;
- `raised_without_detail`: a life-safety event refused for its content whose alarm was then raised without
  its cosmetic fields; the original is kept here all the same, and not counted as a dead letter.
The payload is stored twice: as text to read, and base64 to replay byte for byte.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

from backend.ingest.lanes import LaneStats

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, path: Path, lanes: LaneStats) -> None:
        self.path = path
        self._lanes = lanes

    def park(self, topic: str, payload: bytes, received_ms: int, exc: BaseException, *, key: str, attempts: int,
             outcome: str = "parked") -> None:
        """Append a message to the file (fsynced). A failure to write is logged, never raised: the caller goes on."""
        if outcome == "parked":
            self._lanes.dead_letters += 1
        record = {"outcome": outcome, "key": key, "topic": topic, "payload": payload.decode("utf-8", errors="replace"),
                  "payload_b64": base64.b64encode(payload).decode("ascii"),
                  "received_ms": received_ms, "attempts": attempts, "error": f"{type(exc).__name__}: {exc}"}
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            log.exception("could not write the dead letter of %s", key or topic)
