"""Whole files written so that a crash never leaves half of one under its final name.

How this works: `replace_atomically(path, data)` writes the bytes to a temporary file in the same folder, fsyncs
it, renames it over `path` (atomic on POSIX) and fsyncs the folder, so after a crash or a power cut the name holds
either the old bytes or the new, never a mix; a failure removes the temporary file and raises.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["replace_atomically"]


def replace_atomically(path: Path, data: bytes, *, prefix: str = ".tmp-") -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename made durable; a folder that cannot be opened is only less durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
