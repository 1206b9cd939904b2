"""SOS call-back routes (回访) for the console and the responder's phone view: thin; the work is backend.callbacks.

- GET  /api/callbacks                      call-backs waiting for their outcome in your territory, earliest deadline first
- GET  /api/alarms/{alarm_id}/callback     one SOS alarm's call-back: the resident's phone, the family, the deadline, the outcome
- POST /api/alarms/{alarm_id}/callback     record the outcome (answered_fine | needs_help | no_answer | false_press), once

Recording needs the acknowledge capability (the grid worker who rings, the duty officer); an outcome that closes the
alarm (answered-fine, false press) needs the close capability too. Every refusal answers with a Chinese sentence and
writes nothing.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel, Field

from alerting.ladder import CallbackOutcome
from alerting.model import Alarm
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.api.auth import Auth, Capability, Principal
from backend.api.deps import AlarmMoves, ApiDeps, NotWired
from backend.api.errors import ERRORS
from backend.callbacks import CallbackDesk, CallbackDeskError

__all__ = ["callbacks_router"]

AlarmId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]


class CallbackBody(BaseModel):
    outcome: CallbackOutcome = Field(description="answered_fine 接通·平安 | needs_help 接通·需要帮助 | no_answer 无人接听 | false_press 误按")
    note: Annotated[str, Field(max_length=500, description="what the resident said; a false press needs its reason")] = ""


class CallbackView(BaseModel):
    callback: dict[str, Any]
    server_now_ms: int


class CallbackList(BaseModel):
    callbacks: list[dict[str, Any]] = Field(description="open call-backs in your territory, earliest deadline first")
    server_now_ms: int


class _Moves:
    """The alarm service's moves, refusals said in Chinese (the outcome is already recorded when one is refused)."""

    def __init__(self, moves: AlarmMoves) -> None:
        self._moves = moves

    async def move(self, alarm_id: str, move: Any, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm:
        try:
            return await self._moves.move(alarm_id, move, actor, note=note, until_ms=until_ms)
        except MoveRefused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"回访结果已记录，但报警未能关闭（{exc.reason}）：请在报警详情中处理") from exc
        except NoSuchAlarm as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有报警 {alarm_id}") from exc
        except NotWired as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "报警服务未在本服务器运行，回访结果已记录但报警未关闭：请联系管理员") from exc


def callbacks_router(deps: ApiDeps, auth: Auth, moves: AlarmMoves) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["callbacks"], responses={k: v for k, v in ERRORS.items() if k in (401, 403, 404, 409, 422, 503)})
    viewer = auth.require(Capability.VIEW_ALARMS)
    recorder = auth.require(Capability.ACKNOWLEDGE)
    holder: list[CallbackDesk] = []

    def desk() -> CallbackDesk:
        if deps.escalation is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "升级梯队服务未在本服务器运行，无法回访：请联系管理员")
        if not holder:
            offset = int(getattr(deps.escalation.roster, "utc_offset_min", 480))
            holder.append(CallbackDesk(deps.escalation, _Moves(moves), deps.alarms, deps.sites, utc_offset_min=offset))
        return holder[0]

    def refused(exc: CallbackDeskError) -> HTTPException:
        return HTTPException(exc.status, exc.zh)

    @router.get("/callbacks", summary="SOS call-backs (回访) waiting for their outcome in your territory, earliest deadline first")
    async def open_callbacks(p: Annotated[Principal, Depends(viewer)]) -> CallbackList:
        return CallbackList(callbacks=await desk().open_callbacks(p.territory), server_now_ms=deps.clock.now_ms())

    @router.get("/alarms/{alarm_id}/callback", summary="An SOS alarm's call-back: the resident's phone, the deadline, the outcome")
    async def one_callback(p: Annotated[Principal, Depends(viewer)], alarm_id: AlarmId) -> CallbackView:
        try:
            view = await desk().callback(alarm_id, p.territory)
        except CallbackDeskError as exc:
            raise refused(exc) from exc
        if not p.can(Capability.VIEW_VULNERABLE):  # the family's numbers are for roles allowed to see residents' notes
            view = {**view, "family": []}
        return CallbackView(callback=view, server_now_ms=deps.clock.now_ms())

    @router.post("/alarms/{alarm_id}/callback", summary="Record the call-back's outcome (once): 接通·平安 / 接通·需要帮助 / 无人接听 / 误按")
    async def record_callback(p: Annotated[Principal, Depends(recorder)], alarm_id: AlarmId, body: CallbackBody) -> CallbackView:
        if body.outcome in (CallbackOutcome.ANSWERED_FINE, CallbackOutcome.FALSE_PRESS) and not p.can(Capability.CLOSE):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "这个结果会关闭报警，你的角色不能关闭报警：请选择其他结果或交值班员记录")
        try:
            view = await desk().record(alarm_id, body.outcome, p.username, p.territory, body.note)
        except CallbackDeskError as exc:
            raise refused(exc) from exc
        return CallbackView(callback=view, server_now_ms=deps.clock.now_ms())

    return router
