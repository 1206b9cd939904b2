"""History routes of the console: every alarm kept (≥ 1 year), filtered and paged, its CSV / XLSX export, and one
alarm's record (处置记录单) as a printable page or XLSX.

How this works: the routes are thin; the SQL lives in backend.history.query, the files in backend.history.export.
Every filter is checked first and a bad one answers 4xx with a reason in the reader's language (Chinese unless
`Accept-Language` asks for English), before anything is read: a date that is not a date (422), a range that ends
before it starts or lies outside what the store can hold (400), a community, grid or building that is unknown or
outside the caller's territory (404, the same answer for both), a cursor this API did not give out (400), a page
larger than 500 (422). Nothing here writes.

Times: `from` / `to` are dates ("2026-11-03") or local times ("2026-11-03T08:00") in the site's time zone
(`site.time_zone`, Beijing time by default), never the server's; a date as `to` includes that whole day. The
answer carries each time as epoch ms and as text in the site's zone, so a machine in UTC still shows Beijing times.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from alerting.lifecycle import AlarmState
from backend.api.auth import Auth, Capability, Principal
from backend.api.deps import ApiDeps
from backend.api.errors import ERRORS, request_lang
from backend.errors import BackendError
from backend.history.export import csv_lines, place_names, record_html, record_xlsx, write_list_xlsx
from backend.history.query import MAX_PAGE, BadCursor, HistoryFilter, HistoryRow, count, iter_rows, known_types, page, parse_cursor
from backend.history.record import read_sheet
from backend.history.words import local_time, severity_word, state_word, type_word
from backend.i18n import Lang

__all__ = ["XLSX", "Refusal", "XlsxResponse", "attachment", "file_responses", "history_router", "site_zone", "xlsx_file"]

AlarmId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
PlaceQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
WhenQ = Annotated[str | None, Query(max_length=25, pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$",
                                    description="a date (2026-11-03) or a local time (2026-11-03T08:00) in the site's time zone")]
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no alarm of this system is older
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# The error answers of a route whose success is a file: JSON, said explicitly (a `model` would be documented under the
# route's own media type, text/csv or XLSX, which is not what an error sends).
FILE_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": ERRORS[code]["description"], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for code in (400, 401, 403, 404, 422, 503)
}


def file_responses(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {}}, "description": what}, **FILE_ERRORS}


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


class XlsxResponse(FileResponse):
    media_type = XLSX


class Refusal(BackendError):  # an answer, not a failure
    """A request refused with a sentence in both languages; the route turns it into an HTTPException."""

    def __init__(self, code: int, zh: str, en: str) -> None:
        super().__init__(en)
        self.code, self.zh, self.en = code, zh, en

    def http(self, lang: Lang) -> HTTPException:
        return HTTPException(self.code, self.zh if lang == "zh" else self.en)


class HistoryList(BaseModel):
    alarms: list[dict[str, Any]] = Field(description="one page, newest first: each alarm with its times as text in the site's time zone")
    next_cursor: str | None = Field(description="pass as `after` for the next page; null on the last page")
    total: int | None = Field(default=None, description="alarms matching the filters (first page only)")
    filters: dict[str, Any]
    time_zone: str
    utc_offset_min: int
    types: list[str] | None = Field(default=None, description="alarm types the store holds (first page only), for the type filter")
    type_words: dict[str, str] | None = None
    places: dict[str, Any] | None = Field(default=None, description="communities, grids and buildings of your territory (first page only)")


def site_zone(deps: ApiDeps) -> tuple[tzinfo, str]:
    """The site's time zone and its name: `site.time_zone` from the server's settings (ApiDeps.extras["site"]), else the
    maintenance windows' zone (which follows it), else the duty rosters' offset, else Beijing time."""
    extras = deps.extras or {}
    name = getattr(extras.get("site"), "time_zone", None) or getattr(getattr(getattr(deps.alarm_service, "maintenance", None), "settings", None),
                                                                     "time_zone", None)
    if isinstance(name, str):
        with contextlib.suppress(Exception):
            return ZoneInfo(name), name
    offset = getattr(getattr(deps.escalation, "roster", None), "utc_offset_min", None)
    if isinstance(offset, int) and offset != 480:
        return timezone(timedelta(minutes=offset)), f"UTC{offset / 60:+g}"
    return ZoneInfo("Asia/Shanghai"), "Asia/Shanghai"


def _offset_min(tz: tzinfo, now_ms: int) -> int:
    off = datetime.fromtimestamp(now_ms / 1000, tz).utcoffset()
    return int(off.total_seconds() // 60) if off is not None else 0


def parse_when(text: str | None, tz: tzinfo, *, end: bool, now_ms: int, name: str) -> int | None:
    """A `from` / `to` value -> epoch ms (a date as `to` is the next day's start: the day is included)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise Refusal(422, f"{name}：不是有效的日期或时间（例如 2026-11-03 或 2026-11-03T08:00）",
                      f"{name}: not a valid date or time (e.g. 2026-11-03 or 2026-11-03T08:00)") from None
    when = when.replace(tzinfo=tz)
    if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        when += timedelta(days=1)
    ms = int(when.timestamp() * 1000)
    if when < EARLIEST or ms > now_ms + 366 * 86_400_000:
        raise Refusal(400, f"{name}：日期超出范围（2000 年以后、一年以内）", f"{name}: date out of range (after 2000 and within a year from now)")
    return ms


