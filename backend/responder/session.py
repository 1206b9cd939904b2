"""The responder's phone session: one signed, expiring cookie per person, made when their one-tap link opens.

How this works: opening a valid one-tap link (GET /r/{token}) signs {kind: responder, contact} with the API's
`TokenSigner` (HMAC-SHA256, expiring after `api.responder_session_ttl_s`, 12 h by default: one shift) and sets it
as the cookie `sw_responder`, HttpOnly (no script reads it), SameSite=Lax (no other site's form posts with it),
Path=/m (only the responder's pages and their API under /m/ receive it; the console never sees it). The session
names one person and nothing else: it is no console login (backend.api.auth refuses any token that carries
a kind) and a console token is no session here (wrong kind).
Every move made with it is still checked against the ladder (each move once per person and round, in order), so
the session adds no move a link would not allow; it only spares the person a link per alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from backend.api.tokens import InvalidToken, TokenSigner
from broker.clock import Clock

__all__ = ["COOKIE", "COOKIE_PATH", "ResponderSessions"]

COOKIE: Final = "sw_responder"
COOKIE_PATH: Final = "/m"
_KIND: Final = "responder"


@dataclass(frozen=True)
class ResponderSessions:
    signer: TokenSigner
    clock: Clock
    ttl_s: float = 12 * 3600

    def issue(self, contact_id: str) -> str:
        return self.signer.sign({"k": _KIND, "sub": f"{_KIND}:{contact_id}", "c": contact_id}, self.clock.now_ms() / 1000, self.ttl_s)

    def open(self, token: str) -> str:
        """The contact id of a valid session; InvalidToken (reason malformed, signature, expired or kind) otherwise."""
        claims = self.signer.verify(token, self.clock.now_ms() / 1000)
        if claims.get("k") != _KIND or not isinstance(claims.get("c"), str) or not claims["c"]:
            raise InvalidToken("this is not a responder session", "kind")
        contact: str = claims["c"]
        return contact
