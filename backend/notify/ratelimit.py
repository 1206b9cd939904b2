"""Per-responder rate limits with storm summaries.

How this works: a fixed window per contact, and per kind of traffic: drill notices and real ones are counted
in separate windows, so a drill storm never uses up a responder's allowance for a real alarm. The first
`limit` messages of a window go out; the rest are counted, not sent. When that window ends
(`due_summaries(now)`), the count becomes ONE summary message ("另有 N 条报警通知未逐条发送…"), so a storm
of alarms costs a responder a handful of messages, and nothing is silently lost: each held message still gets
a RATE_LIMITED receipt and stays on the console.

A real life-safety notice (smoke, fire, SOS) is never held or folded into a summary: it always goes out, and
counts in the real window (so the minor notices after it are the ones held). Time is passed in, never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RateLimiter", "Storm"]


@dataclass
class _Window:
    start_ms: int
    sent: int = 0
    held: int = 0
    sample: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Storm:
    contact: str
    window_start_ms: int
    held: int
    drill_only: bool  # a drill's window (drill and real notices are never counted together)
    alarms: tuple[str, ...]


class RateLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_ms = round(window_s * 1000)
        self._windows: dict[tuple[str, bool], _Window] = {}  # (contact, drill) -> its window

    def allow(self, contact: str, now_ms: int, *, alarm_id: str = "", drill: bool = False, life_safety: bool = False) -> bool:
        key = (contact, drill)
        w = self._windows.get(key)
        exempt = life_safety and not drill
        if w is None or now_ms - w.start_ms >= self.window_ms:
            if w is not None and w.held and not exempt:
                return self._count(w, alarm_id)  # the summary of the old window is still owed
            if w is None or not w.held:
                w = self._windows[key] = _Window(now_ms)
        if w.sent < self.limit or exempt:
            w.sent += 1
            return True
        return self._count(w, alarm_id)

    @staticmethod
    def _count(w: _Window, alarm_id: str) -> bool:
        w.held += 1
        if alarm_id and len(w.sample) < 20:
            w.sample.append(alarm_id)
        return False

    def due_summaries(self, now_ms: int) -> list[Storm]:
        """Storms whose window has ended; each is reported once and its window closed."""
        out: list[Storm] = []
        for key, w in list(self._windows.items()):
            if now_ms - w.start_ms >= self.window_ms:
                if w.held:
                    out.append(Storm(key[0], w.start_ms, w.held, key[1], tuple(w.sample)))
                del self._windows[key]
        return out
