"""De-duplication of at-least-once delivery: which messages ingest has seen, and what counts as the same one.

How this works: every message is keyed `<gateway>/<msg_id>` (its gateway as the topic names it, its id as the
edge gave it). `RecentIds` remembers the last `dedupe_window` keys (ingest reloads them from its journals at
start, so a redelivery after a restart is still recognised). A key seen before is a repeat, acknowledged and
dropped, unless the message says something else: for non-telemetry messages the window also keeps a digest of
the content (`content_digest`, without the gateway's receive time, which a redelivery may restamp). A known
msg_id with other content (a smoke alarm, then an SOS press with the same id) is not a duplicate: it is kept
under a flagged id `<msg_id>:<content digest>` (`flag_reused`) and counted (`reused_ids`).
"""

from __future__ import annotations

import copy
import enum
import hashlib
from collections import deque

import msgspec

from broker.errors import MessageRejected
from broker.schemas import Uplink, decode_uplink, encode

__all__ = ["RecentIds", "Seen", "content_digest", "flag_reused", "msg_id_of", "remember_journaled"]


class Seen(enum.Enum):
    NEW = "new"
    REPEAT = "repeat"  # the same message again (at-least-once delivery): drop it
    REUSED = "reused"  # a known msg_id with different content: a different message, keep it and flag it


class RecentIds:
    """The last `capacity` message keys seen, for de-duplication of at-least-once delivery.

    Keys are kept as 16-byte BLAKE2b digests in a set, oldest first in a deque: ~85 bytes a key instead of
    ~190 for the key strings in an OrderedDict (200,000 keys: ~17 MiB, was 36 MiB, measured). Two keys share a
    digest with probability ~2^-128 per pair: never, for any practical purpose (a false "seen" would drop a
    message as a duplicate).

    The window is full from the start (`prefill`): placeholders (a fixed prefix and a counter, 16 bytes like a
    digest) stand in for keys not seen yet and leave oldest first
    like any. Its memory is therefore taken once, at start, rather than growing for the ~12 minutes a street's
    traffic needs to fill 200,000 keys: a process's memory after start is what it keeps (benchmarks/soak.py)."""

    _PLACEHOLDER = b"shouwang-unseen"

    def __init__(self, capacity: int = 200_000, *, prefill: bool = True) -> None:
        self._ids: set[bytes] = set()
        # Content digests of the keys that came with one (non-telemetry messages: a small share of the window),
        # to tell a redelivery from a msg_id reused for a different message.
        self._versions: dict[bytes, tuple[bytes, ...]] = {}
        self._order: deque[bytes] = deque()
        self._capacity = capacity
        self._placeholders = 0
        if prefill:
            # A placeholder is its own 16 bytes, not a hash: a key's digest matches one with the same ~2^-128 odds
            # as it matches another key's, and building 200,000 of them costs ~0.1 s instead of ~0.5 s of hashing
            # (measured), which ingest's start and the backend's pay.
            placeholders = [self._PLACEHOLDER[:8] + i.to_bytes(8, "big") for i in range(capacity)]
            self._ids.update(placeholders)
            self._order.extend(placeholders)
            self._placeholders = capacity

    def seen(self, key: str) -> bool:
        """Record `key`; return True if it had been seen already."""
        return self.check(key) is not Seen.NEW

    def check(self, key: str, version: bytes | None = None) -> Seen:
        """Record `key` (with the digest of its content, if given) and say whether it is new, a repeat, or a
        key seen before with other content. A key known without a version (reloaded from the journal after a
        restart) counts any content as a repeat: it cannot tell."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        if digest in self._ids:
            known = self._versions.get(digest)
            if version is None or known is None or version in known:
                return Seen.REPEAT
            self._versions[digest] = (*known, version)
            return Seen.REUSED
        self._ids.add(digest)
        self._order.append(digest)
        if version is not None:
            self._versions[digest] = (version,)
        if len(self._order) > self._capacity:
            old = self._order.popleft()
            self._ids.discard(old)
            self._versions.pop(old, None)
            if self._placeholders:
                self._placeholders -= 1
        return Seen.NEW

    def __len__(self) -> int:
        """Message keys remembered (placeholders not counted)."""
        return len(self._order) - self._placeholders


def msg_id_of(uplink: Uplink) -> str:
    return str(getattr(uplink.message, "msg_id", ""))


def content_digest(uplink: Uplink) -> bytes:
    """A digest of what a message says, without the gateway's receive time (a redelivery may restamp it).

    The bytes hashed are `encode(msgspec.structs.replace(msg, received_ts_ms=0))`, built from a shallow copy with the
    time set in place: `replace` runs the message's checks (`__post_init__`) a second time, ~2 µs of every event's
    intake (issue 19). The digest is part of a reused id's flagged form (`flag_reused`), so the bytes must not change."""
    msg = uplink.message
    if hasattr(msg, "received_ts_ms"):
        msg = copy.copy(msg)
        msgspec.structs.force_setattr(msg, "received_ts_ms", 0)
    return hashlib.blake2b(encode(msg), digest_size=8).digest()


def flag_reused(uplink: Uplink) -> Uplink:
    """The message under a flagged id, `<msg_id>:<content digest>`: kept apart from the earlier message that used
    its id (the journal key, the cluster's queue key and the alarm's source message all differ)."""
    tag = content_digest(uplink).hex()
    flagged = f"{msg_id_of(uplink)[:86]}:{tag[:8]}"
    return Uplink(uplink.topic, msgspec.structs.replace(uplink.message, msg_id=flagged))


def remember_journaled(recent: RecentIds, key: str, topic: str, payload: bytes) -> None:
    """Put a journaled uplink back in the de-duplication window, with the digest of its content."""
    try:
        uplink = decode_uplink(topic, payload)
    except MessageRejected:
        recent.seen(key)
        return
    plain = f"{uplink.topic.gateway}/{msg_id_of(uplink)}"
    recent.check(plain, content_digest(uplink))
    if key != plain:  # journaled under a flagged id: it reused `plain`
        recent.seen(key)
