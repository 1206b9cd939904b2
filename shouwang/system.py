"""The whole system in one process tree: broker, backend (ingest, stores, API, console), simulated community.

How this works: `System` is an async context manager. It starts the embedded broker (a child process)
unless a broker URL is configured, then the backend, then the community simulator; it is ready when
entered. On exit it stops them in reverse order: simulator first (no new traffic), then the backend
(drains intake), then the broker.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self
from urllib.parse import urlparse

from backend.server import Backend
from backend.settings import Settings
from backend.sites import SiteDirectory
from broker.embedded import EmbeddedBroker
from simulators.live import CommunitySimulator

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
                self.simulator = await self._stack.enter_async_context(
                    CommunitySimulator(self.sites, self.broker_host, self.broker_port, speed=s.simulate.speed, seed=s.simulate.seed)
                )
                self.simulating = True
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()  # reverse order: simulator, backend, broker
