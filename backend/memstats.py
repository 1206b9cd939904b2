"""Where a long-running process's memory is, and handing freed heap back to the system.

How this works: a soak's one figure, the resident set (RSS), cannot tell a leak from a cache filling to its
bound or from freed memory the C allocator keeps. `breakdown()` splits it, cheaply enough to serve with every
/api/ingest/stats answer (under `memory`):

- the kernel's view (/proc/self/status): resident anonymous memory (the heaps) and resident file pages
  (mapped libraries and files);
- glibc's malloc (mallinfo2): bytes in use, bytes free but still held, and large blocks mapped on their own
  (numpy arrays above the mmap threshold). SQLite's page caches and most C extensions allocate here;
- SQLite's own count of the memory it holds (sqlite3_memory_used, from the same libsqlite3 the sqlite3
  module loaded);
- the rest of the resident anonymous memory (`anon_other_mib`): mostly Python's object allocator's arenas,
  which it maps itself, and thread stacks; with it, the blocks Python has handed out (sys.getallocatedblocks).

`configure_allocator()` fixes glibc malloc's two tunables that let a long-running, threaded process keep
memory it has freed. Measured on the soak (benchmarks/soak.py, /proc/PID/smaps): six per-thread arenas held
~300 MiB, each with up to ~50 MiB of free memory at its top. glibc raises its mmap threshold each time a big
block it had mapped is freed (a rule-state snapshot, a column resize: up to 32 MiB), and with it the trim
threshold (twice that), below which an arena never gives its top back. A fixed mmap threshold turns that
off (big, short-lived blocks are mapped and unmapped on their own), and a cap on arenas lets threads reuse
each other's free memory. It runs at a command's entry point, before the worker threads start.

`trim()` calls glibc's malloc_trim(0), which returns whole free pages from every arena, not only the top of
the main heap. On its own it did not stop the soak's creep (malloc's free-but-held memory stayed at 180-240
MiB); with `configure_allocator()` free-but-held stays at ~15 MiB at street scale.

On a system without glibc or /proc each part is left out (None) and `trim()` does nothing, so callers need
no platform checks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["breakdown", "configure_allocator", "trim"]

_MIB = 2**20
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's malloc.h


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@cache
def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: glibc when linked against it
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


@cache
def _sqlite() -> Any | None:
    import sqlite3  # noqa: F401  (loads libsqlite3 first, so the handle below is the one in use)

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return None
    return lib


def _proc_status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile in bytes; empty where /proc is not there."""
    out: dict[str, int] = {}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def _mib(n: int | None) -> float | None:
    return None if n is None else round(n / _MIB, 1)


def breakdown() -> dict[str, float | int | None]:
    """The process's memory by holder, in MiB (and a count of Python blocks). Takes well under a millisecond."""
    status = _proc_status()
    out: dict[str, float | int | None] = {
        "rss_mib": _mib(status.get("VmRSS")), "anon_mib": _mib(status.get("RssAnon")), "file_mib": _mib(status.get("RssFile")),
        "malloc_in_use_mib": None, "malloc_free_held_mib": None, "malloc_mmapped_mib": None, "anon_other_mib": None, "sqlite_mib": None,
        "python_blocks": sys.getallocatedblocks(),
    }
    libc = _libc()
    if libc is not None:
        m = libc.mallinfo2()
        out["malloc_in_use_mib"], out["malloc_free_held_mib"], out["malloc_mmapped_mib"] = _mib(m.uordblks), _mib(m.fordblks), _mib(m.hblkhd)
        if "RssAnon" in status:  # the rest of the anonymous memory: Python's object arenas, thread stacks
            out["anon_other_mib"] = _mib(max(0, status["RssAnon"] - m.uordblks - m.fordblks - m.hblkhd))
    lib = _sqlite()
    if lib is not None:
        out["sqlite_mib"] = _mib(lib.sqlite3_memory_used())
    return out


def trim() -> bool:
    """Return the C heap's free pages to the system (glibc malloc_trim). True if any memory was released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def configure_allocator(*, arena_max: int, mmap_threshold_kib: int) -> list[str]:
    """Cap glibc's malloc arenas (`arena_max`) and fix its mmap threshold (`mmap_threshold_kib`); 0 leaves
    glibc's own behaviour for either. Returns what was set, for the log; empty without glibc."""
    libc = _libc()
    done: list[str] = []
    if libc is None:
        return done
    if arena_max > 0 and libc.mallopt(_M_ARENA_MAX, arena_max):
        done.append(f"at most {arena_max} malloc arenas")
    if mmap_threshold_kib > 0 and libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_kib * 1024):
        done.append(f"blocks from {mmap_threshold_kib} KiB mapped on their own")
    return done
