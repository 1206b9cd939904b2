"""Work-order routes (隐患整改): list, read, open, move, add and read photos. The console and the responder's phone
view both act through these.

How this works: the routes are thin; the rules (the transition table, due times, who may be assigned, photo
checks, the overdue escalation) live in alerting.workorders and backend.workorders. The service is the server's
(`ApiDeps.extras["workorders"]`, with its overdue watch running) or, when the server gave none (the test rigs),
one made here on the alarm database without a watch: an order's `overdue` flag is still computed from
(order, now) on every read.

Who may (backend.api.auth capabilities): reading and the field's own work (start, finish, photos) need
`acknowledge` (every role but volunteers); opening, assigning and reassigning need `dispatch`; re-inspecting,
sending back, closing and cancelling need `close`. An order, alarm, building or device outside the caller's
territory answers 404 exactly like an unknown one. Every refusal is a sentence in Chinese (English on
`Accept-Language: en`) and nothing is written: 404 unknown, 409 a move the table does not allow now (or the
order changed meanwhile), 413 a photo too large, 415 not a JPEG / PNG / WebP, 422 a rule broken (a missing
reason, a due time out of range, an unknown assignee).

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, UploadFile, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from alerting.workorders import OrderMove, OrderState
from backend.api.auth import ROLE_CAPABILITIES, Auth, Capability, Principal
from backend.api.deps import ApiDeps
from backend.api.errors import ERRORS
from backend.errors import Unavailable
from backend.i18n import lang_of
from backend.store.db import sqlite_file
from backend.workorders import (
    NoSuchOrder,
    OrderConflict,
    PhotoRefused,
    WorkOrder,
    WorkOrderService,
    WorkOrderServiceError,
    WorkOrderSettings,
)

__all__ = ["workorders_router"]

AcceptLanguage = Annotated[str | None, Header(description="`en` for English messages; Chinese otherwise")]
Ident = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
MOVE_CAPABILITY = {
    OrderMove.ASSIGN: Capability.DISPATCH, OrderMove.REASSIGN: Capability.DISPATCH,
    OrderMove.START: Capability.ACKNOWLEDGE, OrderMove.FINISH: Capability.ACKNOWLEDGE,
    OrderMove.REINSPECT: Capability.CLOSE, OrderMove.REJECT: Capability.CLOSE, OrderMove.CLOSE: Capability.CLOSE,
    OrderMove.CANCEL: Capability.CLOSE,
}
MAX_DUE_MS = 4_102_444_800_000  # 2100-01-01: the schema's bound; the service's own limit (max_due_days) is far tighter


class OpenOrder(BaseModel):
    alarm_id: str | None = Field(default=None, min_length=1, max_length=64, description="open it from this alarm (its place, severity and title)")
    building_id: str | None = Field(default=None, min_length=1, max_length=64, description="standalone: the building")
    device_id: str | None = Field(default=None, min_length=1, max_length=64, description="standalone: the device (its building)")
    title: str | None = Field(default=None, min_length=1, max_length=200, description="unset: the alarm's title, or the building's name")
    description: str = Field(min_length=2, max_length=2000, description="the hazard and what must be rectified")
    severity: Literal["critical", "major", "minor", "info"] | None = Field(default=None, description="unset: the alarm's, or minor")
    assignee_id: str | None = Field(default=None, min_length=1, max_length=64, description="a person of the site directory (responder id)")
    due_at_ms: int | None = Field(default=None, ge=0, le=MAX_DUE_MS, description="due time (epoch ms); unset: by severity (settings)")


class MoveOrder(BaseModel):
    move: OrderMove = Field(description="assign, reassign, start, finish, reinspect, reject, close, cancel")
    note: str = Field(default="", max_length=1000, description="why (required to reject or cancel)")
    assignee_id: str | None = Field(default=None, min_length=1, max_length=64, description="assign / reassign: the person")
    due_at_ms: int | None = Field(default=None, ge=0, le=MAX_DUE_MS, description="assign / reassign / reject: a new due time (epoch ms)")


class OrderList(BaseModel):
    orders: list[dict[str, Any]]
    server_now_ms: int
    time_zone: str


class OrderDetail(BaseModel):
    order: dict[str, Any]
    audit: list[dict[str, Any]]
    photos: list[dict[str, Any]]
    assignees: list[dict[str, Any]]


def _pick(zh: str, en: str, lang: str) -> str:
    return en if lang == "en" else zh


def _default_photos_dir(deps: ApiDeps) -> Path:
    """Without the server's settings: beside a SQLite alarm database (the data folder), else ./var."""
    db = sqlite_file(deps.alarms.engine)
    return db.resolve().parent / "workorder-photos" if db is not None else Path("var") / "workorder-photos"


