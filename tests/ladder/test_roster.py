"""The roster answers "who sits in this seat now" from the sample site's shifts (local time, UTC+8)."""

from __future__ import annotations

from alerting.ladder import ContactKind, Fill, Seat
from backend.sites import SiteDirectory
from backend.sites.roster import SiteRoster, local_week_minute

# 2026-01-01T00:00:00Z is Thursday 08:00 in Beijing
THU_0800 = 1_767_225_600_000
HOUR = 3_600_000


def test_local_week_minute_is_beijing_time() -> None:
    assert local_week_minute(THU_0800) == (3, 8 * 60)
    assert local_week_minute(THU_0800 + 16 * HOUR) == (4, 0)  # Friday 00:00


def test_grid_worker_day_and_night_shift(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    assert where.grid == "c01-g1"
    assert where.community == "c01"
    day = roster.fill(Seat.GRID_WORKER, where, THU_0800 + HOUR)
    night = roster.fill(Seat.GRID_WORKER, where, THU_0800 + 13 * HOUR)  # 21:00
    assert [c.id for c in day.contacts] == ["c01-g1-w1"]
    assert day.via is Fill.HOLDER
    assert [c.id for c in night.contacts] == ["c01-g1-w2"]
    assert day.contacts[0].phone


def test_away_holder_falls_to_the_deputy_and_back(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    roster.mark_away("c01-g1-w1", until_ms=THU_0800 + 2 * HOUR, why="病假")
    fill = roster.fill(Seat.GRID_WORKER, where, THU_0800 + HOUR)
    assert fill.via is Fill.DEPUTY
    assert [c.id for c in fill.contacts] == ["c01-g1-w2"]
    assert "病假" in fill.note
    assert "c01-g1-w2" in fill.note
    assert roster.fill(Seat.GRID_WORKER, where, THU_0800 + 3 * HOUR).via is Fill.HOLDER  # back after the absence


def test_holder_and_deputy_away_is_a_vacancy(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    roster.mark_away("c01-b01-leader", THU_0800 + 5 * HOUR)
    roster.mark_away("c01-b01-u2-leader", THU_0800 + 5 * HOUR)
    fill = roster.fill(Seat.BUILDING_LEADER, where, THU_0800)
    assert fill.via is Fill.VACANT
    assert not fill.contacts
    assert "no deputy" in fill.note


def test_micro_fire_station_pages_the_whole_shift(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    fill = roster.fill(Seat.FIRE_STATION, roster.where(building="c01-b07"), THU_0800)
    assert len(fill.contacts) == 7
    assert fill.contacts[0].id == "c01-mfs-head"


def test_volunteers_on_duty_with_the_skill_nearest_first(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b20")
    fill = roster.fill(Seat.VOLUNTEERS, where, THU_0800 + 2 * HOUR, skill="first_aid")
    assert fill.contacts, "the sample site has first-aid volunteers on duty on a Thursday morning"
    people = [sample_site.responders[c.id] for c in fill.contacts]
    assert all("first_aid" in p.skills for p in people)
    origin = sample_site.buildings["c01-b20"]
    dist = [((sample_site.buildings[p.building].x - origin.x) ** 2 + (sample_site.buildings[p.building].y - origin.y) ** 2) ** 0.5
            if p.building else float("inf") for p in people]
    assert dist == sorted(dist)
    # weekend-only volunteers are not on duty on a Thursday
    weekend_only = {s.responder for s in sample_site.shifts if s.seat.value == "volunteer" and s.days == frozenset({5, 6})}
    assert weekend_only
    assert not weekend_only & {c.id for c in fill.contacts}
    excluded = roster.fill(Seat.VOLUNTEERS, where, THU_0800 + 2 * HOUR, skill="first_aid", exclude=frozenset({fill.contacts[0].id}))
    assert fill.contacts[0] not in excluded.contacts


def test_family_and_neighbours_of_a_vulnerable_household(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(household="c01-b01-1-102")
    assert where.vulnerable
    assert where.building == "c01-b01"
    fill = roster.fill(Seat.FAMILY, where, THU_0800)
    assert [c.kind for c in fill.contacts] == [ContactKind.FAMILY, ContactKind.NEIGHBOUR]
    assert fill.contacts[0].phone == "13491733095"
    assert roster.fill(Seat.FAMILY, roster.where(household="c01-b01-1-201"), THU_0800).via is Fill.VACANT


def test_duty_officers_by_community(sample_site: SiteDirectory) -> None:
    roster = SiteRoster(sample_site)
    where = roster.where(building="c01-b01")
    assert {c.id for c in roster.fill(Seat.DUTY_OFFICER, where, THU_0800 + HOUR).contacts} == {"c01-duty1", "c01-duty2"}
    assert {c.id for c in roster.fill(Seat.DUTY_OFFICER, where, THU_0800 + 13 * HOUR).contacts} == {"c01-duty3", "c01-duty4"}
