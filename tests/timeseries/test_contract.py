"""One contract for every time-series store: what ingest writes comes back, once, at the asked resolution."""

from __future__ import annotations

import time

import pytest

from backend.ingest.handoff import Reading
from backend.store.timeseries import InvalidQuery, Resolution, TimeSeriesStore
from tests.timeseries.conftest import TinySite

MIN = 60_000
HOUR = 3_600_000


def base_ms() -> int:
    """A recent whole hour (InfluxDB buckets drop old points), two days back so every range is in the past."""
    return (int(time.time() * 1000) // HOUR - 48) * HOUR


def reading(device: str, metric: str, ts: int, value: float, drill: bool = False) -> Reading:
    return Reading(device, "gw", metric, value, ts, ts + 5, drill)


def test_raw_points_come_back_in_time_order_within_the_range(store: TimeSeriesStore, site: TinySite) -> None:
    d, t0 = site.devices[0], base_ms()
    store.write([reading(d, "temperature_c", t0 + i * 10_000, 20.0 + i) for i in range(12)][::-1])
    result = store.series(d, "temperature_c", t0 + 20_000, t0 + 60_000)
    assert result.resolution is Resolution.RAW
    assert [(p.ts_ms, p.mean, p.count) for p in result.points] == [(t0 + i * 10_000, 20.0 + i, 1) for i in range(2, 6)]


def test_writing_the_same_readings_twice_stores_them_once(store: TimeSeriesStore, site: TinySite) -> None:
    d, t0 = site.devices[0], base_ms()
    batch = [reading(d, "residual_current_ma", t0 + i * 1000, float(i)) for i in range(90)]
    store.write(batch)
    store.write(batch[30:])  # a replay after a crash overlaps what was stored
    raw = store.series(d, "residual_current_ma", t0, t0 + HOUR)
    assert len(raw.points) == 90
    minute = store.series(d, "residual_current_ma", t0, t0 + HOUR, every_ms=MIN)
    assert [(p.ts_ms, p.count) for p in minute.points] == [(t0, 60), (t0 + MIN, 30)]


def test_minute_buckets_hold_min_max_mean_and_count(store: TimeSeriesStore, site: TinySite) -> None:
    d, t0 = site.devices[1], base_ms()
    store.write([reading(d, "power_w", t0 + s * 1000, v) for s, v in [(0, 10.0), (20, 30.0), (59, 20.0), (60, 5.0), (119, 7.0)]])
    result = store.series(d, "power_w", t0, t0 + 2 * MIN, every_ms=MIN)
    assert result.resolution is Resolution.MINUTE
    assert [(p.ts_ms, p.min, p.max, p.mean, p.count) for p in result.points] == [(t0, 10.0, 30.0, 20.0, 3), (t0 + MIN, 5.0, 7.0, 6.0, 2)]


def test_long_ranges_are_served_from_coarser_rollups(store: TimeSeriesStore, site: TinySite) -> None:
    d, t0 = site.devices[1], base_ms()
    store.write([reading(d, "voltage_v", t0 + m * MIN, 220.0 + (m % 60)) for m in range(0, 180, 5)])
    day = store.series(d, "voltage_v", t0, t0 + 24 * HOUR)
    assert day.resolution is Resolution.MINUTE
    assert len(day.points) == 36
    month = store.series(d, "voltage_v", t0 - 20 * 24 * HOUR, t0 + 10 * 24 * HOUR)
    assert month.resolution is Resolution.HOUR
    assert [(p.ts_ms, p.count, p.min, p.max) for p in month.points] == [(t0 + h * HOUR, 12, 220.0, 275.0) for h in range(3)]


def test_latest_is_the_newest_value_of_each_metric_even_when_older_data_arrives_later(store: TimeSeriesStore, site: TinySite) -> None:
    d, t0 = site.devices[2], base_ms()
    store.write([reading(d, "temperature_c", t0 + 5000, 31.5), reading(d, "power_w", t0 + 5000, 100.0)])
    store.write([reading(d, "temperature_c", t0 + 1000, 25.0)])  # a late replay from the gateway's outbox
    latest = {v.metric: (v.value, v.ts_ms) for v in store.latest(d)}
    assert latest == {"temperature_c": (31.5, t0 + 5000), "power_w": (100.0, t0 + 5000)}


def test_a_buildings_readings_are_its_devices_only_oldest_first(store: TimeSeriesStore, site: TinySite) -> None:
    t0 = base_ms()
    store.write([reading(d, "temperature_c", t0 + i * 1000, float(i)) for i, d in enumerate(site.devices)])
    got = store.building_readings(site.building, t0, t0 + MIN)
    assert [(r.device_id, r.ts_ms) for r in got] == [(d, t0 + i * 1000) for i, d in enumerate(site.devices[:3])]
    assert [r.device_id for r in store.building_readings(site.building, t0, t0 + MIN, limit=2)] == list(site.devices[:2])
    assert [r.device_id for r in store.building_readings(site.other_building, t0, t0 + MIN, metric="temperature_c")] == [site.devices[3]]
    assert store.building_readings(site.other_building, t0, t0 + MIN, metric="power_w") == []


def test_drill_readings_never_enter_the_history(store: TimeSeriesStore, site: TinySite) -> None:
    d, t0 = site.devices[0], base_ms()
    store.write([reading(d, "residual_current_ma", t0, 500.0, drill=True), reading(d, "residual_current_ma", t0 + 1000, 3.0)])
    assert [p.mean for p in store.series(d, "residual_current_ma", t0, t0 + MIN).points] == [3.0]


def test_an_empty_range_is_refused_with_a_reason(store: TimeSeriesStore, site: TinySite) -> None:
    with pytest.raises(InvalidQuery, match="'to' must be after 'from'"):
        store.series(site.devices[0], "power_w", 1000, 1000)
