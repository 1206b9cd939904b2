"""One site time zone (settings `site.time_zone`): the maintenance windows' zone and the duty rosters' UTC offset
follow it; the older keys still work alone, and one that disagrees with the site is refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.settings import load_settings


def test_the_older_zone_keys_follow_the_site() -> None:
    s = load_settings(None)
    assert (s.site.time_zone, s.maintenance.time_zone, s.escalation.utc_offset_min) == ("Asia/Shanghai", "Asia/Shanghai", 480)
    s = load_settings(None, site={"time_zone": "Asia/Urumqi"})
    assert (s.maintenance.time_zone, s.escalation.utc_offset_min) == ("Asia/Urumqi", 360)


def test_older_keys_alone_keep_working() -> None:
    s = load_settings(None, maintenance={"time_zone": "Asia/Tokyo"})
    assert (s.site.time_zone, s.escalation.utc_offset_min) == ("Asia/Tokyo", 540)
    assert load_settings(None, escalation={"utc_offset_min": 480}).escalation.utc_offset_min == 480


def test_a_disagreeing_key_or_an_unknown_zone_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValidationError, match=r"escalation.utc_offset_min \(420\).*set site.time_zone"):
        load_settings(None, escalation={"utc_offset_min": 420})
    with pytest.raises(ValidationError, match=r"remove maintenance.time_zone"):
        load_settings(None, site={"time_zone": "Asia/Shanghai"}, maintenance={"time_zone": "Europe/Berlin"})
    with pytest.raises(ValidationError, match=r"unknown time zone 'Mars/Base'"):
        load_settings(None, site={"time_zone": "Mars/Base"})
