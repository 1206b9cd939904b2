"""Photos of a hazard and of its rectification: checked by their bytes, stored on disk with a SHA-256 checksum.

How this works: `sniff()` names the type from the file's first bytes (magic numbers), never from the name or
the Content-Type a client sends: JPEG (FF D8 FF), PNG (89 50 4E 47 0D 0A 1A 0A) and WebP (RIFF....WEBP) only.
`PhotoFolder.put()` writes the bytes to a temporary file in the order's folder, fsyncs it and renames it to
`<order id>/<sha256>.<ext>` (the same photo twice is one file), so a crash never leaves a half photo under its
final name; the caller records the row afterwards and calls `discard()` if that fails. `path()` refuses any
stored name that would leave the folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from backend.store.files import replace_atomically

__all__ = ["PHOTO_TYPES", "PhotoFolder", "StoredPhoto", "sniff"]

PHOTO_TYPES: Final = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,40}/[0-9a-f]{64}\.(jpg|png|webp)$")


def sniff(head: bytes) -> str | None:
    """The image type of a file from its first bytes (at least 12), or None when it is none of ours."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    file_name: str  # relative to the folder
    sha256: str
    size_bytes: int
    content_type: str
    created: bool  # False: the same bytes were already stored for this order


class PhotoFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, order_id: str, data: bytes, content_type: str) -> StoredPhoto:
        digest = hashlib.sha256(data).hexdigest()
        name = f"{order_id}/{digest}.{PHOTO_TYPES[content_type]}"
        final = self.root / name
        if final.exists():
            return StoredPhoto(name, digest, len(data), content_type, created=False)
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(final, data, prefix=".upload-")
        return StoredPhoto(name, digest, len(data), content_type, created=True)

    def discard(self, photo: StoredPhoto) -> None:
        if photo.created:
            (self.root / photo.file_name).unlink(missing_ok=True)

    def path(self, file_name: str) -> Path:
        if not _NAME.match(file_name):
            raise ValueError(f"not a stored photo name: {file_name!r}")
        return self.root / file_name
