"""The whole system in one process tree: broker, backend (ingest, stores, API, console), simulated community.

How this works: `System` is an async context manager. It starts the embedded broker (a child process)
unless a broker URL is configured, then the backend, then the community simulator; it is ready when
entered. On exit it stops them in reverse order: simulator first (no new traffic), then the backend
(drains intake), then the broker.

The embedded broker admits only the logins of `broker-access.json` in the data folder (made at first start,
0600): the backend and the simulator use its service login, each gateway of the site directory gets its own.
The backend's MQTT client ids carry the data folder's random suffix (broker.embedded.install_suffix), so
they are unique to this install and no gateway can take them.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlparse

from pydantic import SecretStr

from backend.server import Backend
from backend.settings import Settings
from backend.sites import SiteDirectory
from broker.embedded import SERVICE_USER, EmbeddedBroker, install_suffix, load_access
from simulators.live import CommunitySimulator, DemoEvents

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
        self.broker_username: str | None = None
        self.broker_password: str | None = None
        self.access_file: Path | None = None
        self.simulating = False
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        s = self.settings
        data = s.storage.data_dir
        try:
            suffix = await asyncio.to_thread(install_suffix, data)
            b = s.broker
            if b.url is None:
                access = await asyncio.to_thread(load_access, data, self.sites.gateways)
                broker = await self._stack.enter_async_context(
                    EmbeddedBroker(b.embedded_host, b.embedded_port, access=access, state_dir=data))
                self.broker_host, self.broker_port = broker.host, broker.port
                self.broker_username, self.broker_password = SERVICE_USER, access.service_password
                self.access_file = access.path
            else:
                self.broker_host, self.broker_port = parse_mqtt_url(b.url)
                self.broker_username = b.username
                self.broker_password = b.password.get_secret_value() if b.password is not None else None
            b = b.model_copy(update={"username": self.broker_username,
                                     "password": SecretStr(self.broker_password) if self.broker_password is not None else None,
                                     "client_id_prefix": f"{b.client_id_prefix}-{suffix}"})
            s = self.settings = s.model_copy(update={"broker": b})
            self.backend = await self._stack.enter_async_context(Backend(s, self.sites, self.broker_host, self.broker_port))
            if s.simulate.enabled:
                self.simulator = await self._stack.enter_async_context(
                    CommunitySimulator(self.sites, self.broker_host, self.broker_port, speed=s.simulate.speed, seed=s.simulate.seed,
                                       demo=DemoEvents(smoke=s.simulate.demo_smoke, every_s=s.simulate.demo_every_s) if s.simulate.demo_events else None,
                                       username=self.broker_username, password=self.broker_password)
                )
                self.simulating = True
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()  # reverse order: simulator, backend, broker
