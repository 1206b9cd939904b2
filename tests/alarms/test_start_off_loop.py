"""The alarm service builds its rule core off the event loop (issue 19): at a district (447 k devices) building it held
the loop ~18 s, so a backend starting beside others answered nothing meanwhile."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

from backend.alarms.service import AlarmService
from backend.sites.model import Device, SiteDirectory
from backend.store.db import make_engine, sqlite_url
from broker.clock import VirtualClock


async def test_the_rule_core_is_built_while_the_event_loop_runs(tmp_path: Path, sample_site: SiteDirectory) -> None:
    # The core reads every device of the site while it is built. Reading them here asks the event loop to answer (a
    # callback it must run) and waits for the answer: built on the loop, the loop cannot answer until the build is
    # over, and the wait runs out.
    loop = asyncio.get_running_loop()
    answered: list[bool] = []

    class Devices(dict[str, Device]):
        def values(self) -> Any:
            if not answered:
                gate = threading.Event()
                loop.call_soon_threadsafe(gate.set)
                answered.append(gate.wait(5))
            return super().values()

    sites = dataclasses.replace(sample_site, devices=Devices(sample_site.devices))
    svc = AlarmService.for_sites(make_engine(sqlite_url(tmp_path / "alarms.db")), sites, VirtualClock(), tick_s=3600)
    async with svc:
        assert answered == [True]
        assert len(svc.engine.devices) == len(sample_site.devices)
