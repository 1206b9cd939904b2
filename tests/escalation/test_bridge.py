"""The bridge on real stores (SQLite and PostgreSQL): every alarm that becomes live and unacknowledged again gets
its ladder, exactly once, also across a crash and restart; the ladder learns of the console's moves from the
committed result; life safety first in the bridge's own queue; a severity rise re-enters the ladder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from alerting.book import AlarmBook
from alerting.ladder import Contact
from alerting.lifecycle import AlarmState, Move
from alerting.model import Persist, Place, Severity, Signal, SignalKind
from backend.ingest.handoff import Reading
from backend.notify import DeliveryStatus, Message
from backend.sites import SiteDirectory
from backend.stream import Event
from broker.kinds import DeviceKind
from tests.escalation.centre import BUILDING, Centre, centre
from tests.waiting import until

FIRE_ENTRY = {"c01-g1-w1", "c01-mfs-head"}  # the grid worker and the fire station's head are among the fire policy's pages


def state_of(c: Centre, alarm_id: str) -> AlarmState:
    assert c.alarms is not None
    alarm = c.alarms.store.get(alarm_id)
    assert alarm is not None
    return alarm.state


async def silence(c: Centre, alarm_id: str, minutes: float) -> None:
    assert c.alarms is not None
    await c.alarms.move(alarm_id, Move.SILENCE, "tech.wang", note="更换探头", until_ms=c.clock.now_ms() + round(minutes * 60_000))


# -- silenced -> raised: a maintenance window ends with the fault still present -------------------------------


async def test_a_window_that_ends_on_an_alarm_still_present_pages_again_once(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        aid = await c.raise_("residual_current", "device:c01-b01-rcm-1", severity=Severity.MAJOR, life_safety=False)
        await c.settle()
        assert c.pages(aid, "page") == ["c01-g1-w1"]
        await silence(c, aid, 30)
        await c.settle()
        assert c.escalation is not None
        held = await c.escalation.get(aid)
        assert held is not None
        assert held.stopped == "silenced"
        c.clock.advance(30 * 60)
        assert c.alarms is not None
        await c.alarms.tick()  # the window ends; the fault is still there
        await c.settle()
        assert c.pages(aid, "reopened") == ["c01-g1-w1"]
        assert state_of(c, aid) is AlarmState.NOTIFIED  # the new round's notice moved it, once
        again = await c.escalation.get(aid)
        assert again is not None
        assert (again.round, again.stopped) == (2, None)
        await c.restart()  # a restart re-derives nothing more: that entry has had its round
        await c.settle()
        assert c.pages(aid, "reopened") == ["c01-g1-w1"]


async def test_a_window_that_ended_while_the_bridge_was_down_pages_after_the_restart(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        aid = await c.raise_("residual_current", "device:c01-b01-rcm-1", severity=Severity.MAJOR, life_safety=False)
        await silence(c, aid, 30)
        await c.settle()
        await c._crash()  # the bridge's task is gone: what the window's end queues is lost with it
        c.clock.advance(30 * 60)
        assert c.alarms is not None
        await c.alarms.tick()
        assert state_of(c, aid) is AlarmState.RAISED
        assert c.pages(aid, "reopened") == []
        await c._build()  # the restart: re-derived from the stores
        await c.settle()
        assert c.pages(aid, "reopened") == ["c01-g1-w1"]
        await c.restart()
        await c.settle()
        assert c.pages(aid, "reopened") == ["c01-g1-w1"]  # exactly once


# -- suppressed -> raised: the cause is over, the effect remains ------------------------------------------------


async def test_a_released_suppressed_effect_gets_its_ladder_once(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        await c.raise_("power_cut", f"building:{BUILDING}", severity=Severity.MAJOR, life_safety=False)
        effect = await c.raise_("camera_offline", "device:c01-b01-cam-1", severity=Severity.MINOR, life_safety=False,
                                cause=f"building:{BUILDING}|power_cut")
        await c.settle()
        assert state_of(c, effect) is AlarmState.SUPPRESSED
        assert c.log(effect) == []  # held: nobody paged
        await c.clear("power_cut", f"building:{BUILDING}")  # the power is back, the camera is not
        c.clock.advance(301)
        assert c.alarms is not None
        await c.alarms.tick()
        await c.settle()
        assert state_of(c, effect) is AlarmState.NOTIFIED
        assert c.pages(effect, "page") != []  # the duty officers: its first round
        n = len(c.log(effect))
        await c.restart()
        await c.settle()
        assert len(c.log(effect)) == n


async def test_an_effect_released_while_the_bridge_was_down_gets_its_ladder_after_the_restart(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        await c.raise_("power_cut", f"building:{BUILDING}", severity=Severity.MAJOR, life_safety=False)
        effect = await c.raise_("camera_offline", "device:c01-b01-cam-1", severity=Severity.MINOR, life_safety=False,
                                cause=f"building:{BUILDING}|power_cut")
        await c.clear("power_cut", f"building:{BUILDING}")
        await c.settle()
        await c._crash()
        c.clock.advance(301)
        assert c.alarms is not None
        await c.alarms.tick()
        assert state_of(c, effect) is AlarmState.RAISED
        await c._build()
        await c.settle()
        pages = c.pages(effect, "page")
        assert pages != []
        await c.restart()
        await c.settle()
        assert c.pages(effect, "page") == pages


# -- reopen: the device alarms again while its clear awaits verification ---------------------------------------


async def test_a_smoke_alarm_that_comes_back_after_its_clear_pages_the_fire_entry_again(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        aid = await c.raise_()
        await c.settle()
        assert set(c.pages(aid, "page")) >= FIRE_ENTRY
        assert c.alarms is not None
        await c.alarms.move(aid, Move.ACKNOWLEDGE, "officer.li")
        await c.clear("smoke", "device:c01-b01-smoke-1")
        assert state_of(c, aid) is AlarmState.AWAITING_VERIFICATION
        await c.raise_()  # smoke again
        await c.settle()
        assert set(c.pages(aid, "reopened")) >= FIRE_ENTRY
        first = len(c.pages(aid, "reopened"))
        await c.restart()
        await c.settle()
        assert len(c.pages(aid, "reopened")) == first


async def test_a_smoke_alarm_back_while_the_bridge_was_down_pages_after_the_restart(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        aid = await c.raise_()
        await c.settle()
        assert c.alarms is not None
        await c.alarms.move(aid, Move.ACKNOWLEDGE, "officer.li")
        await c.clear("smoke", "device:c01-b01-smoke-1")
        await c.settle()
        await c._crash()
        await c.raise_()
        assert state_of(c, aid) is AlarmState.RAISED
        await c._build()
        await c.settle()
        assert set(c.pages(aid, "reopened")) >= FIRE_ENTRY
        first = len(c.pages(aid, "reopened"))
        await c.restart()
        await c.settle()
        assert len(c.pages(aid, "reopened")) == first


# -- the console's acknowledgement: learnt from the committed move, no round trip -----------------------------


async def test_the_officers_acknowledgement_reaches_the_ladder_without_a_refused_move(
    db: sa.Engine, sample_site: SiteDirectory, caplog: pytest.LogCaptureFixture,
) -> None:
    async with centre(db, sample_site) as c:
        aid = await c.raise_()
        await c.settle()
        assert c.alarms is not None
        assert c.escalation is not None
        caplog.set_level(logging.DEBUG, logger="backend.escalation")
        # what the console's acknowledge route does: the move through the alarm service; the ladder observes the result
        await c.alarms.move(aid, Move.ACKNOWLEDGE, "officer.li")
        await c.settle()
        assert [r.getMessage() for r in caplog.records if "not applied" in r.getMessage() or "refused" in r.getMessage()] == []
        assert [e.move for e in c.alarms.store.audit(aid)].count("acknowledge") == 1
        state = await c.escalation.get(aid)
        assert state is not None
        assert state.reached_ms(AlarmState.ACKNOWLEDGED) is not None
        # the field rungs still wait for their own answer, and the ladder says when each climbs (docs/escalation.md)
        assert {e.rung: e.progress for e in state.engagements} == {"grid_worker": None, "fire_station": None}
        rungs = {r["rung"]: r for r in (await c.escalation.timeline(aid)).rungs}
        station = rungs["fire_station"]
        assert (station["state"], station["waits_for"], station["command_room"]) == ("waiting", "acknowledged", False)
        assert station["climbs_at_ms"] == state.started_ms + 60_000
        assert station["climbs_to"] == "building_leader"
        assert [w["id"] for w in station["who"]][:1] == ["c01-mfs-head"]
        assert station["text"].startswith("微型消防站：等待本人确认，09:01:00 前未确认将升级至楼栋长")  # the site's time (Beijing)


# -- life safety first in the bridge's queue ---------------------------------------------------------------------


async def test_a_smoke_alarm_is_paged_before_a_backlog_of_a_thousand_minor_ladders(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site, rate_limit=100_000) as c:
        assert c.alarms is not None
        assert c.bridge is not None
        assert c.escalation is not None
        now = c.clock.now_ms()
        book = AlarmBook(id_prefix="M")
        minor: list[Persist] = []
        for i in range(1000):
            minor += book.signal(Signal(SignalKind.RAISE, "device_lost", f"device:lost-{i}", now, Severity.MINOR, False, False, "设备失联",
                                        Place(f"lost-{i}", None, BUILDING)), now)
        fire = book.signal(Signal(SignalKind.RAISE, "smoke", "device:c01-b01-smoke-1", now, Severity.CRITICAL, True, False, "烟感报警",
                                  Place("c01-b01-smoke-1", None, BUILDING)), now)
        await asyncio.to_thread(c.alarms.store.apply, minor + fire)  # committed as a mass outage and a fire a moment later are
        await c.bridge.on_actions(minor)  # told to the bridge as the alarm service tells it: the backlog is queued ...
        await c.bridge.on_actions(fire)  # ... and the fire behind it, before the bridge's task has worked any of it
        smoke = fire[0].alarm.id
        async with c.escalation:  # the timer and outbox loops run: notices go out as the bridge works
            await until(lambda: any(m.alarm_id == smoke for m in c.sent()), what="the smoke alarm's first page")
        order = [m.alarm_id for m in c.sent()]
        before = {a for a in order[: order.index(smoke)] if a != smoke}
        assert before == set(), f"{len(before)} minor ladders paged before the smoke alarm"


# -- real beats drill, life safety beats everything ----------------------------------------------------------------


async def test_a_real_fire_during_a_drill_storm_pages_the_grid_worker_within_the_same_second(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        assert c.escalation is not None
        worker = "c01-g1-w1"
        contact = Contact(worker, "网格员", phone="13800000000")
        for i in range(200):  # the drill's storm, all to the grid worker
            await c.escalation.dispatcher.deliver(Message(
                key=f"D{i}/1/{worker}", alarm_id=f"D{i}", contact=contact, channels=("app", "sms"), text=f"【演练】烟感报警 {i}",
                drill=True, outside_allowed=True, life_safety=True))
        assert len([m for m in c.sms.sent if m.drill]) == 6  # the drill was limited
        raised_ms = c.clock.now_ms()
        aid = await c.raise_()  # a real smoke alarm
        await c.settle()
        await c.escalation.deliver_pending()
        page = [r for r in c.receipts_seen if r.alarm_id == aid and r.contact == worker and r.channel in ("app", "sms")]
        assert {(r.channel, r.status) for r in page} == {("app", DeliveryStatus.DELIVERED), ("sms", DeliveryStatus.DELIVERED)}
        assert all(r.at_ms - raised_ms < 1000 for r in page)
        assert any(m.alarm_id == aid and m.contact.id == worker and m.reason == "page" and not m.drill for m in c.sms.sent)  # the page, not a summary


# -- a rising hazard re-enters the ladder at the new severity's entry ---------------------------------------------


async def test_a_severity_rise_brings_in_the_fire_station_live_and_after_a_restart(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        rcm = "device:c01-b01-rcm-1"
        aid = await c.raise_("residual_current", rcm, severity=Severity.MAJOR, life_safety=False)  # 320 mA: a pre-warning
        await c.settle()
        assert c.pages(aid, "page") == ["c01-g1-w1"]  # the grid worker's work order alone
        await c.raise_("residual_current", rcm, severity=Severity.CRITICAL, life_safety=False)  # 600 mA: the same alarm, higher
        await c.settle()
        assert c.alarms is not None
        assert "severity_raised" in [e.move for e in c.alarms.store.audit(aid)]
        joined = c.pages(aid, "severity_raised")
        assert "c01-mfs-head" in joined
        assert "c01-g1-w1" in joined  # now as the fire policy's grid worker rung: go, not a work order
        assert c.escalation is not None
        state = await c.escalation.get(aid)
        assert state is not None
        assert (state.policy, state.facts.severity) == ("electrical_critical", Severity.CRITICAL)

        other = await c.raise_("residual_current", "device:c01-b01-rcm-2", severity=Severity.MAJOR, life_safety=False)
        await c.settle()
        await c._crash()
        await c.raise_("residual_current", "device:c01-b01-rcm-2", severity=Severity.CRITICAL, life_safety=False)  # while down
        await c._build()
        await c.settle()
        assert "c01-mfs-head" in c.pages(other, "severity_raised")
        n = len(c.log(other))
        await c.restart()
        await c.settle()
        assert len(c.log(other)) == n


async def test_a_ladder_started_after_the_officer_acknowledged_takes_in_the_acknowledgement(
    db: sa.Engine, sample_site: SiteDirectory, caplog: pytest.LogCaptureFixture,
) -> None:
    async with centre(db, sample_site) as c:
        await c._crash()  # the bridge is down: the raise's start is lost with its queue
        aid = await c.raise_()
        assert c.alarms is not None
        await c.alarms.move(aid, Move.ACKNOWLEDGE, "officer.li")  # the console saw it first
        caplog.set_level(logging.INFO, logger="backend.escalation")
        await c._build()
        await c.settle()
        assert c.escalation is not None
        state = await c.escalation.get(aid)
        assert state is not None
        assert state.reached_ms(AlarmState.ACKNOWLEDGED) is not None
        assert set(c.pages(aid, "page")) >= FIRE_ENTRY  # the field rungs are paged all the same
        assert state_of(c, aid) is AlarmState.ACKNOWLEDGED
        assert [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()] == []


async def test_rederive_brings_one_alarms_ladder_in_line_with_the_store(db: sa.Engine, sample_site: SiteDirectory) -> None:
    async with centre(db, sample_site) as c:
        aid = await c.raise_("residual_current", "device:c01-b01-rcm-1", severity=Severity.MAJOR, life_safety=False)
        await silence(c, aid, 30)
        await c.settle()
        await c._crash()  # what the window's end queues is lost
        c.clock.advance(30 * 60)
        assert c.alarms is not None
        assert c.bridge is not None
        await c.alarms.tick()
        await c.bridge.rederive(aid)  # e.g. the maintenance-window code, after changing alarms itself
        assert c.pages(aid, "reopened") == ["c01-g1-w1"]
        await c.bridge.rederive(aid)
        assert c.pages(aid, "reopened") == ["c01-g1-w1"]


async def test_residual_current_rising_past_500_ma_brings_in_the_fire_station(db: sa.Engine, sample_site: SiteDirectory) -> None:
    box = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.ELECTRICAL and d.id not in sample_site.rule_settings)
    async with centre(db, sample_site, quiet=False) as c:  # the rules watch the site's devices: readings decide
        assert c.alarms is not None
        for value in (320.0, 330.0):
            c.clock.advance(60)
            t = c.clock.now_ms()
            await c.alarms.on_readings([Reading(box.id, box.gateway, "residual_current_ma", value, t, t)])
        await c.settle()
        [alarm] = c.alarms.store.open_alarms()
        assert (alarm.alarm_type, alarm.severity) == ("residual_current", Severity.MAJOR)
        assert c.pages(alarm.id, "severity_raised") == []
        c.clock.advance(60)
        t = c.clock.now_ms()
        await c.alarms.on_readings([Reading(box.id, box.gateway, "residual_current_ma", 600.0, t, t)])
        await c.settle()
        joined = set(c.pages(alarm.id, "severity_raised"))
        station = {r.id for r in sample_site.responders.values() if r.role.value in ("fire_station_head", "fire_station_member")
                   and r.community == sample_site.community_of_building(box.building)}
        assert joined & station, "the micro fire station joins when the leak passes the critical level"


async def test_a_maintenance_window_ended_on_a_smoke_detector_still_in_alarm_pages_again(db: sa.Engine, sample_site: SiteDirectory) -> None:
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE and d.building == BUILDING)
    async with centre(db, sample_site, quiet=False) as c:  # the stored windows need the site's devices
        aid = await c.raise_("smoke", f"device:{smoke.id}")
        await c.settle()
        assert c.alarms is not None
        w = await c.alarms.maintenance.create(building_id=BUILDING, scope="device", device_id=smoke.id, author="tech.wang", reason="更换探头",
                                              ends_ms=c.clock.now_ms() + 3_600_000, override_reason="探头更换，现场有人值守")
        await c.settle()
        assert state_of(c, aid) is AlarmState.SILENCED
        await c.alarms.maintenance.end(w.id, "tech.wang", "提前结束")  # the detector is still in alarm
        await c.settle()
        assert set(c.pages(aid, "reopened")) >= FIRE_ENTRY
        assert state_of(c, aid) is AlarmState.NOTIFIED


async def test_a_storms_ladders_start_once_each_and_its_alarms_are_notified_in_a_few_commits(db: sa.Engine, sample_site: SiteDirectory) -> None:
    """Issue 19: 100 smoke alarms committed together: every ladder starts once and every alarm is notified once,
    and the notify moves are committed together (a few commits, one per batch of starts), not one commit per alarm
    (each of which also copied the whole alarm book under the service's lock)."""
    async with centre(db, sample_site, rate_limit=100_000) as c:
        assert c.alarms is not None
        assert c.bridge is not None
        now = c.clock.now_ms()
        sigs = [Signal(SignalKind.RAISE, "smoke", f"device:storm-{i}", now, Severity.CRITICAL, True, False, "烟感报警",
                       Place(f"storm-{i}", None, BUILDING)) for i in range(100)]
        notify_commits: list[int] = []

        async def count(events: Sequence[Event]) -> None:
            n = sum(1 for e in events if isinstance(e, Persist) for a in e.audit if a.move == Move.NOTIFY.value)
            if n:
                notify_commits.append(n)

        c.alarms.stream.subscribe(count, name="test-notify-commits")
        raised = await c.alarms.in_core(lambda book, at: [a for s in sigs for a in book.signal(s, at)], lambda conn: None)
        await c.settle()
        ids = [a.alarm.id for a in raised if isinstance(a, Persist)]
        assert c.bridge.started == len(ids) == 100
        assert c.bridge.failures == 0
        assert sum(notify_commits) == 100, "every alarm notified once"
        assert len(notify_commits) <= 100 // 32 + 1, f"notify moves committed in {len(notify_commits)} commits"
        for alarm_id in ids:
            assert [e.move for e in c.alarms.store.audit(alarm_id)] == ["raise", "notify"]
            assert len([e for e in c.log(alarm_id) if e.kind == "notify"]) >= 1, "its ladder paged someone"
