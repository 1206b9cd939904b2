"""Patrol end to end: scheduler → real Mosquitto → real edge agent → Mosquitto → real ingest → PatrolTap → alarm service → store.

The scheduler's time is a virtual clock the test moves; the messages are real. The gateway's uplink runs
through a TCP proxy the test can cut, like a pulled uplink cable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backend.alarms.service import AlarmService
from backend.ingest.service import IngestService
from backend.patrol import PATROL_MISSED, PatrolAlarms, PatrolScheduler, PatrolSettings, PatrolTap
from backend.settings import load_settings
from backend.sites import generate_site_document
from backend.sites.loader import parse_site_directory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock
from broker.embedded import free_port
from broker.process import MosquittoProcess
from edge.agent import EdgeAgent
from edge.config import parse_config
from tests.waiting import until

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
T0 = 1_767_225_600_000


class UplinkCable:
    """A TCP proxy in front of the central broker; cut() drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._conns: set[asyncio.StreamWriter] = set()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        w.close()

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.up:
            w.close()
            return
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._conns |= {w, uw}
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[UplinkCable]:
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        async with server:
            yield self

    def cut(self) -> None:
        self.up = False
        for w in self._conns:
            w.transport.abort()
        self._conns.clear()

    def mend(self) -> None:
        self.up = True




async def test_stopping_a_gateways_uplink_fires_its_patrol_alarm_within_one_period(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]
) -> None:
    central, lan = mosquitto_factory("central"), mosquitto_factory("lan")
    sites = parse_site_directory(json.dumps(generate_site_document(1, grids=1, buildings_per_grid=2), ensure_ascii=False))
    gw = sorted(sites.gateways)[0]
    clock = VirtualClock(T0)
    service = AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sites, clock)
    await service.start()  # the core from the (empty) store; no ticker: the patrol signals are what this test watches
    store = service.store
    sink = PatrolAlarms(service, sites)
    settings = PatrolSettings(period_s=600, window_s=60, stagger=False)
    cable = UplinkCable(central.port)
    edge_cfg = parse_config({
        "gateway": gw, "lan": {"host": lan.host, "port": lan.port},
        "uplink": {"host": "127.0.0.1", "port": cable.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "publish_timeout_s": 5.0},
        "outbox": {"path": str(tmp_path / "edge" / "outbox.sqlite3")}, "status": {"every_s": 1.0},
        "patrol": {"period_s": 7200},  # its own periodic heartbeats stay out of the way
        "adapters": [{"dialect": "native", "devices": {"m1": {"id": f"{gw}-m1", "kind": "electrical"}}}],
    })
    app = load_settings(storage={"data_dir": tmp_path / "var"})
    async with cable.running(), contextlib.AsyncExitStack() as stack:
        sched = PatrolScheduler([gw], central.host, central.port, sink, settings=settings, clock=clock)
        await stack.enter_async_context(IngestService(app, sites, central.host, central.port, feed=PatrolTap(sched)))
        agent = await stack.enter_async_context(EdgeAgent(edge_cfg))
        await until(agent.uplink.connected.is_set, what="edge uplink up")
        await asyncio.sleep(0.5)  # the agent subscribes to its command topic right after connecting  (real I/O)

        # t = 0: the scheduler starts; the first patrol goes out and comes back through the whole path
        await stack.enter_async_context(sched)
        await until(lambda: len(sched.returns) == 1, what="first patrol back")
        assert sched.returns[0].gateway == gw
        assert not sched.returns[0].late
        # t = 100 s: the uplink is cut
        cut_at = T0 + 100_000
        clock.advance(100)
        cable.cut()
        await until(lambda: not agent.uplink.connected.is_set(), what="edge notices the cut")
        # walk the clock forward a minute at a time; the alarm must be in the store within one period of the cut
        alarm_at = None
        t = cut_at
        while alarm_at is None and t < cut_at + 2 * 600_000:
            t += 60_000
            clock.advance(60)
            sched.wake()
            await asyncio.sleep(0.05)  # let the scheduler's task run its step (real I/O to the store)
            alarms = [a for a in await asyncio.to_thread(store.list, open_only=True) if a.alarm_type == PATROL_MISSED]
            if alarms:
                alarm_at = alarms[0].raised_at_ms
                assert alarms[0].gateway_id == gw
                assert not alarms[0].drill
        assert alarm_at is not None, "no patrol alarm at all"
        assert alarm_at - cut_at <= settings.period_s * 1000
        # the uplink comes back: the next patrol (or the late answer) clears the alarm
        cable.mend()
        await until(agent.uplink.connected.is_set, what="edge back")
        await asyncio.sleep(0.5)
        for _ in range(40):
            t += 60_000
            clock.advance(60)
            sched.wake()
            await asyncio.sleep(0.05)
            if not [a for a in await asyncio.to_thread(store.list, open_only=True) if a.alarm_type == PATROL_MISSED]:
                break
        else:
            raise AssertionError("the patrol alarm did not clear after the uplink came back")
        assert any(r.was_missing for r in sched.returns)
