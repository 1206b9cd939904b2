"""Waiting for real I/O in tests: poll a condition until it holds, with a deadline and a message that says what
did not happen. For waits on time itself, tests use a virtual clock instead."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "the condition") -> Any:
    """Poll `check` (sync or async) until truthy and return its value; generous timeouts: this waits for I/O."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
