"""The operations endpoint of a process without the API (a `shouwang ingest` worker): /metrics, /livez, /readyz.

How this works: `OpsEndpoint` is an async context manager serving a three-route app with uvicorn on its own
port (`--metrics-port` or `ops.metrics_port`; 0 picks a free one, see `port`). It is ready once uvicorn
listens, and stops with the process. Each ingest worker has its own port: workers are separate processes,
each with its own counters, so Prometheus scrapes each (no shared multi-process directory to clean up).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from backend.api.health import health_router
from backend.ops.metrics import CONTENT_TYPE_LATEST, Metrics
from backend.ops.readiness import Readiness

__all__ = ["OpsEndpoint", "ops_app"]


def ops_app(readiness: Readiness, metrics: Metrics) -> FastAPI:
    app = FastAPI(title="Shouwang operations endpoint", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(health_router(readiness))

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


class OpsEndpoint:
    def __init__(self, readiness: Readiness, metrics: Metrics, host: str, port: int) -> None:
        self._server = uvicorn.Server(uvicorn.Config(ops_app(readiness, metrics), host=host, port=port, log_level="warning", lifespan="off"))
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._server.serve(), name="ops-endpoint")
        while not self._server.started:  # uvicorn offers no readiness event; its `started` flag is the signal
            if self._task.done():
                await self._task
                raise RuntimeError(f"the metrics port {self.host}:{self.port} could not be opened")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
