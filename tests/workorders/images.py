"""Real, small images for upload tests (a PNG a browser can draw), made here so no binary file is checked in."""

from __future__ import annotations

import struct
import zlib


def png(width: int = 64, height: int = 48, rgb: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    """A solid-colour RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
