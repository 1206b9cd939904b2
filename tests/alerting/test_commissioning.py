"""Commissioning is a state, not a storm (issue 21): a device of the site directory never heard since it was added is
not yet commissioned (未上线), never lost. Past its absence window it is counted in ONE notice per gateway
(`devices_uncommissioned`, info); a device heard once and silent since is lost (`comm_lost`) as before; what was
heard survives a restart (the snapshot). Before, a cold start raised one comm_lost per silent device: 546 at +3 min
and about 2,200 at +15 min on the sample community, each paging the duty officers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alerting.engine import DEVICES_UNCOMMISSIONED, Engine
from alerting.lifecycle import Move
from alerting.model import Severity
from broker.kinds import AvailabilityState, EventKind
from tests.alerting.site import DEVICES, T0, FakeSite, S, alarms, by_type, engine
from tests.alerting.test_rules import R

DAY = 86_400 * S


def _lost_devices(eng: Engine) -> list[str]:
    """Devices with a comm_lost alarm (a gateway's missing patrol heartbeat is the gateway's own, judged apart)."""
    return sorted(a.key.subject for a in by_type(eng, "comm_lost") if a.key.subject.startswith("device:"))


def _notices(eng: Engine) -> dict[str, str]:
    return {a.key.subject: a.detail or "" for a in by_type(eng, DEVICES_UNCOMMISSIONED)}


def test_a_cold_start_with_silent_devices_raises_no_device_lost_and_one_notice_per_gateway() -> None:
    eng = engine(commissioned=False)
    assert alarms(eng.tick(T0 + 180 * S)) == [], "inside every window: nothing yet"
    out = alarms(eng.tick(T0 + 181 * S))  # the cameras and electrical monitors (3 x 60 s) would have been lost here
    assert {a.alarm_type for a in out} <= {DEVICES_UNCOMMISSIONED, "comm_lost"}
    assert _lost_devices(eng) == []
    assert [a.key.subject for a in out if a.alarm_type == DEVICES_UNCOMMISSIONED] == ["gateway:g1", "gateway:g2"]
    assert {a.severity for a in by_type(eng, DEVICES_UNCOMMISSIONED)} == {Severity.INFO}
    assert _notices(eng)["gateway:g1"].startswith("3 台设备自加入以来从未上报"), "c1, e1, box"
    eng.tick(T0 + 3 * DAY)  # the smoke detectors and the SOS button (a day each) join the same notice
    assert _lost_devices(eng) == []
    assert list(_notices(eng)) == ["gateway:g1", "gateway:g2"]
    detail = _notices(eng)["gateway:g1"]
    assert detail.startswith("7 台")
    assert detail.split("：")[1].startswith("烟感 3 台"), f"life safety first: {detail}"
    assert sum(1 for k in eng.book.open if k.alarm_type == DEVICES_UNCOMMISSIONED) == 2, "one notice per gateway, however many devices"


def test_a_device_heard_once_then_silent_is_lost_and_a_first_report_leaves_the_notice() -> None:
    eng = engine(commissioned=False)
    eng.on_readings([R("c1", "fps_fps", 25, T0 + 10 * S)], T0 + 10 * S)  # c1 commissioned
    eng.tick(T0 + 191 * S)
    assert _lost_devices(eng) == ["device:c1"], "heard once, silent past its window: lost as before"
    assert _notices(eng)["gateway:g1"].startswith("2 台"), "e1 and box still never heard"
    eng.on_readings([R("e1", "voltage_v", 220, T0 + 200 * S), R("box", "voltage_v", 220, T0 + 200 * S)], T0 + 200 * S)
    assert "gateway:g1" not in _notices(eng), "all its overdue devices reported: the notice closes"
    assert "gateway:g2" in _notices(eng)
    eng.tick(T0 + 381 * S)
    assert _lost_devices(eng) == ["device:box", "device:c1", "device:e1"]


def test_drill_traffic_does_not_commission_a_device_and_the_gateways_offline_word_is_not_loss() -> None:
    eng = engine(commissioned=False)
    eng.on_readings([R("c1", "fps_fps", 25, T0 + 10 * S, drill=True)], T0 + 10 * S)
    assert alarms(eng.on_availability("c2", AvailabilityState.OFFLINE, T0 + 20 * S))[0].alarm_type == DEVICES_UNCOMMISSIONED
    assert eng.on_availability("c2", AvailabilityState.OFFLINE, T0 + 21 * S) == [], "said again: nothing new"
    eng.tick(T0 + 3 * DAY)
    assert _lost_devices(eng) == []
    assert _notices(eng)["gateway:g1"].startswith("7 台"), "c1 heard only in a drill: still waiting"
    eng.on_event("p1", "g1", EventKind.BATTERY_OK, T0 + 3 * DAY + S)  # any real message commissions it
    assert _notices(eng)["gateway:g1"].startswith("6 台")


def test_a_restart_turns_neither_lost_devices_into_uncommissioned_ones_nor_the_reverse() -> None:
    eng = engine(commissioned=False)
    eng.on_readings([R("c1", "fps_fps", 25, T0 + 10 * S)], T0 + 10 * S)  # heard once; c2, e1, box never
    snap = {k: np.array(v, copy=True) for k, v in eng.snapshot().items()}
    open_alarms = list(eng.book.open.values())
    fresh = Engine(eng.rules, FakeSite(), T0 + 100 * S)  # the new process starts: every device is "added" again
    fresh.book.load(open_alarms)
    fresh.restore(snap)
    fresh.tick(T0 + 191 * S)
    assert _lost_devices(fresh) == ["device:c1"], "heard before the restart: lost"
    # never heard before the restart: still waiting for commissioning, on the windows that began before it
    assert _notices(fresh)["gateway:g1"].startswith("2 台")
    assert _notices(fresh)["gateway:g2"].startswith("1 台")
    # a second restart with the notices open: they are re-derived, not counted twice, and close when the devices report
    snap2 = {k: np.array(v, copy=True) for k, v in fresh.snapshot().items()}
    again = Engine(eng.rules, FakeSite(), T0 + 200 * S)
    again.book.load(list(fresh.book.open.values()))
    again.restore(snap2)
    again.on_readings([R("c2", "fps_fps", 25, T0 + 201 * S)], T0 + 201 * S)
    assert "gateway:g2" not in _notices(again)
    assert _lost_devices(again) == ["device:c1"]


def test_a_snapshot_from_before_commissioning_judges_its_devices_as_it_did() -> None:
    eng = engine(commissioned=False)
    snap: dict[str, npt.NDArray[np.generic]] = {k: np.array(v, copy=True) for k, v in eng.snapshot().items()
                                               if k not in ("presence.heard", "presence.uncommissioned")}
    fresh = Engine(eng.rules, FakeSite(), T0)
    fresh.restore(snap)
    fresh.tick(T0 + 181 * S)
    assert len(_lost_devices(fresh)) == sum(1 for d in DEVICES if d.report_interval_s == 60), "no history: judged as before"
    assert _notices(fresh) == {}


def test_a_notice_a_person_closed_is_not_reopened_by_a_device_commissioning_but_by_a_new_one_overdue() -> None:
    eng = engine(commissioned=False)
    eng.tick(T0 + 181 * S)
    [notice] = [a for a in by_type(eng, DEVICES_UNCOMMISSIONED) if a.key.subject == "gateway:g1"]
    eng.move(notice.id, Move.MARK_FALSE, "duty1", T0 + 182 * S, note="装修中，设备未安装")
    assert "gateway:g1" not in _notices(eng)
    assert alarms(eng.on_readings([R("c1", "fps_fps", 25, T0 + 190 * S)], T0 + 190 * S)) == [], "one more commissioned: nothing to say"
    eng.tick(T0 + 3 * DAY)  # the smoke detectors and the SOS button become overdue: a new notice counts every device still waiting
    assert _notices(eng)["gateway:g1"].startswith("6 台")


def _lost_gateways(eng: Engine) -> list[str]:
    return sorted(a.key.subject for a in by_type(eng, "comm_lost") if a.key.subject.startswith("gateway:"))


def test_a_gateway_never_heard_is_not_lost_one_heard_then_silent_is_and_that_survives_a_restart() -> None:
    """A gateway of the directory that never sent anything (not installed yet) is not a lost gateway: before, every one
    of them raised a major comm_lost ("patrol heartbeat missing", paging people) two hours after a cold start."""
    eng = engine(commissioned=False)
    eng.on_patrol("g1", 3600.0, T0 + 10 * S)  # g1 is installed and patrols; g2 never says a word
    snap = eng.snapshot()
    again = Engine(eng.rules, FakeSite(), T0 + 20 * S)
    again.restore(snap)
    for e in (eng, again):
        e.tick(T0 + 3 * 3600 * S)
        assert _lost_gateways(e) == ["gateway:g1"], "g1 heard once and silent past its window: lost; g2 never heard: not lost"
        assert "gateway:g2" in _notices(e), "g2's devices are in its commissioning notice instead"
