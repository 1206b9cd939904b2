"""Backend `kill -9` during escalations: the backend (`shouwang run --no-simulate`) is a real subprocess on a real
Mosquitto with persistence. A smoke alarm pages the grid worker; the backend is killed with SIGKILL; while it is
dead a second smoke event arrives and the grid worker's 4 s deadline passes. After a restart on the same data
folder: the overdue step (page the building leader) fires at once, the step after it (the duty officer) on
time, and the smoke event sent while the backend was dead becomes an alarm and is paged: no life-safety loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.process import MosquittoProcess
from tests.faults.helpers import GATEWAY, BackendProcess, SmokePublisher, listening, smoke_id, until, write_fixture_files

pytestmark = pytest.mark.mosquitto


async def test_kill9_during_escalation_resumes_the_ladder_and_loses_no_alarm(tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    central = mosquitto_factory("central", persistence=True)
    site, policy = write_fixture_files(tmp_path)
    backend = BackendProcess(tmp_path / "var", central.url, site, policy).start()
    gw = SmokePublisher(central.host, central.port)
    try:
        async with listening(central.host, central.port) as apps:
            gw.smoke(GATEWAY, smoke_id(1), "k9-1")
            await until(lambda: apps.to("gw1"), 20, "the grid worker's page for the first alarm")
            first_alarm = apps.to("gw1")[0][0].alarm_id
            backend.kill9()
            killed = time.monotonic()
            gw.smoke(GATEWAY, smoke_id(2), "k9-2")  # the backend is dead: the broker keeps it for ingest's session
            await until(gw.all_acknowledged, 10, "the broker to take the second smoke event")
            assert not apps.to("bl1"), "the building leader was paged before the grid worker's deadline"
            # The grid worker's 4 s deadline passes while the backend is dead (a real wait: the timer runs in the dead process's clock).
            await until(lambda: time.monotonic() - killed > 5, 10, "the deadline to pass")
            backend.start()
            restarted = time.monotonic()
            bl = await until(lambda: apps.to("bl1", first_alarm), 20, "the overdue step (building leader) after the restart")
            assert bl[0][1] - restarted < 10, "the overdue step fires at once after the restart"
            duty = await until(lambda: apps.to("duty1", first_alarm), 20, "the next step (duty officer) on time")
            # The deadline counts from when the building leader was paged (the notice's issue time, the centre's clock):
            # on a loaded machine the restarted backend's publisher may deliver that first page late, so arrival times
            # would understate the wait the building leader had.
            gap = (duty[0][0].issued_ts_ms - bl[0][0].issued_ts_ms) / 1000
            assert 3.9 <= gap <= 9.0, f"the duty officer was paged {gap:.1f} s after the building leader; the deadline is 4 s"
            assert duty[0][1] >= bl[0][1], "the building leader's page arrived first"
            second = await until(lambda: [n for n, _ in apps.to("gw1") if n.alarm_id != first_alarm], 20,
                                 "the page for the smoke event sent while the backend was dead")
            rows = await backend.alarms(open="true")
            assert {r["device_id"] for r in rows if r["alarm_type"] == "smoke"} == {smoke_id(1), smoke_id(2)}
            assert second[0].alarm_id in {r["id"] for r in rows}
            assert len({r["id"] for r in rows if r["device_id"] == smoke_id(1)}) == 1, "the restart did not raise the first alarm twice"
    finally:
        gw.close()
        backend.stop()
