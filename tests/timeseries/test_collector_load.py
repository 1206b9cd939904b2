"""What a drain of readings leaves for Python's garbage collector to walk (issue 19): the readings themselves are not
tracked, and devices with the same tags share one `DeviceTags`."""

from __future__ import annotations

import gc
import pickle

from backend.store.timeseries import TagDirectory
from backend.store.timeseries.model import Reading
from tests.timeseries.conftest import TinySite


def test_a_reading_is_a_plain_value_the_collector_does_not_track() -> None:
    r = Reading("d1", "gw1", "temperature_c", 21.5, 10, 11)
    assert not gc.is_tracked(r), "a drain holds tens of thousands: none of them is walked by a young collection"
    assert r.drill is False
    assert r == Reading("d1", "gw1", "temperature_c", 21.5, 10, 11, False)
    assert r != Reading("d1", "gw1", "temperature_c", 21.5, 10, 11, True)
    assert hash(r) == hash(Reading("d1", "gw1", "temperature_c", 21.5, 10, 11))
    assert pickle.loads(pickle.dumps(r)) == r
    assert Reading(*("d1", "gw1", "power_w@2", 3.0, 1, 2, True)).metric == "power_w@2"


def test_devices_with_the_same_tags_share_them(site: TinySite) -> None:
    tags = TagDirectory(site.sites)
    a, b, c, other = site.devices  # three electrical monitors in one building, one in another
    assert tags.tags(a) is tags.tags(b) is tags.tags(c)
    assert tags.tags(a).building == site.building
    assert tags.tags(other) is not tags.tags(a)
    assert tags.tags(other).building == site.other_building
    assert tags.tags("not-in-the-directory-1") is tags.tags("not-in-the-directory-2")
    assert tags.tags("not-in-the-directory-1").building == ""
