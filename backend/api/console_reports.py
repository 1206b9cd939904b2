"""Report routes of the console: the street office's monthly report (统计报表) of one community, as JSON (the console
page draws its charts from it) and as XLSX.

How this works: the routes are thin; backend.reports.query reads the month, backend.reports.monthly computes every
figure, backend.reports.xlsx writes the workbook. Reports are for the command room and the street office
(`view_system`: administrators and duty officers), and only for a community inside the caller's territory: another
community answers 404 exactly like an unknown one. A month is "YYYY-MM" in the site's time zone; a month that has
not begun is refused (400), the current month is measured up to now. Nothing here writes.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from backend.api.auth import Auth, Capability, Principal
from backend.api.console_history import XLSX, Refusal, XlsxResponse, attachment, file_responses, site_zone, xlsx_file
from backend.api.deps import ApiDeps
from backend.api.errors import ERRORS, request_lang
from backend.history.words import type_word
from backend.reports.monthly import monthly_report
from backend.reports.query import month_bounds, month_input
from backend.reports.xlsx import OUTCOME_WORDS, write_report_xlsx

__all__ = ["reports_router"]

CommunityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
MonthQ = Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM in the site's time zone; unset: this month")]


class CommunityList(BaseModel):
    communities: list[dict[str, Any]]
    this_month: str
    time_zone: str


class MonthlyReport(BaseModel):
    report: dict[str, Any] = Field(description="every figure of the month: docs/reports.md says what each means and where it comes from")
    time_zone: str
    utc_offset_min: int
    words: dict[str, Any] = Field(description="the Chinese (or English) words of types and outcomes")


def reports_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/api/reports", tags=["reports"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 422, 503)})
    office = auth.require(Capability.VIEW_SYSTEM)
    engine = deps.alarms.engine

    def communities_of(p: Principal) -> list[dict[str, Any]]:
        sites = deps.sites
        if sites is None:
            return []
        t = p.territory
        return [{"id": c.id, "name": c.name} for c in sorted(sites.communities.values(), key=lambda c: c.id)
                if t.everywhere or (t.kind == "community" and t.scope == c.id)]

    def checked(p: Principal, community: str, month: str | None, request: Request) -> str:
        if community not in {c["id"] for c in communities_of(p)}:
            raise HTTPException(404, f"您的辖区内没有社区 '{community}'；请从列表中选择" if request_lang(request) == "zh"
                                else f"no community '{community}' in your territory; pick one from the list")
        tz, _name = site_zone(deps)
        now = deps.clock.now_ms()
        this = datetime.fromtimestamp(now / 1000, tz).strftime("%Y-%m")
        month = month or this
        if int(month[:4]) < 2000:
            raise Refusal(400, "month：月份超出范围（2000 年以后）", "month: out of range (after 2000)").http(request_lang(request))
        if month_bounds(month, tz)[0] > now:
            raise Refusal(400, f"month：{month} 还没有开始，不能统计；请选择 {this} 或更早的月份",
                          f"month: {month} has not begun; pick {this} or earlier").http(request_lang(request))
        return month

    def ladder_engine() -> sa.Engine | None:
        return getattr(getattr(deps.escalation, "store", None), "engine", None)

    async def build(community: str, month: str) -> dict[str, Any]:
        tz, _name = site_zone(deps)
        inp = await asyncio.to_thread(month_input, engine, deps.sites, community, month, tz=tz, now_ms=deps.clock.now_ms(),
                                      ladder_engine=ladder_engine())
        return monthly_report(inp)

    @router.get("/communities", summary="The communities you may report on, and this month in the site's time zone")
    async def communities(p: Annotated[Principal, Depends(office)]) -> CommunityList:
        tz, name = site_zone(deps)
        return CommunityList(communities=communities_of(p), this_month=datetime.fromtimestamp(deps.clock.now_ms() / 1000, tz).strftime("%Y-%m"),
                             time_zone=name)

    @router.get("/communities/{community_id}/monthly", summary="A community's monthly report (统计报表): alarms, false alarms, response times, "
                                                             "drills, device health, patrol")
    async def monthly(request: Request, community_id: CommunityId, p: Annotated[Principal, Depends(office)], month: MonthQ = None) -> MonthlyReport:
        m = checked(p, community_id, month, request)
        report = await build(community_id, m)
        tz, name = site_zone(deps)
        off = datetime.fromtimestamp(deps.clock.now_ms() / 1000, tz).utcoffset()
        lang = request_lang(request)
        types = {row["alarm_type"]: type_word(row["alarm_type"], lang, row["title"]) for row in report["by_type"]}
        types |= {t: type_word(t, lang) for s in report["drills"]["sessions"] for t in s["types"]}
        outcomes = OUTCOME_WORDS if lang == "zh" else {k: k.replace("_", " ") for k in OUTCOME_WORDS}
        sites = deps.sites
        places = {r["building_id"] for r in (*report["false_alarm_devices"], *report["health"]["comm_lost"], *report["health"]["cameras_worst"])}
        buildings = {b: sites.buildings[b].name for b in places if sites is not None and b in sites.buildings}
        return MonthlyReport(report=report, time_zone=name, utc_offset_min=int(off.total_seconds() // 60) if off else 0,
                             words={"types": types, "outcomes": outcomes, "buildings": buildings})

    @router.get("/communities/{community_id}/monthly.xlsx", summary="A community's monthly report as XLSX", response_class=XlsxResponse,
                responses=file_responses(XLSX, "the XLSX file"))
    async def monthly_xlsx(request: Request, community_id: CommunityId, p: Annotated[Principal, Depends(office)],
                           month: MonthQ = None) -> XlsxResponse:
        m = checked(p, community_id, month, request)
        report = await build(community_id, m)
        tz, name = site_zone(deps)
        path = await asyncio.to_thread(xlsx_file, lambda out: write_report_xlsx(out, report, tz, name))
        return XlsxResponse(path, media_type=XLSX, headers=attachment(f"统计报表_{report['community_name']}_{m}.xlsx"),
                            background=BackgroundTask(path.unlink, missing_ok=True))

    return router
