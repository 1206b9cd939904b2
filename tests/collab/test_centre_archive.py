"""The composition root (backend/centre.py `AlarmCore`, as backend/server.py enters it) runs the archiver from the
`alarms` settings: a false alarm is archived by `system` after `archive_after_days` on the virtual clock; an alarm
closed before a shutdown that fell due while the centre was down is archived as soon as the next AlarmCore starts."""

from __future__ import annotations

from pathlib import Path

from alerting.lifecycle import Move
from backend.settings import AlarmsConfig, Settings
from backend.sites import SiteDirectory
from broker.clock import VirtualClock
from tests.forward.rig import THU_0900, rig

DAY_S = 86_400


async def test_alarm_core_archives_after_the_configured_quiet_days_and_catches_up_after_a_restart(tmp_path: Path, sample_site: SiteDirectory) -> None:
    settings = Settings(alarms=AlarmsConfig(archive_after_days=2, archive_check_every_s=3600))
    clock = VirtualClock(THU_0900)
    async with rig(tmp_path, sample_site, settings, clock=clock) as r:
        assert r.core.archiver is not None
        first = await r.raise_fire()
        await r.alarms.move(first, Move.MARK_FALSE, "duty1", note="住户做饭")
        clock.advance(1 * DAY_S)
        await r.core.archiver.checked_after(r.core.archiver.checks)
        assert r.alarms.store.get(first).state.value == "false_alarm"  # type: ignore[union-attr]
        clock.advance(1.1 * DAY_S)
        await r.core.archiver.checked_after(r.core.archiver.checks)
        entry = r.alarms.store.audit(first)[-1]
        assert (entry.move, entry.actor) == ("archive", "system")
        second = await r.raise_fire(subject="device:c01-b01-smoke-2")
        await r.alarms.move(second, Move.MARK_FALSE, "duty1")
    clock.advance(3 * DAY_S)  # the centre is down meanwhile
    async with rig(tmp_path, sample_site, settings, clock=clock) as r:
        assert r.core.archiver is not None
        assert r.core.archiver.archived == 1, "archived while starting"
        assert r.alarms.store.get(second).state.value == "archived"  # type: ignore[union-attr]
