"""The InfluxDB 2.x time-series store, through influxdb-client.

How this works:
- Schema, designed for cardinality: one measurement (`telemetry` by default); tags community, grid,
  building, kind and device (the device id bounds the series count: one series per device and field);
  each metric (residual_current_ma, power_w@2, ...) is a float field. The readings of one message share
  a timestamp, so they become one point: `telemetry,building=b01,...,device=d1 power_w=3,temperature_c=20.5 1767225600000`.
  The gateway, msg_id and receive time are not stored: they would make every point its own series.
- Writes: line protocol (built here, escaping as influxdb-client's Point does; tags and fields sorted),
  millisecond precision, in chunks of `batch_lines` through the synchronous write API, with gzip. Retries
  with exponential back-off (honouring Retry-After on 429/503) are influxdb-client's WritesRetry on the HTTP
  layer; when they are exhausted the write raises StoreUnavailable and ingest keeps the readings in its
  journal. A point's identity is (measurement, tags, time), so a replayed write overwrites itself: writes
  are idempotent, which is what makes replay after a crash duplicate-free.
- Reads are Flux: range + filter, `aggregateWindow(every, fn, createEmpty: false, timeSrc: "_start")` for
  min, max, mean and count (four yields merged by time), `last()` for the latest values. Rollups are the
  server's business (aggregateWindow over raw data, or a downsampling task); retention is the bucket's.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from backend.settings import TimeSeriesSettings
from backend.store.timeseries.model import (
    InvalidQuery,
    LatestValue,
    Reading,
    Resolution,
    SeriesBucket,
    SeriesResult,
    StoredReading,
    StoreUnavailable,
    TagDirectory,
    choose_resolution,
)

__all__ = ["InfluxTimeSeries", "flux_building", "flux_latest", "flux_series", "flux_string", "flux_time", "line_protocol"]

_T = TypeVar("_T")
_ESCAPE_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({"\\": "\\\\", ",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_AGGREGATES = ("min", "max", "mean", "count")
LATEST_LOOKBACK = "-30d"  # latest values older than this are not "current"


def _float(value: float) -> str:
    s = str(float(value))
    return s[:-2] if s.endswith(".0") else s


def line_protocol(readings: Sequence[Reading], tags: TagDirectory, measurement: str = "telemetry") -> list[str]:
    """One line per (device, timestamp): tags sorted, fields sorted, time in ms. Drill readings are left out."""
    points: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for r in readings:
        if not r.drill:
            points[(r.device_id, r.source_ts_ms)][r.metric] = r.value
    m = measurement.translate(_ESCAPE_MEASUREMENT)
    lines = []
    for (device, ts), fields in points.items():
        t = tags.tags(device)
        tagset = {"building": t.building, "community": t.community, "device": device, "grid": t.grid, "kind": t.kind}
        tag_text = "".join(f",{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}" for k, v in sorted(tagset.items()) if v)
        field_text = ",".join(f"{k.translate(_ESCAPE_KEY)}={_float(v)}" for k, v in sorted(fields.items()))
        lines.append(f"{m}{tag_text} {field_text} {ts}")
    return lines


def flux_string(value: str) -> str:
    """A Flux string literal: backslash, double quote and '${' (interpolation) escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def flux_time(ms: int) -> str:
    """An RFC 3339 time literal with millisecond precision, UTC."""
    return (_EPOCH + dt.timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _source(bucket: str, from_ms: int | None, to_ms: int | None, predicate: str) -> str:
    rng = f"range(start: {flux_time(from_ms)}, stop: {flux_time(to_ms)})" if from_ms is not None and to_ms is not None else f"range(start: {LATEST_LOOKBACK})"
    return f"from(bucket: {flux_string(bucket)})\n  |> {rng}\n  |> filter(fn: (r) => {predicate})"


def flux_series(bucket: str, measurement: str, device: str, metric: str, *, from_ms: int, to_ms: int, every_ms: int | None) -> str:
    pred = f"r._measurement == {flux_string(measurement)} and r.device == {flux_string(device)} and r._field == {flux_string(metric)}"
    data = _source(bucket, from_ms, to_ms, pred)
    if every_ms is None:
        return f'{data}\n  |> keep(columns: ["_time", "_value"])\n  |> sort(columns: ["_time"])'
    out = [f"data = {data}"]
    window = f'aggregateWindow(every: {int(every_ms)}ms, fn: {{}}, createEmpty: false, timeSrc: "_start")'
    out += [f'data\n  |> {window.format(fn)}\n  |> yield(name: "{fn}")' for fn in _AGGREGATES]
    return "\n".join(out)


def flux_latest(bucket: str, measurement: str, device: str) -> str:
    pred = f"r._measurement == {flux_string(measurement)} and r.device == {flux_string(device)}"
    return f"{_source(bucket, None, None, pred)}\n  |> last()"


def flux_building(bucket: str, measurement: str, building: str, *, from_ms: int, to_ms: int, metric: str | None, limit: int) -> str:
    pred = f"r._measurement == {flux_string(measurement)} and r.building == {flux_string(building)}"
    if metric is not None:
        pred += f" and r._field == {flux_string(metric)}"
    return f'{_source(bucket, from_ms, to_ms, pred)}\n  |> group()\n  |> sort(columns: ["_time"])\n  |> limit(n: {int(limit)})'


def _ms(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(milliseconds=1)


class InfluxTimeSeries:
    name = "influx"

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        tags: TagDirectory,
        *,
        measurement: str = "telemetry",
        timeout_s: float = 10.0,
        max_retries: int = 5,
        retry_interval_s: float = 1.0,
        max_retry_delay_s: float = 30.0,
        gzip: bool = True,
        batch_lines: int = 5000,
    ) -> None:
        self.bucket, self.org, self.measurement = bucket, org, measurement
        self._tags = tags
        self._batch_lines = batch_lines
        retries = WritesRetry(
            total=max_retries, retry_interval=retry_interval_s, max_retry_delay=max_retry_delay_s, exponential_base=2,
            max_retry_time=max(max_retry_delay_s * (max_retries + 1), 1.0), allowed_methods=["POST"],
        ) if max_retries > 0 else False
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=gzip, retries=retries)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._query_api = self._client.query_api()

    @classmethod
    def from_settings(cls, ts: TimeSeriesSettings, tags: TagDirectory) -> InfluxTimeSeries:
        assert ts.influx_url is not None
        assert ts.influx_token is not None
        return cls(
            ts.influx_url, ts.influx_token.get_secret_value(), ts.influx_org, ts.influx_bucket, tags, measurement=ts.influx_measurement,
            timeout_s=ts.influx_timeout_s, max_retries=ts.influx_max_retries, retry_interval_s=ts.influx_retry_interval_s,
            max_retry_delay_s=ts.influx_max_retry_delay_s, gzip=ts.influx_gzip,
        )

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except Exception as exc:  # urllib3, ApiException, OSError: all mean "not now" to the caller
            status = getattr(exc, "status", None)
            raise StoreUnavailable(self.name, f"{what} failed" + (f" with HTTP {status}" if status else "") + f": {type(exc).__name__}: {exc}") from exc

    def write(self, readings: Sequence[Reading]) -> int:
        lines = line_protocol(readings, self._tags, self.measurement)
        for i in range(0, len(lines), self._batch_lines):
            chunk = lines[i:i + self._batch_lines]
            self._call("write", lambda chunk=chunk: self._write_api.write(self.bucket, self.org, record=chunk, write_precision=WritePrecision.MS))  # type: ignore[misc, arg-type]
        return len([r for r in readings if not r.drill])

    def _tables(self, flux: str) -> Any:
        return self._call("query", lambda: self._query_api.query(flux, org=self.org))

    def latest(self, device_id: str) -> list[LatestValue]:
        out = [
            LatestValue(device_id, rec.get_field(), float(rec.get_value()), _ms(rec.get_time()))
            for table in self._tables(flux_latest(self.bucket, self.measurement, device_id)) for rec in table.records
        ]
        return sorted(out, key=lambda v: v.metric)

    def series(self, device_id: str, metric: str, from_ms: int, to_ms: int, every_ms: int | None = None) -> SeriesResult:
        resolution = choose_resolution(from_ms, to_ms, every_ms)
        if resolution is not Resolution.RAW and every_ms is None:
            every_ms = resolution.ms
        tables = self._tables(flux_series(self.bucket, self.measurement, device_id, metric, from_ms=from_ms, to_ms=to_ms, every_ms=every_ms))
        if every_ms is None:
            points = [SeriesBucket(_ms(r.get_time()), v, v, v, 1) for t in tables for r in t.records if (v := float(r.get_value())) == v]
            return SeriesResult(device_id, metric, from_ms, to_ms, resolution, None, tuple(sorted(points, key=lambda p: p.ts_ms)))
        by_time: dict[int, dict[str, float]] = defaultdict(dict)
        for t in tables:
            for r in t.records:
                by_time[_ms(r.get_time())][str(r.values.get("result"))] = float(r.get_value())
        points = [
            SeriesBucket(ts, a["min"], a["max"], a["mean"], int(a["count"]))
            for ts, a in sorted(by_time.items()) if all(k in a for k in _AGGREGATES)
        ]
        return SeriesResult(device_id, metric, from_ms, to_ms, resolution, every_ms, tuple(points))

    def building_readings(self, building_id: str, from_ms: int, to_ms: int, metric: str | None = None, limit: int = 10_000) -> list[StoredReading]:
        if to_ms <= from_ms:
            raise InvalidQuery("'to' must be after 'from'")
        tables = self._tables(flux_building(self.bucket, self.measurement, building_id, from_ms=from_ms, to_ms=to_ms, metric=metric, limit=limit))
        out = [StoredReading(str(r.values.get("device")), r.get_field(), _ms(r.get_time()), float(r.get_value())) for t in tables for r in t.records]
        return sorted(out, key=lambda s: s.ts_ms)

    def apply_retention(self, now_ms: int) -> int:
        return 0  # the bucket's retention policy does it on the server

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
