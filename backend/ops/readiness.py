"""Readiness as data: named async checks, each bounded by a timeout, run together (served by backend/api/health.py).

A check is an async function returning a `Verdict`; one that raises or times out is a failed check carrying
the reason, so a probe never fails with an error of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CHECK_TIMEOUT_S", "Check", "Readiness", "Verdict"]

CHECK_TIMEOUT_S = 3.0  # a check that takes longer is a failed check: an orchestrator's probe must not hang


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    detail: str = ""


Check = Callable[[], Awaitable[Verdict]]


class Readiness:
    """The named checks /readyz runs. Add them as the components they watch start."""

    def __init__(self, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self._checks: dict[str, Check] = {}
        self.timeout_s = timeout_s

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def _one(self, check: Check) -> Verdict:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await check()
        except TimeoutError:
            return Verdict(False, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:  # a broken dependency is a failed check, never a 500 from the probe
            return Verdict(False, f"{type(exc).__name__}: {exc}"[:300])

    async def run(self) -> dict[str, Verdict]:
        names = list(self._checks)
        verdicts = await asyncio.gather(*(self._one(self._checks[n]) for n in names))
        return dict(zip(names, verdicts, strict=True))

    async def report(self) -> tuple[bool, dict[str, Any]]:
        started = time.monotonic()
        verdicts = await self.run()
        ready = all(v.ok for v in verdicts.values())
        return ready, {
            "status": "ready" if ready else "not_ready",
            "checks": {n: {"ok": v.ok, "detail": v.detail} for n, v in verdicts.items()},
            "took_ms": round((time.monotonic() - started) * 1000, 1),
        }
