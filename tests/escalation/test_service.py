"""The escalation service on SQLite and a virtual clock: persistence, notices, receipts, timelines, misses."""

from __future__ import annotations

import json
from pathlib import Path

from alerting.lifecycle import AlarmState
from alerting.model import Severity
from backend.notify import DeliveryStatus
from backend.sites import SiteDirectory
from backend.stream import LadderStep, NoticeSent
from broker.topics import responder_notice_topic
from tests.escalation.helpers import THU_0900, fire, make_rig


async def test_fire_alarm_pages_grid_worker_and_fire_station_and_records_receipts(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    state = await rig.service.start(fire(roster=rig.roster))
    assert {e.rung for e in state.engagements} == {"grid_worker", "fire_station"}
    assert await rig.service.deliver_pending() == 8  # grid worker + 7 on the fire station's shift
    topics = {t for t, _, _ in rig.published}
    assert str(responder_notice_topic("c01-g1-w1")) in topics
    assert str(responder_notice_topic("c01-mfs-head")) in topics
    notice = json.loads(next(p for t, p, _ in rig.published if t.endswith("/c01-g1-w1")))
    assert notice["text"].startswith("【守望】紧急烟感报警")
    assert notice["link"] is None  # any broker client may read it (issue 22): no one-tap link
    assert "/r/" not in notice["text"]
    assert any(m.contact.id == "c01-g1-w1" and "https://sw.example/r/A1/1/c01-g1-w1" in m.text for m in rig.sms.sent)  # her own SMS has it
    receipts = rig.receipts.for_alarm("A1")
    by = {(r.contact, r.channel): r.status for r in receipts}
    assert by[("c01-g1-w1", "app")] is DeliveryStatus.DELIVERED
    assert by[("c01-g1-w1", "sms")] is DeliveryStatus.DELIVERED
    assert by[("c01-g1-w1", "console")] is DeliveryStatus.DELIVERED
    assert by[("c01-mfs-head", "voice")] is DeliveryStatus.DELIVERED
    assert await rig.service.deliver_pending() == 0  # each notice goes out once


async def test_start_is_idempotent(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    first = await rig.service.start(fire(roster=rig.roster))
    again = await rig.service.start(fire(roster=rig.roster))
    assert again == first
    assert rig.store.outbox_counts() == {"pending": 8}


async def test_missed_deadline_climbs_on_the_virtual_clock_and_is_counted(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire(roster=rig.roster))
    await rig.service.observe("A1", AlarmState.ACKNOWLEDGED, "c01-mfs-head")
    rig.clock.advance(59.9)
    assert await rig.service.run_due() == 1  # the grid worker's repeat at 30 s (the fire station acknowledged: no repeats)
    before = rig.store.misses_by_rung()
    assert before == {}
    rig.clock.advance(0.1)  # 60 s: the grid worker has not acknowledged
    assert await rig.service.run_due() == 1
    assert rig.store.misses_by_rung() == {"grid_worker": 1}
    timeline = await rig.service.timeline("A1")
    assert timeline.missed == {"grid_worker": ["acknowledged"]}
    assert "building_leader" in timeline.engaged
    assert timeline.reached == {"acknowledged": 0}
    assert rig.store.misses_by_rung(drill=True) == {}


async def test_time_to_each_field_state_is_stored(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire(roster=rig.roster))
    rig.clock.advance(12)
    await rig.service.observe("A1", AlarmState.ACKNOWLEDGED, "c01-mfs-m1")
    rig.clock.advance(8)
    await rig.service.observe("A1", AlarmState.EN_ROUTE, "c01-mfs-m1")
    rig.clock.advance(100)
    await rig.service.observe("A1", AlarmState.ON_SCENE, "c01-mfs-m1")
    rig.clock.advance(300)
    state = await rig.service.observe("A1", AlarmState.HANDLED, "c01-mfs-m1")
    assert state.stopped == "handled"
    t = await rig.service.timeline("A1")
    assert t.reached == {"acknowledged": 12_000, "en_route": 20_000, "on_scene": 120_000, "handled": 420_000}
    assert t.verified_after_ms == 120_000
    assert rig.store.next_due_ms() is None


async def test_restart_rederives_timers_from_the_store(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire(roster=rig.roster, alarm_type="electrical", severity=Severity.MAJOR))
    due = rig.store.next_due_ms()
    assert due == THU_0900 + 120_000  # grid_worker_workorder: first repeat at 120 s
    # a new process (new service, same database) long after: every passed step fires at once on entry
    later = make_rig(tmp_path, sample_site)
    later.clock.advance(400)
    async with later.service:
        assert later.service.ready.is_set()
        log = later.store.log("A1")
    kinds = [e.kind for e in log]
    assert "deadline_missed" in kinds  # acknowledged within 300 s
    assert kinds.count("repeated") == 1  # the repeats that fell due while down fold into one


async def test_drill_stays_inside_unless_asked_and_a_real_alarm_during_a_drill_goes_out(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire("D1", drill=True, roster=rig.roster))
    await rig.service.start(fire("R1", building="c01-b02", roster=rig.roster))
    await rig.service.start(fire("D2", building="c01-b03", drill=True, drill_outside=True, roster=rig.roster))
    await rig.service.deliver_pending()
    sms_alarms = {m.alarm_id for m in rig.sms.sent}
    assert sms_alarms == {"R1", "D2"}
    d1 = {r.channel: r.status for r in rig.receipts.for_alarm("D1") if r.contact == "c01-g1-w1"}
    assert d1 == {"console": DeliveryStatus.DELIVERED, "app": DeliveryStatus.DELIVERED, "sms": DeliveryStatus.WITHHELD_DRILL}
    assert all(m.text.startswith("【演练】") for m in rig.sms.sent if m.alarm_id == "D2")
    assert not any("演练" in m.text for m in rig.sms.sent if m.alarm_id == "R1")


async def test_vulnerable_sos_reaches_family_by_sms(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire("S1", alarm_type="sos", household="c01-b01-1-102", building="c01-b01", roster=rig.roster))
    await rig.service.deliver_pending()
    assert not {"13491733095", "13632140838"} & {m.contact.phone for m in rig.sms.sent}  # the grid worker calls back first (回访)
    rig.clock.advance(60)  # nobody recorded the call-back's outcome in time
    await rig.service.run_due()
    await rig.service.deliver_pending()
    phones = {m.contact.phone for m in rig.sms.sent}
    assert {"13491733095", "13632140838"} <= phones  # the son and the neighbour


async def test_volunteer_decline_through_the_service_pages_the_next(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    await rig.service.start(fire(roster=rig.roster))
    rig.clock.advance(120)  # nobody verified: treated as real, volunteers paged
    await rig.service.run_due()
    state = await rig.service.get("A1")
    assert state is not None
    vols = state.engagement("volunteers_extinguisher")
    assert vols is not None
    assert len(vols.contacts) == 2
    first = vols.contacts[0].id
    after = await rig.service.decline("A1", first)
    e = after.engagement("volunteers_extinguisher")
    assert e is not None
    assert first not in [c.id for c in e.contacts]
    assert len(e.contacts) == 2


async def test_live_console_sees_every_step(tmp_path: Path, sample_site: SiteDirectory) -> None:
    rig = make_rig(tmp_path, sample_site)
    with rig.console.tap() as sub:
        await rig.service.start(fire(roster=rig.roster))
        await rig.service.deliver_pending()
        events = [e.as_json() for e in [sub.get_nowait() for _ in range(sub.qsize())] if isinstance(e, LadderStep | NoticeSent)]
    kinds = {(e["type"], e.get("kind")) for e in events}
    assert ("escalation", "paged") in kinds
    assert sum(1 for e in events if e["type"] == "notice") == 8
