"""The whole system in one process tree: broker, backend (ingest, stores, API, console), simulated community.

How this works: `System` is an async context manager. It starts the embedded broker (a child process)
unless a broker URL is configured, then the backend, then the community simulator; it is ready when
entered. On exit it stops them in reverse order: simulator first (no new traffic), then the backend
(drains intake), then the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse

from backend.server import Backend
from backend.settings import Settings
from backend.sites import SiteDirectory
from broker.embedded import EmbeddedBroker

__all__ = ["System", "parse_mqtt_url"]


def parse_mqtt_url(url: str) -> tuple[str, int]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ValueError(f"broker URL {url!r} must look like mqtt://host:1883")
    return u.hostname, u.port or 1883


class System:
    def __init__(self, settings: Settings, sites: SiteDirectory) -> None:
        self.settings = settings
        self.sites = sites
        self.broker_host = ""
        self.broker_port = 0
        self.simulating = False
        self._stack = contextlib.AsyncExitStack()
        self._sim_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        s = self.settings
        try:
            if s.broker.url is None:
                broker = await self._stack.enter_async_context(EmbeddedBroker(s.broker.embedded_host, s.broker.embedded_port))
                self.broker_host, self.broker_port = broker.host, broker.port
            else:
                self.broker_host, self.broker_port = parse_mqtt_url(s.broker.url)
            self.backend = await self._stack.enter_async_context(Backend(s, self.sites, self.broker_host, self.broker_port))
            if s.simulate.enabled:
                self._start_simulator()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    def _start_simulator(self) -> None:
        try:
            live: Any = importlib.import_module("simulators.live")
        except ImportError:
            return
        self._sim_task = asyncio.create_task(
            live.run_community(self.sites, self.broker_host, self.broker_port, speed=self.settings.simulate.speed, seed=self.settings.simulate.seed),
            name="community-simulator",
        )
        self.simulating = True

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._sim_task is not None:
            self._sim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sim_task
        await self._stack.aclose()
