"""Maintenance-window routes of the console: list, open, extend and end early (维护窗口).

How this works: the routes are thin; the rules (scope, lengths, the life-safety override, what a window's end
re-evaluates) live in backend.alarms.maintenance, reached through the alarm service (`deps.maintenance_of`).
A window is opened on a building (`POST /api/buildings/{id}/maintenance`: the whole building, one device of
it, or one device kind in it), so a place outside the caller's territory answers 404 exactly like an unknown
one. Every refusal is a sentence a person can act on, in Chinese unless the request asks for English
(`Accept-Language: en`). Times go both as epoch milliseconds and as text in the site's time zone.

The router also hands the window notices (about to end, ended) to the live feed, placed at the window's
building so each duty room sees its own (or to the in-process console when no feed is given).

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from backend.alarms.maintenance import MaintenanceError, MaintenanceWindows, Scope, UnknownPlace, WindowOver, WindowRecord
from backend.api.auth import Auth, Capability, Principal
from backend.api.deps import ApiDeps, NotWired, maintenance_of
from backend.api.errors import ERRORS
from backend.i18n import lang_of

__all__ = ["maintenance_router"]

AcceptLanguage = Annotated[str | None, Header(description="`en` for English messages; Chinese otherwise")]
PlaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Reason = Annotated[str, Field(min_length=2, max_length=500, description="why: work order, technician, what is done")]
MINUTE_MS = 60_000


class LifeSafetyOverride(BaseModel):
    reason: Annotated[str, Field(min_length=4, max_length=500, description="why a smoke detector or SOS button must be silenced")]


class OpenWindow(BaseModel):
    scope: Literal["building", "device", "kind"] = Field(description="the whole building, one device in it, or one device kind in it")
    device_id: str | None = Field(default=None, max_length=64, description="scope device: the device")
    device_kind: str | None = Field(default=None, max_length=20, description="scope kind: smoke, sos, electrical, camera, water_leak, other")
    starts_at_ms: int | None = Field(default=None, ge=0, description="start (epoch ms); unset: now")
    ends_at_ms: int | None = Field(default=None, ge=0, description="end (epoch ms); or give `minutes`")
    minutes: int | None = Field(default=None, ge=1, description="length from the start; or give `ends_at_ms`")
    reason: Reason
    life_safety_override: LifeSafetyOverride | None = Field(
        default=None, description="required to silence smoke detectors or SOS buttons; limits the window's length")


class ExtendWindow(BaseModel):
    ends_at_ms: int | None = Field(default=None, ge=0, description="the new end (epoch ms); or give `minutes`")
    minutes: int | None = Field(default=None, ge=1, description="added to the current end")
    reason: Reason


class EndWindow(BaseModel):
    reason: Reason


class WindowList(BaseModel):
    windows: list[dict[str, Any]]
    server_now_ms: int
    time_zone: str
    end_notice_minutes: float
    life_safety_max_minutes: int
    max_minutes: int


class WindowDetail(BaseModel):
    window: dict[str, Any]
    audit: list[dict[str, Any]]


def _lang(accept_language: str | None) -> str:
    return lang_of(accept_language)


def _pick(zh: str, en: str, lang: str) -> str:
    return en if lang == "en" else zh


def maintenance_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["maintenance"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 409, 422, 503)})
    sites = deps.sites
    office = auth.require(Capability.SILENCE)
    viewer = auth.require(Capability.VIEW_ALARMS)

    def windows(lang: str) -> MaintenanceWindows:
        try:
            return maintenance_of(deps)
        except NotWired as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                _pick("本服务器未运行告警服务，无法管理维护窗口；请联系管理员", str(exc), lang)) from exc

    def refused(exc: MaintenanceError, lang: str) -> HTTPException:
        code = (status.HTTP_404_NOT_FOUND if isinstance(exc, UnknownPlace) else status.HTTP_409_CONFLICT if isinstance(exc, WindowOver)
                else status.HTTP_422_UNPROCESSABLE_CONTENT)
        return HTTPException(code, exc.text(lang))

    def not_in_territory(what: str, ident: str, lang: str) -> HTTPException:
        return HTTPException(status.HTTP_404_NOT_FOUND, _pick(f"您的辖区内没有编号为 {ident} 的{what}；请核对编号",
                                                              f"no {'building' if what == '楼栋' else 'maintenance window'} {ident!r} "
                                                              f"in your territory; check the id", lang))

    def covers(p: Principal, w: WindowRecord) -> bool:
        return p.territory.covers(w.building_id, w.grid_id, w.community_id)

    async def visible(p: Principal, window_id: str, lang: str) -> tuple[MaintenanceWindows, WindowRecord]:
        m = windows(lang)
        w = await asyncio.to_thread(m.get, window_id)
        if w is None or not covers(p, w):
            raise not_in_territory("维护窗口", window_id, lang)
        return m, w

    @router.get("/maintenance", summary="Maintenance windows in your territory: in force and coming (and recently ended on request)")
    async def list_windows(p: Annotated[Principal, Depends(viewer)], accept_language: AcceptLanguage = None,
                           include_ended: Annotated[bool, Query(description="also the last ended windows")] = False) -> WindowList:
        m = windows(_lang(accept_language))
        rows = await asyncio.to_thread(m.records, include_ended=include_ended)
        now = deps.clock.now_ms()
        return WindowList(windows=[m.view(w, now) for w in rows if covers(p, w)], server_now_ms=now, time_zone=m.settings.time_zone,
                          end_notice_minutes=m.settings.end_notice_minutes, life_safety_max_minutes=m.settings.life_safety_max_minutes,
                          max_minutes=m.settings.max_minutes)

    @router.get("/maintenance/{window_id}", summary="One maintenance window with its audit log (who opened, extended, ended it, when, why)")
    async def get_window(p: Annotated[Principal, Depends(viewer)], window_id: PlaceId, accept_language: AcceptLanguage = None) -> WindowDetail:
        lang = _lang(accept_language)
        m, w = await visible(p, window_id, lang)
        audit = await asyncio.to_thread(m.audit, window_id)
        return WindowDetail(window=m.view(w), audit=[{
            "window_id": a.window_id, "at_ms": a.at_ms, "at_local": m.local(a.at_ms), "actor": a.actor, "action": a.action,
            "starts_ms": a.starts_ms, "ends_ms": a.ends_ms, "starts_local": m.local(a.starts_ms), "ends_local": m.local(a.ends_ms),
            "note": a.note} for a in audit])

    @router.post("/buildings/{building_id}/maintenance", status_code=status.HTTP_201_CREATED,
                 summary="Open a maintenance window on a building, one of its devices, or one device kind in it")
    async def open_window(p: Annotated[Principal, Depends(office)], building_id: PlaceId, body: OpenWindow,
                          accept_language: AcceptLanguage = None) -> WindowDetail:
        lang = _lang(accept_language)
        if sites is None or building_id not in sites.buildings or not p.territory.covers(building_id):
            raise not_in_territory("楼栋", building_id, lang)
        m = windows(lang)
        starts = body.starts_at_ms if body.starts_at_ms is not None else deps.clock.now_ms()
        if (body.ends_at_ms is None) == (body.minutes is None):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _pick("请给出结束时间 ends_at_ms 或时长 minutes（二选一）",
                                                                          "give either ends_at_ms or minutes (one of them)", lang))
        ends = body.ends_at_ms if body.ends_at_ms is not None else starts + (body.minutes or 0) * MINUTE_MS
        try:
            w = await m.create(building_id=building_id, scope=Scope(body.scope), author=p.username, reason=body.reason, ends_ms=ends,
                               starts_ms=body.starts_at_ms, device_id=body.device_id, device_kind=body.device_kind,
                               override_reason=body.life_safety_override.reason if body.life_safety_override else None)
        except MaintenanceError as exc:
            raise refused(exc, lang) from exc
        return WindowDetail(window=m.view(w), audit=[])

    @router.post("/maintenance/{window_id}/extend", summary="Move a window's end later (the same length limits apply to the whole window)")
    async def extend_window(p: Annotated[Principal, Depends(office)], window_id: PlaceId, body: ExtendWindow,
                            accept_language: AcceptLanguage = None) -> WindowDetail:
        lang = _lang(accept_language)
        m, w = await visible(p, window_id, lang)
        if (body.ends_at_ms is None) == (body.minutes is None):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _pick("请给出新的结束时间 ends_at_ms 或延长的分钟数 minutes（二选一）",
                                                                          "give either ends_at_ms or minutes (one of them)", lang))
        ends = body.ends_at_ms if body.ends_at_ms is not None else w.ends_ms + (body.minutes or 0) * MINUTE_MS
        try:
            w = await m.extend(window_id, ends, p.username, body.reason)
        except MaintenanceError as exc:
            raise refused(exc, lang) from exc
        return WindowDetail(window=m.view(w), audit=[])

    @router.post("/maintenance/{window_id}/end", summary="End a window now: every device in it is re-checked, alarms still present go live")
    async def end_window(p: Annotated[Principal, Depends(office)], window_id: PlaceId, body: EndWindow,
                         accept_language: AcceptLanguage = None) -> WindowDetail:
        lang = _lang(accept_language)
        m, _w = await visible(p, window_id, lang)
        try:
            w = await m.end(window_id, p.username, body.reason)
        except MaintenanceError as exc:
            raise refused(exc, lang) from exc
        return WindowDetail(window=m.view(w), audit=[])

    return router
