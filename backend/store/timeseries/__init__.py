"""Time-series storage: one interface, an embedded SQLite default and an InfluxDB 2.x implementation."""

from backend.store.timeseries.model import (
    DeviceTags,
    InvalidQuery,
    LatestValue,
    Resolution,
    SeriesBucket,
    SeriesResult,
    StoredReading,
    StoreUnavailable,
    TagDirectory,
    TimeSeriesError,
    TimeSeriesStore,
    choose_resolution,
)
from backend.store.timeseries.sqlite import SqliteTimeSeries

__all__ = [
    "DeviceTags",
    "InvalidQuery",
    "LatestValue",
    "Resolution",
    "SeriesBucket",
    "SeriesResult",
    "SqliteTimeSeries",
    "StoreUnavailable",
    "StoredReading",
    "TagDirectory",
    "TimeSeriesError",
    "TimeSeriesStore",
    "choose_resolution",
]
