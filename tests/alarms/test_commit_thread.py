"""A smoke alarm's commit has its own thread: it does not queue behind other work in asyncio's shared pool (6
threads on this machine's 2 cores), where in a storm the notices', the ladder's and the feed's store calls waited."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from backend.sites.model import SiteDirectory
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind
from tests.alarms.test_service import event, first, service


async def test_a_smoke_alarm_commits_while_the_shared_thread_pool_is_busy(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    async with service(tmp_path, sample_site, clock) as svc:
        release = threading.Event()
        # every thread of the shared pool busy (its size is min(32, cores + 4); 40 is more than any machine's)
        blockers = [asyncio.create_task(asyncio.to_thread(release.wait, 30)) for _ in range(40)]
        try:
            await asyncio.sleep(0.1)
            await asyncio.wait_for(svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 1), clock.now_ms()), 10)
            [alarm] = svc.store.list(open_only=True)
            assert alarm.alarm_type == "smoke"
        finally:
            release.set()
            await asyncio.gather(*blockers)
