"""Roster resolution with stored overrides over the site file's shifts, on a virtual clock (pure: no I/O, no loop).

The sample site: grid c01-g1's day shift (08:00-20:00 Beijing) is c01-g1-w1 with deputy c01-g1-w2; building c01-b01's
leader is c01-b01-leader with deputy c01-b01-u2-leader; the micro fire station c01-mfs has its head and five members.
"""

from __future__ import annotations

from alerting.ladder import Fill, Seat
from backend.sites import SiteDirectory
from backend.sites.roster import OverrideKind, RosterOverride, SiteRoster
from broker.clock import VirtualClock

THU_0800 = 1_767_225_600_000  # 2026-01-01T00:00Z: Thursday 08:00 in Beijing
HOUR = 3_600_000


def ids(fill: object) -> list[str]:
    return [c.id for c in fill.contacts]  # type: ignore[attr-defined]


def test_sick_leave_hands_the_seat_to_the_deputy_for_its_range_only(sample_site: SiteDirectory) -> None:
    clock = VirtualClock(THU_0800)
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    roster.set_overrides([RosterOverride("o1", OverrideKind.SICK, THU_0800 + HOUR, THU_0800 + 3 * HOUR, responder="c01-g1-w1", reason="发烧")])
    assert ids(roster.fill(Seat.GRID_WORKER, where, clock.now_ms())) == ["c01-g1-w1"], "not yet: the sick leave starts at 09:00"
    clock.advance(3600)
    fill = roster.fill(Seat.GRID_WORKER, where, clock.now_ms())
    assert (ids(fill), fill.via) == (["c01-g1-w2"], Fill.DEPUTY)
    assert "病假" in fill.note
    clock.advance(2 * 3600)
    assert ids(roster.fill(Seat.GRID_WORKER, where, clock.now_ms())) == ["c01-g1-w1"], "the range is half-open: back at 11:00"


def test_a_swap_puts_the_substitute_in_the_holders_place(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    roster.set_overrides([RosterOverride("o2", OverrideKind.SWAP, THU_0800, THU_0800 + 12 * HOUR, responder="c01-g1-w1", substitute="c01-g2-w1",
                                         reason="调休")])
    fill = roster.fill(Seat.GRID_WORKER, where, THU_0800 + HOUR)
    assert ids(fill) == ["c01-g2-w1"]
    assert fill.via is Fill.DEPUTY
    assert "c01-g1-w1 (换班)" in fill.note
    assert "deputy c01-g2-w1 stands in" in fill.note


def test_a_one_off_assignment_holds_the_seat_before_any_shift_and_ends_on_time(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    roster.set_overrides([RosterOverride("o3", OverrideKind.ASSIGN, THU_0800, THU_0800 + 2 * HOUR, substitute="c01-vol01",
                                         seat=Seat.BUILDING_LEADER, scope="c01-b01", reason="楼栋长外出")])
    fill = roster.fill(Seat.BUILDING_LEADER, where, THU_0800 + HOUR)
    assert (ids(fill), fill.via) == (["c01-vol01"], Fill.HOLDER)
    assert ids(roster.fill(Seat.BUILDING_LEADER, roster.where(building="c01-b02"), THU_0800 + HOUR)) != ["c01-vol01"], "only that building"
    assert ids(roster.fill(Seat.BUILDING_LEADER, where, THU_0800 + 2 * HOUR)) == ["c01-b01-leader"]


def test_an_assigned_person_on_leave_is_not_paged(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    roster.set_overrides([
        RosterOverride("o4", OverrideKind.ASSIGN, THU_0800, THU_0800 + 2 * HOUR, substitute="c01-vol01", seat=Seat.BUILDING_LEADER, scope="c01-b01"),
        RosterOverride("o5", OverrideKind.LEAVE, THU_0800, THU_0800 + 2 * HOUR, responder="c01-vol01"),
    ])
    assert ids(roster.fill(Seat.BUILDING_LEADER, where, THU_0800 + HOUR)) == ["c01-b01-leader"], "falls back to the site file's shift"


def test_station_member_on_leave_leaves_the_rest_of_the_station(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b07")
    before = ids(roster.fill(Seat.FIRE_STATION, where, THU_0800))
    roster.set_overrides([RosterOverride("o6", OverrideKind.LEAVE, THU_0800, THU_0800 + HOUR, responder="c01-mfs-m1")])
    after = ids(roster.fill(Seat.FIRE_STATION, where, THU_0800))
    assert "c01-mfs-m1" in before
    assert after == [i for i in before if i != "c01-mfs-m1"]


def test_a_volunteer_away_is_not_paged(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    first = ids(roster.fill(Seat.VOLUNTEERS, where, THU_0800 + HOUR))[0]
    roster.set_overrides([RosterOverride("o7", OverrideKind.AWAY, THU_0800, THU_0800 + 2 * HOUR, responder=first, reason="外地")])
    assert first not in ids(roster.fill(Seat.VOLUNTEERS, where, THU_0800 + HOUR))


def test_replacing_the_set_takes_effect_on_the_next_fill(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    sick = RosterOverride("o8", OverrideKind.SICK, THU_0800, THU_0800 + 8 * HOUR, responder="c01-g1-w1")
    roster.set_overrides([sick])
    assert ids(roster.fill(Seat.GRID_WORKER, where, THU_0800 + HOUR)) == ["c01-g1-w2"]
    roster.set_overrides([])  # cancelled: back early
    assert ids(roster.fill(Seat.GRID_WORKER, where, THU_0800 + HOUR)) == ["c01-g1-w1"]


def test_fill_scope_and_rostered_tell_the_console_who_is_on_and_who_was_rostered(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    roster.set_overrides([RosterOverride("o9", OverrideKind.SICK, THU_0800, THU_0800 + 8 * HOUR, responder="c01-g1-w1")])
    assert roster.rostered(Seat.GRID_WORKER, "c01-g1", THU_0800 + HOUR) == ["c01-g1-w1"]
    assert ids(roster.fill_scope(Seat.GRID_WORKER, "c01-g1", THU_0800 + HOUR)) == ["c01-g1-w2"]
    assert roster.rostered(Seat.DUTY_OFFICER, "c01", THU_0800 + HOUR) == ["c01-duty1", "c01-duty2"]
