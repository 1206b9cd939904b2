"""Time-series routes for the console: latest values, one device's series, a building's readings.

(No `from __future__ import annotations` here: FastAPI must see the real dependency objects in route signatures.)

Routes stay thin: parse and check the question (422 for a malformed parameter, 400 for a question that is
well-formed but cannot be answered, 404 for an unknown device or building, 503 when the store is down),
then ask the store in a worker thread. Times are Unix milliseconds or ISO 8601 with a zone; durations are
`90s`, `5m`, `1h`, `1d` or plain seconds.
"""

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from backend.sites.model import SiteDirectory
from backend.store.timeseries.model import InvalidQuery, StoreUnavailable, TimeSeriesStore
from broker.clock import Clock
from broker.kinds import metric_unit

__all__ = ["MAX_POINTS", "parse_duration_ms", "parse_time_ms", "series_router"]

MAX_POINTS = 10_000  # more points than a chart has pixels: ask for a coarser `every`
DEFAULT_RANGE_MS = 24 * 3_600_000
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}
_T = TypeVar("_T")
_UNPROCESSABLE = 422  # starlette renamed the constant (ENTITY → CONTENT); the number is what clients see


def parse_time_ms(text: str, name: str) -> int:
    """Unix milliseconds, or ISO 8601 with a time zone."""
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(_UNPROCESSABLE, f"'{name}' must be Unix milliseconds or ISO 8601, e.g. 2026-01-01T08:00:00+08:00") from None
    if when.tzinfo is None:
        raise HTTPException(_UNPROCESSABLE, f"'{name}' needs a time zone, e.g. 2026-01-01T08:00:00+08:00 or ...Z")
    return int(when.timestamp() * 1000)


def parse_duration_ms(text: str) -> int:
    m = _DURATION.fullmatch(text.strip())
    if not m or int(m.group(1)) == 0:
        raise HTTPException(_UNPROCESSABLE, "'every' must be a positive duration such as 60s, 5m, 1h or 1d")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def series_router(store: TimeSeriesStore | None, sites: SiteDirectory | None, clock: Clock, current_user: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["time series"], dependencies=[Depends(current_user)])

    async def ask(fn: Callable[[], _T]) -> _T:
        if store is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no time-series store is configured")
        try:
            return await asyncio.to_thread(fn)
        except StoreUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the time-series store is unavailable: {exc.why}; try again shortly") from exc
        except InvalidQuery as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, exc.why) from exc

    def known_device(device_id: str) -> str:
        if sites is None or device_id not in sites.devices:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r} in the site directory")
        return device_id

    def known_building(building_id: str) -> str:
        if sites is None or building_id not in sites.buildings:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no building {building_id!r} in the site directory")
        return building_id

    def time_range(from_: str | None, to: str | None) -> tuple[int, int]:
        to_ms = parse_time_ms(to, "to") if to is not None else clock.now_ms()
        from_ms = parse_time_ms(from_, "from") if from_ is not None else to_ms - DEFAULT_RANGE_MS
        if to_ms <= from_ms:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "'to' must be after 'from'")
        return from_ms, to_ms

    def checked_metric(metric: str) -> str:
        if metric_unit(metric) is None:
            raise HTTPException(_UNPROCESSABLE, f"metric {metric!r} is not a metric name: snake_case ending in a unit (temperature_c)")
        return metric

    @router.get("/devices/{device_id}/latest")
    async def device_latest(device_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        known_device(device_id)
        values = await ask(lambda: store.latest(device_id))  # type: ignore[union-attr]
        return {"device_id": device_id, "values": [{"metric": v.metric, "value": v.value, "ts_ms": v.ts_ms} for v in values]}

    @router.get("/devices/{device_id}/series")
    async def device_series(
        device_id: Annotated[str, Path(max_length=64)],
        metric: Annotated[str, Query(max_length=64, description="e.g. residual_current_ma")],
        from_: Annotated[str | None, Query(alias="from", description="Unix ms or ISO 8601; default: 24 h before 'to'")] = None,
        to: Annotated[str | None, Query(description="Unix ms or ISO 8601; default: now")] = None,
        every: Annotated[str | None, Query(description="bucket width (60s, 5m, 1h); default: by range (raw up to 6 h, 1 min up to 7 d, else 1 h)")] = None,
    ) -> dict[str, Any]:
        known_device(device_id)
        checked_metric(metric)
        from_ms, to_ms = time_range(from_, to)
        every_ms = parse_duration_ms(every) if every is not None else None
        if every_ms is not None and (to_ms - from_ms) // every_ms > MAX_POINTS:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"that is more than {MAX_POINTS} buckets: ask for a coarser 'every' or a shorter range")
        r = await ask(lambda: store.series(device_id, metric, from_ms, to_ms, every_ms))  # type: ignore[union-attr]
        return {
            "device_id": r.device_id, "metric": r.metric, "from_ms": r.from_ms, "to_ms": r.to_ms, "resolution": r.resolution.value,
            "every_ms": r.every_ms,
            "points": [{"ts_ms": p.ts_ms, "min": p.min, "max": p.max, "mean": p.mean, "count": p.count} for p in r.points],
        }

    @router.get("/buildings/{building_id}/readings")
    async def building_readings(
        building_id: Annotated[str, Path(max_length=64)],
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: Annotated[str | None, Query()] = None,
        metric: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
    ) -> dict[str, Any]:
        known_building(building_id)
        if metric is not None:
            checked_metric(metric)
        from_ms, to_ms = time_range(from_, to)
        rows = await ask(lambda: store.building_readings(building_id, from_ms, to_ms, metric, limit))  # type: ignore[union-attr]
        return {
            "building_id": building_id, "from_ms": from_ms, "to_ms": to_ms, "truncated": len(rows) >= limit,
            "readings": [{"device_id": r.device_id, "metric": r.metric, "ts_ms": r.ts_ms, "value": r.value} for r in rows],
        }

    @router.get("/buildings/{building_id}/latest")
    async def building_latest(building_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        known_building(building_id)
        assert sites is not None
        devices = [d.id for d in sites.devices_by_building.get(building_id, ())]
        latest = await ask(lambda: {d: store.latest(d) for d in devices})  # type: ignore[union-attr]
        return {"building_id": building_id, "devices": [
            {"device_id": d, "values": [{"metric": v.metric, "value": v.value, "ts_ms": v.ts_ms} for v in values]} for d, values in latest.items()
        ]}

    return router