def service_of(deps: ApiDeps) -> WorkOrderService:
    """The server's work-order service, or one on the alarm database (no overdue watch: the test rigs)."""
    given = (deps.extras or {}).get("workorders")
    if isinstance(given, WorkOrderService):
        return given
    tz = getattr(getattr(deps.alarm_service, "maintenance", None), "settings", None)
    settings = WorkOrderSettings(time_zone=getattr(tz, "time_zone", "Asia/Shanghai"))
    return WorkOrderService(deps.alarms.engine, deps.sites, deps.clock, _default_photos_dir(deps), settings, alarms=deps.alarms)


def workorders_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/api/workorders", tags=["workorders"],
                       responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 409, 422, 503)})
    svc = service_of(deps)
    field_work = auth.require(Capability.ACKNOWLEDGE)
    dispatcher = auth.require(Capability.DISPATCH)

    feed = deps.feed
    if feed is not None and hasattr(feed, "publish"):  # the overdue escalations reach the duty rooms of the order's place
        def to_duty_room(notice: dict[str, Any]) -> None:
            feed.publish("workorder", notice, building_id=notice.get("building_id"), grid_id=notice.get("grid_id"),
                         community_id=notice.get("community_id"))

        svc.notice_sinks[:] = [to_duty_room]  # one sink: an app made twice over one service does not say everything twice

    def refused(exc: WorkOrderServiceError, lang: str) -> HTTPException:
        if isinstance(exc, Unavailable):  # nothing was recorded; the same request may succeed in a moment
            return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, exc.text(lang), headers={"Retry-After": "5"})
        code = (status.HTTP_404_NOT_FOUND if isinstance(exc, NoSuchOrder) else status.HTTP_409_CONFLICT if isinstance(exc, OrderConflict)
                else exc.status if isinstance(exc, PhotoRefused) else status.HTTP_422_UNPROCESSABLE_CONTENT)
        return HTTPException(code, exc.text(lang))

    def covers(p: Principal, o: WorkOrder) -> bool:
        return p.territory.covers(o.building_id, o.grid_id, o.community_id)

    async def visible(p: Principal, order_id: str, lang: str) -> WorkOrder:
        o = await asyncio.to_thread(svc.get, order_id)
        if o is None or not covers(p, o):
            raise HTTPException(status.HTTP_404_NOT_FOUND, _pick(f"您的辖区内没有编号为 {order_id} 的整改工单；请核对编号",
                                                                  f"no work order {order_id!r} in your territory; check the id", lang))
        return o

    async def detail(o: WorkOrder) -> OrderDetail:
        audit = await asyncio.to_thread(svc.audit_view, o.id)
        photos = await asyncio.to_thread(svc.photo_rows, o.id)
        return OrderDetail(order=svc.view(o), audit=audit, photos=[svc.photo_view(ph) for ph in photos], assignees=svc.assignees(o.community_id))

    @router.get("", summary="Work orders in your territory, newest first (filters: state, community, overdue, alarm)")
    async def list_orders(p: Annotated[Principal, Depends(field_work)], *,
                          state: Annotated[OrderState | None, Query(description="only this state")] = None,
                          community: Annotated[str | None, Query(max_length=64, description="only this community")] = None,
                          overdue: Annotated[bool | None, Query(description="true: only overdue; false: only not overdue")] = None,
                          alarm_id: Annotated[str | None, Query(max_length=64, description="only the orders of this alarm")] = None,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> OrderList:
        rows = await asyncio.to_thread(svc.records, state=state, community=community, overdue=overdue, alarm_id=alarm_id, limit=limit)
        now = deps.clock.now_ms()
        return OrderList(orders=[svc.view(o, now) for o in rows if covers(p, o)], server_now_ms=now, time_zone=svc.settings.time_zone)

    @router.post("", status_code=status.HTTP_201_CREATED, summary="Open a work order from an alarm, or standalone on a building or device")
    async def open_order(p: Annotated[Principal, Depends(dispatcher)], body: OpenOrder, accept_language: AcceptLanguage = None) -> OrderDetail:
        lang = lang_of(accept_language)
        if sum(x is not None for x in (body.alarm_id, body.building_id or body.device_id)) != 1:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _pick("请给出告警编号 alarm_id，或楼栋 building_id / 设备 device_id（二选一）",
                                                                          "give either alarm_id, or building_id / device_id (one of them)", lang))
        try:
            o = await svc.create(p.username, description=body.description, title=body.title, severity=body.severity, alarm_id=body.alarm_id,
                                 building_id=body.building_id, device_id=body.device_id, assignee_id=body.assignee_id, due_at_ms=body.due_at_ms,
                                 place_check=p.territory.covers)
        except WorkOrderServiceError as exc:
            raise refused(exc, lang) from exc
        return await detail(o)

    @router.get("/{order_id}", summary="One work order with its audit log (every move: who, when, what, note), photos and possible assignees")
    async def get_order(p: Annotated[Principal, Depends(field_work)], order_id: Ident, accept_language: AcceptLanguage = None) -> OrderDetail:
        return await detail(await visible(p, order_id, lang_of(accept_language)))

    @router.post("/{order_id}/moves", summary="Move a work order (the transition table in docs/workorders.md decides what is allowed)")
    async def move_order(p: Annotated[Principal, Depends(field_work)], order_id: Ident, body: MoveOrder,
                         accept_language: AcceptLanguage = None) -> OrderDetail:
        lang = lang_of(accept_language)
        cap = MOVE_CAPABILITY[body.move]
        if cap not in p.capabilities:
            allowed = ", ".join(sorted(r.value for r, caps in ROLE_CAPABILITIES.items() if cap in caps))
            # the shape of auth.require's 403 (backend/i18n.py renders it in Chinese): the same sentence for every refusal by role
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"your role ({p.role.value}) may not {body.move.value} a work order; roles that may: {allowed}")
        await visible(p, order_id, lang)
        try:
            o = await svc.move(order_id, body.move, p.username, note=body.note, assignee_id=body.assignee_id, due_at_ms=body.due_at_ms)
        except WorkOrderServiceError as exc:
            raise refused(exc, lang) from exc
        return await detail(o)

    @router.post("/{order_id}/photos", status_code=status.HTTP_201_CREATED,
                 summary="Add a photo (multipart `file`: JPEG, PNG or WebP by its bytes; size limit in settings)",
                 responses={413: {**ERRORS[422], "description": "the photo is too large"},
                            415: {**ERRORS[422], "description": "not a JPEG, PNG or WebP"}})
    async def add_photo(p: Annotated[Principal, Depends(field_work)], order_id: Ident, file: Annotated[UploadFile, File(description="the photo")],
                        caption: Annotated[str, Form(max_length=200)] = "", accept_language: AcceptLanguage = None) -> dict[str, Any]:
        lang = lang_of(accept_language)
        await visible(p, order_id, lang)
        data = await file.read(svc.settings.photo_max_bytes + 1)
        try:
            row = await svc.add_photo(order_id, p.username, data, caption)
        except WorkOrderServiceError as exc:
            raise refused(exc, lang) from exc
        return svc.photo_view(row)

    @router.get("/{order_id}/photos/{photo_id}", summary="A photo of a work order (its bytes; ETag is its SHA-256)",
                response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}})
    async def get_photo(p: Annotated[Principal, Depends(field_work)], order_id: Ident, photo_id: Ident,
                        accept_language: AcceptLanguage = None) -> FileResponse:
        lang = lang_of(accept_language)
        await visible(p, order_id, lang)
        try:
            row, path = await asyncio.to_thread(svc.photo_file, order_id, photo_id)
        except WorkOrderServiceError as exc:
            raise refused(exc, lang) from exc
        return FileResponse(path, media_type=row["content_type"], headers={"ETag": f'"{row["sha256"]}"', "Cache-Control": "private, max-age=3600",
                                                                          "X-Content-SHA256": row["sha256"]})

    return router
