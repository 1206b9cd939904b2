"""Responders answer through the API: one-tap links from SMS, the responder app, and the ladder's figures.

How this works: `OneTapLinks.link(alarm_id, contact)` signs {kind: respond, alarm, contact} with the API's
`TokenSigner` (HMAC, expiring; nothing stored server-side). The link opens a small Chinese page
(GET /r/{token}) with one button per answer; each button POSTs /r/{token}/{answer} (a GET never changes
anything, so SMS link previewers cannot answer for anyone). The responder app posts the same answers as JSON
to POST /api/responses/{token}. Every answer goes to `EscalationService.respond`: acknowledge, en route, on
scene, handled, or decline (a volunteer's decline pages the next volunteer at once). The ladder turns
answers into lifecycle moves (AdvanceAlarm), which the server applies through the alarm service.

A one-tap token is not a login: it carries kind "respond" and its subject is no user, so it opens nothing
but its own alarm's answer page; a session token is refused here for the same reason.

GET /api/escalation/{alarm_id} serves the time from raise to each field state and the rungs paged;
GET /api/escalation/misses counts missed deadlines per rung (drills apart), site-wide: the command room's figure, so
only roles that see the system's health (view_system) may read it.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import html
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from alerting.ladder import Contact, Response
from alerting.ladder.engine import LadderError
from backend.api.auth import Auth, Capability, Principal
from backend.api.deps import ApiDeps
from backend.api.tokens import InvalidToken, TokenSigner
from backend.clock import Clock
from backend.escalation.service import EscalationService
from backend.escalation.store import UnknownEscalation

__all__ = ["ANSWERS", "OneTapLinks", "responses_router"]

# What a responder may answer from a link or the app (closing and false alarms are the duty officer's).
ANSWERS: Final = {
    Response.ACKNOWLEDGE: "我已收到",
    Response.EN_ROUTE: "出发",
    Response.ON_SCENE: "到场",
    Response.HANDLED: "处置完成",
    Response.DECLINE: "无法前往",
}
_KIND = "respond"


@dataclass(frozen=True)
class OneTapLinks:
    signer: TokenSigner
    clock: Clock
    base_url: str = "http://127.0.0.1:8080"
    ttl_s: float = 6 * 3600

    def token(self, alarm_id: str, contact_id: str) -> str:
        claims = {"k": _KIND, "sub": f"{_KIND}:{contact_id}", "a": alarm_id, "c": contact_id}
        return self.signer.sign(claims, self.clock.now_ms() / 1000, self.ttl_s)

    def link(self, alarm_id: str, contact: Contact) -> str:
        """The LinkMaker the escalation service calls for every notice."""
        return f"{self.base_url.rstrip('/')}/r/{self.token(alarm_id, contact.id)}"

    def open(self, token: str) -> tuple[str, str]:
        """(alarm id, contact id) of a valid one-tap token; InvalidToken otherwise."""
        claims = self.signer.verify(token, self.clock.now_ms() / 1000)
        if claims.get("k") != _KIND or not isinstance(claims.get("a"), str) or not isinstance(claims.get("c"), str):
            raise InvalidToken("this is not an answer link")
        return claims["a"], claims["c"]


class AnswerBody(BaseModel):
    response: Response = Field(description="acknowledge, en_route, on_scene, handled or decline")
    note: str = Field(default="", max_length=500)


class AnswerResult(BaseModel):
    alarm_id: str
    contact: str
    response: str
    stopped: str | None
    reached_ms: dict[str, int] = Field(description="ms from the raise to each field state reached so far")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:28rem;margin:1rem auto;padding:0 1rem}}"
            f"button{{display:block;width:100%;font-size:1.3rem;margin:.5rem 0;padding:.8rem}}</style></head><body>{body}</body></html>")


def responses_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(tags=["responses"])
    extras = deps.extras or {}
    links: OneTapLinks = extras.get("one_tap") or OneTapLinks(deps.signer, deps.clock)

    def service() -> EscalationService:
        if deps.escalation is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the escalation service is not running on this server; call the duty room")
        return deps.escalation

    def opened(token: str) -> tuple[str, str]:
        try:
            return links.open(token)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"{exc}; ask the duty room for a new link") from exc

    async def answer(token: str, response: Response, note: str) -> AnswerResult:
        if response not in ANSWERS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"answer with one of {[r.value for r in ANSWERS]}")
        alarm_id, contact = opened(token)
        try:
            state = await service().respond(alarm_id, response, contact, note)
        except UnknownEscalation as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "this alarm has no escalation any more; call the duty room") from exc
        except LadderError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        t0 = state.facts.raised_at_ms
        return AnswerResult(alarm_id=alarm_id, contact=contact, response=response.value, stopped=state.stopped,
                            reached_ms={s.value: t - t0 for s, t in state.reached})

    @router.get("/r/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def one_tap_page(token: str) -> str:
        alarm_id, _contact = opened(token)
        state = await service().get(alarm_id)
        title = (state.facts.title or state.facts.alarm_type) if state is not None else alarm_id
        drill = "【演练】" if state is not None and state.facts.drill else ""
        buttons = "".join(f'<form method="post" action="/r/{html.escape(token)}/{r.value}"><button>{label}</button></form>' for r, label in ANSWERS.items())
        return _page("守望 · 报警响应", f"<h1>{drill}{html.escape(title)}</h1><p>报警编号 {html.escape(alarm_id)}</p>{buttons}")

    @router.post("/r/{token}/{response}", response_class=HTMLResponse, include_in_schema=False)
    async def one_tap_answer(token: str, response: Response) -> str:
        result = await answer(token, response, "one-tap link")
        return _page("守望 · 已记录", f"<h1>已记录：{ANSWERS[response]}</h1><p>报警编号 {html.escape(result.alarm_id)}</p>")

    @router.post("/api/responses/{token}", summary="A responder's answer (the responder app), authorised by the notice's signed token",
                 responses={401: {"description": "the link is invalid or expired"}, 404: {"description": "no escalation for this alarm"}})
    async def app_answer(token: str, body: AnswerBody) -> AnswerResult:
        return await answer(token, body.response, body.note)

    @router.get("/api/escalation/misses", summary="Missed deadlines per rung, site-wide, for the command room (real alarms; drill=true for drills)")
    async def misses(_: Annotated[Principal, Depends(auth.require(Capability.VIEW_SYSTEM))],
                     drill: Annotated[bool, Query(description="count drill alarms instead of real ones")] = False) -> dict[str, Any]:
        return {"drill": drill, "misses": await service().misses(drill=drill)}

    @router.get("/api/escalation/{alarm_id}", summary="Time from raise to each field state, the rungs paged and the deadlines missed")
    async def timeline(alarm_id: str, p: Annotated[Principal, Depends(auth.require(Capability.VIEW_ALARMS))]) -> dict[str, Any]:
        try:
            t = await service().timeline(alarm_id)
        except UnknownEscalation as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no escalation for alarm {alarm_id}") from exc
        state = await service().get(alarm_id)
        where = state.facts.where if state is not None else None
        if where is None or not p.territory.covers(where.building, where.grid, where.community):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no escalation for alarm {alarm_id}")
        return t.as_json()

    return router
