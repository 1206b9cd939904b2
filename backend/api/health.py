"""Liveness and readiness for operators and orchestrators: `/livez` and `/readyz` (docs/operations.md).

How this works: `/livez` answers 200 whenever the event loop runs this handler; it says "do not restart me",
nothing more. `/readyz` runs every registered check concurrently, each bounded by a timeout, and answers 200
only if all pass, else 503 with each check's verdict, so a load balancer or systemd sees *why*. A check is an
async function returning a `Verdict`; the server registers what its role runs (backend.ops.checks): the
alarm database answering `SELECT 1`, the broker connections of ingest and of the publisher, the live feed's
watcher running, ingest keeping up (telemetry backlog), and in a cluster a rules leader holding the seat.
A check that raises or times out is a failed check carrying the reason; checks never raise out of /readyz.

`/api/health` answers the same verdict as /readyz under its old path (status `ok` or `degraded`), so
the one public health URL the console and older monitors use is no longer an unconditional `ok`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.ops.readiness import Readiness, Verdict

__all__ = ["Readiness", "Verdict", "health_router"]

def health_router(readiness: Readiness) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/livez", summary="Liveness: the process and its event loop answer (never checks dependencies)")
    async def livez() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/readyz", summary="Readiness: database, broker, live feed, ingest, rules leader; 503 with the failing checks",
                responses={503: {"description": "not ready; `checks` says which check failed and why"}})
    async def readyz() -> JSONResponse:
        ready, body = await readiness.report()
        return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    @router.get("/api/health", summary="Health: `ok` when every readiness check passes, else `degraded` with the checks (always 200)")
    async def health() -> dict[str, Any]:
        ready, body = await readiness.report()
        return {"status": "ok" if ready else "degraded", "checks": body["checks"]}

    return router
