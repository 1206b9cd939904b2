"""Identifiers that validate themselves: an id that exists is valid.

Ids appear as single topic levels, so they may hold no '/', '+', '#' or '$', and they stay short and
ASCII so they are safe in file names, SQL and line protocol alike.
"""

from __future__ import annotations

import re

from broker.errors import InvalidId

__all__ = ["ID_PATTERN", "DeviceId", "GatewayId", "MessageId", "validate_id"]

# Starts with a letter or digit; then letters, digits, '.', '_', '-'; at most 64 characters.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Message ids are produced by machines (gateway id + sequence, or a UUID); ':' is allowed as a separator.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,95}")


def validate_id(kind: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidId(kind, repr(value), "must be a string")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidId(
            kind, value, "use 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


class _Id(str):
    __slots__ = ()
    kind = "id"

    def __new__(cls, value: str) -> _Id:
        return super().__new__(cls, validate_id(cls.kind, value))


class DeviceId(_Id):
    __slots__ = ()
    kind = "device id"


class GatewayId(_Id):
    __slots__ = ()
    kind = "gateway id"


class MessageId(str):
    __slots__ = ()

    def __new__(cls, value: str) -> MessageId:
        if not isinstance(value, str) or not _MESSAGE_ID.fullmatch(value):
            raise InvalidId("message id", str(value), "use 1-96 characters: letters, digits, '.', '_', ':' or '-'")
        return super().__new__(cls, value)
