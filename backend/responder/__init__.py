"""The responder's phone view (issue 18): the session a one-tap link opens, and what the phone shows.

See backend/responder/view.py (tasks, places, who sees what) and backend/responder/session.py (the cookie).
The routes are in backend/api/responder.py; the page is backend/api/static/responder.html/.js/.css; docs/responder.md.
"""

from backend.responder.session import COOKIE, COOKIE_PATH, ResponderSessions
from backend.responder.view import Person, alarm_task, navigation, order_is_mine, order_task, paged, person_of, place_words

__all__ = ["COOKIE", "COOKIE_PATH", "Person", "ResponderSessions", "alarm_task", "navigation", "order_is_mine", "order_task", "paged",
           "person_of", "place_words"]
