"""A roster override takes effect on the next alarm's ladder, through the real escalation service, without a
restart; a restart (a new service and roster over the same database) keeps it; cancelling it takes effect at once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from alerting.ladder import Fill, Seat
from backend.api.auth import Territory
from backend.duty import DutyService, DutyStore, OverrideRequest
from backend.duty.service import overdue_rungs
from backend.escalation.service import rungs_json
from backend.sites import SiteDirectory
from backend.sites.roster import OverrideKind, SiteRoster
from tests.escalation.helpers import fire, make_rig

HOUR = 3_600_000
EVERYWHERE = Territory("all", None, None, None)


@pytest.mark.asyncio
async def test_sick_leave_entered_through_the_duty_service_pages_the_deputy_on_the_next_alarm(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    duty = DutyService(DutyStore(rig.store.engine), sample_site, rig.roster, rig.clock)
    await rig.service.start(fire("A1", "c01-b01", raised_ms=rig.clock.now_ms(), roster=rig.roster))
    first = (await rig.service.timeline("A1")).engaged["grid_worker"]
    assert first["contacts"] == ["c01-g1-w1"]

    now = rig.clock.now_ms()
    duty.add_override(OverrideRequest(OverrideKind.SICK, now, now + 4 * HOUR, "发烧请假", responder="c01-g1-w1"), "duty", EVERYWHERE)
    rig.clock.advance(60)
    await rig.service.start(fire("A2", "c01-b02", raised_ms=rig.clock.now_ms(), roster=rig.roster))
    second = (await rig.service.timeline("A2")).engaged["grid_worker"]
    assert second["contacts"] == ["c01-g1-w2"], "the deputy: the override took effect on the next alarm, no restart"
    assert second["via"] == Fill.DEPUTY.value
    await rig.service.deliver_pending()
    assert "c01-g1-w2" in {m.contact.id for m in rig.sms.sent}

    # a restart: a new roster and duty service over the same database load the stored override
    fresh = SiteRoster(sample_site)
    DutyService(DutyStore(rig.store.engine), sample_site, fresh, rig.clock)
    assert [c.id for c in fresh.fill(Seat.GRID_WORKER, fresh.where(building="c01-b01"), rig.clock.now_ms()).contacts] == ["c01-g1-w2"]

    [live] = duty.store.overrides(live_at_ms=rig.clock.now_ms())
    duty.cancel_override(live.override.id, "duty", "提前返岗", EVERYWHERE)
    rig.clock.advance(60)
    await rig.service.start(fire("A3", "c01-b03", raised_ms=rig.clock.now_ms(), roster=rig.roster))
    assert (await rig.service.timeline("A3")).engaged["grid_worker"]["contacts"] == ["c01-g1-w1"], "back early: cancelled at once"


@pytest.mark.asyncio
async def test_a_fire_unacknowledged_past_its_rung_deadline_is_overdue_in_the_handover(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    duty = DutyService(DutyStore(rig.store.engine), sample_site, rig.roster, rig.clock)
    raised = rig.clock.now_ms()
    await rig.service.start(fire("F1", "c01-b01", raised_ms=raised, roster=rig.roster))
    record = SimpleNamespace(id="F1", title="烟感报警", alarm_type="smoke", severity="critical", state="notified", community_id="c01", drill=False,
                             building_id="c01-b01", device_id="d1", raised_at_ms=raised, silenced_until_ms=None, silenced_by=None)

    async def overdue(alarm_id: str, now_ms: int) -> list[str]:
        state = await rig.service.get(alarm_id)
        assert state is not None
        return overdue_rungs(rungs_json(state, rig.policies, 480), now_ms)

    fresh = await duty.snapshot("c01", None, [record], overdue)
    assert ([a["id"] for a in fresh.open_alarms], fresh.overdue) == (["F1"], [])
    rig.clock.advance(61)  # past the grid worker's and the station's 60 s to acknowledge
    await rig.service.run_due()
    late = await duty.snapshot("c01", None, [record], overdue)
    [row] = late.overdue
    assert row["id"] == "F1"
    assert {"网格员", "微型消防站"} <= set(row["rungs"]), row["rungs"]
    assert row["raised_local"] == "2026-01-01 09:00", "Beijing time"
    assert (await duty.snapshot("c02", None, [record], overdue)).overdue == [], "another community's handover leaves it out"
