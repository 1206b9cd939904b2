"""Per-responder rate limits with storm summaries.

How this works: a fixed window per contact. The first `limit` messages of a window go out; the rest are
counted, not sent. When that contact's window ends (`due_summaries(now)`), the count becomes ONE summary
message ("另有 N 条报警通知未逐条发送…"), so a storm of alarms costs a responder a handful of messages, and
nothing is silently lost: each held message still gets a RATE_LIMITED receipt and stays on the console.
Time is passed in, never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RateLimiter", "Storm"]


@dataclass
class _Window:
    start_ms: int
    sent: int = 0
    held: int = 0
    drill_only: bool = True
    sample: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Storm:
    contact: str
    window_start_ms: int
    held: int
    drill_only: bool
    alarms: tuple[str, ...]


class RateLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_ms = round(window_s * 1000)
        self._windows: dict[str, _Window] = {}

    def allow(self, contact: str, now_ms: int, *, alarm_id: str = "", drill: bool = False) -> bool:
        w = self._windows.get(contact)
        if w is None or now_ms - w.start_ms >= self.window_ms:
            if w is not None and w.held:
                return self._count(w, alarm_id, drill)  # the summary of the old window is still owed
            w = self._windows[contact] = _Window(now_ms)
        if w.sent < self.limit:
            w.sent += 1
            return True
        return self._count(w, alarm_id, drill)

    @staticmethod
    def _count(w: _Window, alarm_id: str, drill: bool) -> bool:
        w.held += 1
        w.drill_only = w.drill_only and drill
        if alarm_id and len(w.sample) < 20:
            w.sample.append(alarm_id)
        return False

    def due_summaries(self, now_ms: int) -> list[Storm]:
        """Storms whose window has ended; each is reported once and its window closed."""
        out: list[Storm] = []
        for contact, w in list(self._windows.items()):
            if now_ms - w.start_ms >= self.window_ms:
                if w.held:
                    out.append(Storm(contact, w.start_ms, w.held, w.drill_only, tuple(w.sample)))
                del self._windows[contact]
        return out