class Filters:
    """The history's query parameters, checked against the site directory and the caller's territory."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def build(self, p: Principal, *, since: str | None, until: str | None, community: str | None, grid: str | None, building: str | None,
              kinds: list[str] | None, severity: str | None, state: str | None, drill: bool | None, false_alarm: bool | None,
              q: str | None) -> HistoryFilter:
        tz, _name = site_zone(self.deps)
        now = self.deps.clock.now_ms()
        from_ms = parse_when(since, tz, end=False, now_ms=now, name="from")
        to_ms = parse_when(until, tz, end=True, now_ms=now, name="to")
        if from_ms is not None and from_ms > now:
            raise Refusal(400, "from：开始时间在未来，还没有告警", "from: the start is in the future; there are no alarms yet")
        if from_ms is not None and to_ms is not None and to_ms <= from_ms:
            raise Refusal(400, "结束时间（to）早于开始时间（from）：请调换或修改时间范围", "'to' is before 'from': swap them or fix the range")
        sites = self.deps.sites
        t = p.territory
        if community is not None:
            known = sites is None or community in sites.communities
            inside = t.everywhere or (t.kind == "community" and t.scope == community) or (
                sites is not None and t.buildings is not None and any(sites.community_of_building(b) == community for b in t.buildings))
            if not known or not inside:
                raise Refusal(404, f"您的辖区内没有社区 '{community}'；请从列表中选择", f"no community '{community}' in your territory; pick one from the list")
        if grid is not None:
            g = sites.grids.get(grid) if sites is not None else None
            if (sites is not None and g is None) or not (t.everywhere or (t.grids is not None and grid in t.grids)
                                                        or (t.buildings is not None and sites is not None
                                                            and any(sites.buildings[b].grid == grid for b in t.buildings if b in sites.buildings))):
                raise Refusal(404, f"您的辖区内没有网格 '{grid}'；请从列表中选择", f"no grid '{grid}' in your territory; pick one from the list")
        if building is not None and ((sites is not None and building not in sites.buildings) or not t.covers(building)):
            raise Refusal(404, f"您的辖区内没有楼栋 '{building}'；请从列表中选择", f"no building '{building}' in your territory; pick one from the list")
        return HistoryFilter(from_ms, to_ms, community, grid, building, tuple(sorted(set(kinds or ()))), severity, state, drill, false_alarm,
                             (q or "").strip() or None)


def attachment(name: str) -> dict[str, str]:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"}


def xlsx_file(write: Callable[[FilePath], object]) -> FilePath:
    """A temporary XLSX file written by `write(path)` (removed again if writing fails); blocking: run it in a thread.
    The route streams it and removes it once sent."""
    fd, raw = tempfile.mkstemp(prefix="shouwang-", suffix=".xlsx")
    os.close(fd)
    path = FilePath(raw)
    try:
        write(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def history_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/api/history", tags=["history"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 422, 503)})
    viewer = auth.require(Capability.VIEW_ALARMS)
    filters = Filters(deps)
    engine = deps.alarms.engine

    def ladder_engine() -> sa.Engine | None:
        return getattr(getattr(deps.escalation, "store", None), "engine", None)

    async def the_filter(request: Request, p: Annotated[Principal, Depends(viewer)], *,
                         since: Annotated[WhenQ, Query(alias="from")] = None, until: Annotated[WhenQ, Query(alias="to")] = None,
                         community: PlaceQ = None, grid: PlaceQ = None, building: PlaceQ = None,
                         kind: Annotated[list[str] | None, Query(alias="type", max_length=40, description="alarm type(s): smoke, sos, comm_lost...")] = None,
                         severity: Literal["info", "minor", "major", "critical"] | None = None, state: AlarmState | None = None,
                         drill: bool | None = None, false_alarm: bool | None = None,
                         q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f]*$",
                                                        description="words of the place (楼栋、网格、社区), the device id, the title or detail")] = None,
                         ) -> tuple[Principal, HistoryFilter]:
        if kind is not None and any(not re.fullmatch(r"[a-z0-9_*]{1,40}", k) for k in kind):
            raise Refusal(422, "type：告警类型只含小写字母、数字和下划线", "type: an alarm type has lowercase letters, digits and underscores only").http(
                request_lang(request))
        try:
            return p, filters.build(p, since=since, until=until, community=community, grid=grid, building=building, kinds=kind, severity=severity,
                                    state=state.value if state is not None else None, drill=drill, false_alarm=false_alarm, q=q)
        except Refusal as exc:
            raise exc.http(request_lang(request)) from exc

    Filtered = Annotated[  # noqa: N806 (a type alias)
        tuple[Principal, HistoryFilter], Depends(the_filter)]

    def view(r: HistoryRow, tz: tzinfo, lang: Lang) -> dict[str, Any]:
        community, grid, building = place_names(deps.sites, r.building_id, r.grid_id, r.community_id)
        hh = deps.sites.households.get(r.household_id or "") if deps.sites else None
        return {"id": r.id, "alarm_type": r.alarm_type, "type_text": type_word(r.alarm_type, lang, r.title), "severity": r.severity,
                "severity_text": severity_word(r.severity, lang), "state": r.state, "state_text": state_word(r.state, lang), "title": r.title,
                "detail": r.detail, "drill": r.drill, "false_alarm": r.was_false, "is_open": r.is_open, "life_safety": r.life_safety,
                "raised_at_ms": r.raised_at_ms, "raised_local": local_time(r.raised_at_ms, tz), "updated_ms": r.updated_ms,
                "updated_local": local_time(r.updated_ms, tz), "occurrences": r.occurrences, "device_id": r.device_id,
                "building_id": r.building_id, "grid_id": r.grid_id, "community_id": r.community_id, "community_name": community,
                "grid_name": grid, "building_name": building, "unit": r.unit, "room": hh.room if hh else None}

    def places(p: Principal) -> dict[str, Any]:
        sites = deps.sites
        if sites is None:
            return {"communities": [], "grids": [], "buildings": []}
        t = p.territory
        blds = [b for b in sites.buildings.values() if t.covers(b.id)]
        grids = sorted({b.grid for b in blds})
        comms = sorted({sites.grids[g].community for g in grids if g in sites.grids})
        return {"communities": [{"id": c, "name": sites.communities[c].name} for c in comms if c in sites.communities],
                "grids": [{"id": g, "name": sites.grids[g].name, "community": sites.grids[g].community} for g in grids if g in sites.grids],
                "buildings": [{"id": b.id, "name": b.name, "grid": b.grid} for b in sorted(blds, key=lambda b: (len(b.id), b.id))]}

    @router.get("", summary="Every alarm kept (≥ 1 year), filtered, newest first, a page at a time (keyset: pass `after`)")
    async def history(request: Request, filtered: Filtered, after: Annotated[str | None, Query(max_length=120)] = None,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page (at most 500)")] = 50) -> HistoryList:
        p, f = filtered
        lang = request_lang(request)
        tz, name = site_zone(deps)
        if after is not None:
            try:
                parse_cursor(after)
            except BadCursor as exc:
                raise Refusal(400, "after：翻页标记无效；请从第一页重新查询", "after: not a cursor this API gave out; start again from the first page"
                              ).http(lang) from exc
        got = await asyncio.to_thread(page, engine, f, p.territory, deps.sites, after=after, limit=limit)
        first = after is None
        total = await asyncio.to_thread(count, engine, f, p.territory, deps.sites) if first else None
        types = list(await asyncio.to_thread(known_types, engine)) if first else None
        return HistoryList(alarms=[view(r, tz, lang) for r in got.rows], next_cursor=got.next_cursor, total=total, filters=f.as_json(),
                           time_zone=name, utc_offset_min=_offset_min(tz, deps.clock.now_ms()), types=types,
                           type_words={t: type_word(t, lang) for t in types} if types is not None else None, places=places(p) if first else None)

    def file_stem(f: HistoryFilter, tz: tzinfo) -> str:
        day = local_time(deps.clock.now_ms(), tz)[:10]
        return f"告警历史_{day}"

    @router.get(".csv", summary="The filtered history as CSV (UTF-8 with BOM, Chinese headers, site-time), streamed",
                response_class=CsvResponse, responses=file_responses("text/csv", "the CSV file"))
    async def history_csv(request: Request, filtered: Filtered) -> CsvResponse:
        p, f = filtered
        tz, _name = site_zone(deps)
        lang = request_lang(request)
        rows = iter_rows(engine, f, p.territory, deps.sites)
        return CsvResponse((line.encode("utf-8") for line in csv_lines(rows, deps.sites, tz, lang)), media_type="text/csv; charset=utf-8",
                           headers=attachment(f"{file_stem(f, tz)}.csv"))

    @router.get(".xlsx", summary="The filtered history as XLSX (Chinese headers, site-time)", response_class=XlsxResponse,
                responses=file_responses(XLSX, "the XLSX file"))
    async def history_xlsx(request: Request, filtered: Filtered) -> XlsxResponse:
        p, f = filtered
        tz, _name = site_zone(deps)
        lang = request_lang(request)
        path = await asyncio.to_thread(xlsx_file, lambda out: write_list_xlsx(out, iter_rows(engine, f, p.territory, deps.sites), deps.sites, tz, lang))
        return XlsxResponse(path, media_type=XLSX, headers=attachment(f"{file_stem(f, tz)}.xlsx"), background=BackgroundTask(path.unlink, missing_ok=True))

    async def sheet_of(alarm_id: str, p: Principal) -> Any:
        sheet = await asyncio.to_thread(read_sheet, engine, alarm_id, ladder_engine())
        a = sheet.alarm if sheet is not None else None
        if sheet is None or a is None or not p.territory.covers(a["building_id"], a["grid_id"], a["community_id"]):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {alarm_id!r} in your territory; check the id or ask the duty officer")
        return sheet

    @router.get("/{alarm_id}/record", summary="One alarm's full record (处置记录单) as a printable HTML page", response_class=HTMLResponse,
                responses=file_responses("text/html", "the printable page"))
    async def record(request: Request, alarm_id: AlarmId, p: Annotated[Principal, Depends(viewer)]) -> HTMLResponse:
        sheet = await sheet_of(alarm_id, p)
        tz, name = site_zone(deps)
        return HTMLResponse(record_html(sheet, deps.sites, tz, tz_name=name, printed_ms=deps.clock.now_ms(), lang=request_lang(request)))

    @router.get("/{alarm_id}/record.xlsx", summary="One alarm's full record (处置记录单) as XLSX", response_class=XlsxResponse,
                responses=file_responses(XLSX, "the XLSX file"))
    async def record_file(request: Request, alarm_id: AlarmId, p: Annotated[Principal, Depends(viewer)]) -> XlsxResponse:
        sheet = await sheet_of(alarm_id, p)
        tz, _name = site_zone(deps)
        lang = request_lang(request)
        path = await asyncio.to_thread(xlsx_file, lambda out: record_xlsx(out, sheet, deps.sites, tz, lang))
        return XlsxResponse(path, media_type=XLSX, headers=attachment(f"处置记录单_{alarm_id}.xlsx"), background=BackgroundTask(path.unlink, missing_ok=True))

    return router
