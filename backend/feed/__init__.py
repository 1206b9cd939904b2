"""The live feed's room: the centre's committed changes as numbered events for the consoles (backend.feed.live), and
an alarm as a person reads it (backend.feed.view). The HTTP routes that serve it are thin (backend.api.feed)."""

from backend.feed.live import HEALTH_ALARM_TYPES, WRITE_MAX, FeedEvent, LiveFeed, sse_frame
from backend.feed.view import alarm_view

__all__ = ["HEALTH_ALARM_TYPES", "WRITE_MAX", "FeedEvent", "LiveFeed", "alarm_view", "sse_frame"]
