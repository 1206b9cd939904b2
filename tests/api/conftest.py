"""An API rig on the real alarm service (alerting core + SQLite alarm store) with a virtual clock, and logins
of every role; requests go through httpx's ASGI transport (no socket), except where a test needs a stream."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.alarms.service import AlarmService
from backend.api.app import create_app
from backend.api.deps import ApiDeps
from backend.api.tokens import TokenSigner
from backend.feed import LiveFeed
from backend.sites import SiteDirectory
from backend.sites.model import Device
from backend.store.db import make_engine, sqlite_url
from backend.store.users import UserStore
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, decode_uplink, encode
from broker.topics import event_topic

PASSWORD = "correct horse battery"
# username -> (role, scope)
PEOPLE = {
    "duty": ("duty_officer", None),
    "gw1": ("grid_worker", "c01-g1"),
    "gw2": ("grid_worker", "c01-g2"),
    "leader": ("building_leader", "c01-b01"),
    "mfs": ("micro_fire_station", "c01"),
    "vol": ("volunteer", None),
}


@dataclass
class ApiRig:
    client: httpx.AsyncClient
    service: AlarmService
    clock: VirtualClock
    sites: SiteDirectory
    users: UserStore
    feed: LiveFeed
    deps: ApiDeps
    tokens: dict[str, str]

    def renew_sessions(self) -> None:
        """Fresh session tokens (after the virtual clock moved past their 12 h)."""
        self.tokens = {name: self.deps.signer.sign({"sub": name}, self.clock.now_ms() / 1000, 12 * 3600) for name in self.tokens}

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def device(self, grid: str, kind: DeviceKind = DeviceKind.SMOKE, n: int = 0) -> Device:
        """The first device of a kind in the n-th building of a grid (one per building: no composite fire upgrades)."""
        blds = sorted(b.id for b in self.sites.buildings.values() if b.grid == grid)
        return next(d for d in self.sites.devices_by_building[blds[n]] if d.kind is kind)

    async def smoke(self, device: Device, *, drill: bool = False, event: EventKind = EventKind.SMOKE_ALARM) -> str:
        """Raise an alarm through the real alerting core; return its id."""
        now = self.clock.now_ms()
        msg = DeviceEvent(msg_id=f"m{time.monotonic_ns()}", source_ts_ms=now, received_ts_ms=now, event=event, drill=drill)
        await self.service.on_uplink(decode_uplink(str(event_topic(device.gateway, device.id)), encode(msg)), now)
        rows = [a for a in self.service.store.list(open_only=True, limit=1000) if a.device_id == device.id and a.drill == drill]
        assert rows, f"no alarm for {device.id}"
        return rows[0].id


@pytest.fixture
async def rig(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    async with make_rig(tmp_path, sample_site) as r:
        yield r


@contextlib.asynccontextmanager
async def make_rig(tmp_path: Path, sample_site: SiteDirectory) -> AsyncIterator[ApiRig]:
    """The API on the real alarm service over `sample_site`, with the users of PEOPLE."""
    clock = VirtualClock()
    engine = make_engine(sqlite_url(tmp_path / "alarms.db"))
    service = AlarmService.for_sites(engine, sample_site, clock)
    await service.start()
    users = UserStore(engine)
    users.add("admin", None, "admin", "管理员")
    for name, (role, scope) in PEOPLE.items():
        users.add(name, PASSWORD if name == "duty" else None, role, name, scope)  # argon2 is slow on purpose: one real password
    signer = TokenSigner(b"k" * 32)
    deps = ApiDeps(alarms=service.store, users=users, signer=signer, clock=clock, ingest_stats=dict, sites=sample_site, alarm_service=service)
    async with LiveFeed(clock, stream=service.stream, store=service.store, sites=sample_site) as feed:
        deps = ApiDeps(**{**deps.__dict__, "feed": feed})
        transport = httpx.ASGITransport(app=create_app(deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            tokens = {name: signer.sign({"sub": name}, clock.now_ms() / 1000, 12 * 3600) for name in ["admin", *PEOPLE]}
            yield ApiRig(client, service, clock, sample_site, users, feed, deps, tokens)
    engine.dispose()
