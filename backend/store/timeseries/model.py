"""The time-series store interface: what ingest writes and what the console asks.

How this works: a `TimeSeriesStore` is a blocking object (its callers run it in a worker thread) with two
implementations, embedded SQLite (the default) and InfluxDB 2.x. Writes are idempotent, keyed by
(device, metric, source timestamp in ms): writing the same reading twice stores it once, so a replay after
a crash never duplicates. A store that cannot take a write raises `StoreUnavailable`; the caller keeps the
readings (ingest's journal) and retries.

Exceptions:

    TimeSeriesError
    ├── StoreUnavailable      the store is down, slow beyond its timeout, or refused the write; retry later
    └── InvalidQuery          the question is malformed (empty range, unknown resolution); say what to fix

Series are served at one of three resolutions: raw points, 1-minute and 1-hour rollups (min, max, mean,
count per bucket). `choose_resolution` picks the coarsest one that answers a question well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import msgspec

from backend.errors import BackendError
from backend.sites.model import SiteDirectory

__all__ = [
    "MINUTE_MS",
    "DeviceTags",
    "InvalidQuery",
    "LatestValue",
    "Reading",
    "Resolution",
    "SeriesBucket",
    "SeriesResult",
    "StoreUnavailable",
    "StoredReading",
    "TagDirectory",
    "TimeSeriesError",
    "TimeSeriesStore",
    "choose_resolution",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# Ranges up to this long are served from raw points when no `every` is asked for: a day of 1-per-minute
# readings is 1,440 points, still a readable chart.
RAW_RANGE_LIMIT_MS = 6 * HOUR_MS
MINUTE_RANGE_LIMIT_MS = 7 * 24 * HOUR_MS  # a week of 1-minute buckets is 10,080 points; beyond, use hours


class TimeSeriesError(BackendError):
    pass


class StoreUnavailable(TimeSeriesError):
    def __init__(self, store: str, why: str) -> None:
        super().__init__(f"{store} is unavailable: {why}")
        self.store = store
        self.why = why


class InvalidQuery(TimeSeriesError):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Resolution(StrEnum):
    RAW = "raw"
    MINUTE = "1m"
    HOUR = "1h"

    @property
    def ms(self) -> int:
        return {Resolution.RAW: 1, Resolution.MINUTE: MINUTE_MS, Resolution.HOUR: HOUR_MS}[self]


@dataclass(frozen=True, slots=True)
class DeviceTags:
    """Where a device is: the tags every stored point carries. Empty strings for a device the directory lacks."""

    community: str = ""
    grid: str = ""
    building: str = ""
    kind: str = ""


_NO_TAGS = DeviceTags()


class TagDirectory:
    """Device → tags, from the site directory. Devices with the same tags share one `DeviceTags` (a building has a few
    kinds of device; a device the directory lacks gets the empty one): a drain from devices not seen before otherwise
    made one young object per device for the garbage collector to walk."""

    def __init__(self, sites: SiteDirectory | None) -> None:
        self._sites = sites
        self._cache: dict[str, DeviceTags] = {}
        self._shared: dict[tuple[str, str, str, str], DeviceTags] = {}

    def tags(self, device_id: str) -> DeviceTags:
        hit = self._cache.get(device_id)
        if hit is not None:
            return hit
        tags = _NO_TAGS
        if self._sites is not None and (device := self._sites.devices.get(device_id)) is not None:
            grid, community = self._sites.place_of_building(device.building)
            key = (community or "", grid or "", device.building, device.kind.value)
            tags = self._shared.get(key) or self._shared.setdefault(key, DeviceTags(*key))
        self._cache[device_id] = tags
        return tags

    def knows(self, device_id: str) -> bool:
        return self._sites is not None and device_id in self._sites.devices

    def has_building(self, building_id: str) -> bool:
        return self._sites is not None and building_id in self._sites.buildings


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One measurement to store: a device's metric at the time the device took it (the write's key is device,
    metric, source_ts_ms). Ingest flattens each telemetry message into these and hands them on to alerting too
    (backend/ingest/handoff.py); the type lives here, with the store that defines it, so the store needs nothing
    from ingest.

    Not tracked by the garbage collector (`gc=False`; its fields are plain values, so it can be part of no cycle):
    a drain holds tens of thousands of them between the journal and the store, and as tracked objects every young
    collection walked them (issue 19: 50,000 Readings in one collection of generation 1 that held the process 35-50 ms
    while a smoke alarm waited, benchmarks/ingest.py)."""

    device_id: str
    gateway_id: str
    metric: str  # e.g. residual_current_ma, temperature_c, power_w@2
    value: float
    source_ts_ms: int
    received_ms: int
    drill: bool = False


@dataclass(frozen=True, slots=True)
class LatestValue:
    device_id: str
    metric: str
    value: float
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StoredReading:
    device_id: str
    metric: str
    ts_ms: int
    value: float


@dataclass(frozen=True, slots=True)
class SeriesBucket:
    """One point of an aggregated series; a raw point has min == max == mean and count 1."""

    ts_ms: int  # start of the bucket (the point's own time for raw points)
    min: float
    max: float
    mean: float
    count: int


@dataclass(frozen=True, slots=True)
class SeriesResult:
    device_id: str
    metric: str
    from_ms: int
    to_ms: int
    resolution: Resolution
    every_ms: int | None  # None: raw points, not bucketed
    points: tuple[SeriesBucket, ...]


def choose_resolution(from_ms: int, to_ms: int, every_ms: int | None) -> Resolution:
    """The coarsest stored resolution that answers the question.

    With `every`: the coarsest rollup whose bucket divides it (every=2h → 1h rollup; every=90s → raw).
    Without: by range — up to 6 h raw points, up to 7 days 1-minute buckets, beyond that 1-hour buckets."""
    if to_ms <= from_ms:
        raise InvalidQuery("'to' must be after 'from'")
    if every_ms is not None:
        if every_ms <= 0:
            raise InvalidQuery("'every' must be positive")
        if every_ms % HOUR_MS == 0:
            return Resolution.HOUR
        if every_ms % MINUTE_MS == 0:
            return Resolution.MINUTE
        return Resolution.RAW
    span = to_ms - from_ms
    if span <= RAW_RANGE_LIMIT_MS:
        return Resolution.RAW
    if span <= MINUTE_RANGE_LIMIT_MS:
        return Resolution.MINUTE
    return Resolution.HOUR


class TimeSeriesStore(Protocol):
    """Blocking; call from a worker thread. Every method may raise StoreUnavailable."""

    name: str

    def write(self, readings: Sequence[Reading]) -> int:
        """Store readings idempotently (keyed by device, metric, source_ts_ms); return how many were new
        (an implementation that cannot tell returns len(readings))."""
        ...

    def latest(self, device_id: str) -> list[LatestValue]:
        """The newest value of each metric of one device."""
        ...

    def series(self, device_id: str, metric: str, from_ms: int, to_ms: int, every_ms: int | None = None) -> SeriesResult:
        """One metric of one device over [from_ms, to_ms), raw or bucketed (see choose_resolution)."""
        ...

    def building_readings(self, building_id: str, from_ms: int, to_ms: int, metric: str | None = None, limit: int = 10_000) -> list[StoredReading]:
        """Raw readings of every device of a building over [from_ms, to_ms), oldest first, at most `limit`."""
        ...

    def apply_retention(self, now_ms: int) -> int:
        """Drop data older than the retention; return how many partitions or rows went (0 if the server does it)."""
        ...

    def close(self) -> None: ...
