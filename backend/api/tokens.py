"""Signed, expiring tokens (HMAC-SHA256): console sessions and one-tap responder links.

A token is `base64url(payload).base64url(signature)` where payload is JSON {sub, exp, ...}. The secret lives
in the data folder (or the environment) and never in the repository. A session needs nothing stored
server-side; what a one-tap link was already used for is kept by the user store (backend/api/responses.py).
`InvalidToken.reason` says why a token was refused (malformed, signature, expired), so each caller can
explain it in the reader's language.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from backend.errors import BackendError

__all__ = ["InvalidToken", "TokenSigner"]


class InvalidToken(BackendError, ValueError):
    def __init__(self, message: str, reason: str = "malformed") -> None:
        self.reason = reason  # "malformed", "signature", "expired" (callers may add their own, e.g. "kind")
        super().__init__(message)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret

    def sign(self, claims: dict[str, Any], now_s: float, ttl_s: float) -> str:
        body = _b64(json.dumps({**claims, "exp": int(now_s + ttl_s)}, separators=(",", ":")).encode())
        return f"{body}.{_b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())}"

    def verify(self, token: str, now_s: float) -> dict[str, Any]:
        try:
            body, sig = token.split(".")
            expected = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(sig)):
                raise InvalidToken("the token's signature does not match; log in again", "signature")
            claims: dict[str, Any] = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, InvalidToken):
                raise
            raise InvalidToken("the token is malformed; log in again") from exc
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now_s:
            raise InvalidToken("the token has expired; log in again", "expired")
        return claims
