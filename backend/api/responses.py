"""Responders answer through the API: one-tap links from SMS, the responder app, and the ladder's figures.

How this works: `OneTapLinks.link(alarm_id, round, contact)` signs {kind: respond, alarm, ladder round,
contact} with the API's `TokenSigner` (HMAC, expiring after `escalation.link_ttl_s`, 30 min by default). The
link opens the responder's phone view (GET /r/{token}, backend/api/responder.py) with one button per answer still
open to that person; each button POSTs /r/{token}/{answer} (a GET never changes anything, so SMS link previewers cannot answer for
anyone). The responder app posts the same answers as JSON to POST /api/responses/{token}.

The answers are the lifecycle's own moves, by their names (alerting.lifecycle): acknowledge (我已收到), depart
(出发), arrive (到场), finish (处置完成); and `decline` (无法前往), which is no lifecycle move but a ladder event
(the rung passes on at once: `EscalationService.decline`). A field answer is a move asked of the alarm's one
owner, the alarm service (`ApiDeps.alarm_service`; in a cluster backend the relay to the rules leader): it
commits the move with the responder as actor, and the ladder learns of it from the committed result (the
bridge, backend.escalation.bridge). When the alarm has no such move to take (another responder got it there
first or further, or it is held, or no owner runs here), the ladder records the person's answer as theirs
(`EscalationService.observe`): no move is asked that the lifecycle would refuse.

A link is single-purpose (issue 22):
- it is bound to one person and one alarm: both are inside the signed token, so a link acts only as the
  person it was sent to, only on that alarm;
- it travels only on that person's own channels (SMS, voice, webhook text): the MQTT notices any gateway
  could read carry the alarm and no link (backend/notify/mqtt.py);
- each move is accepted once per (alarm, ladder round, person), and only forward: acknowledge first (or
  decline), then depart, arrive, finish, skipping allowed, never back; decline only before acknowledging, and
  nothing after a decline. The moves made are recorded in the user store (`one_tap_moves`, keyed by the
  round the link was sent in; `next_move_refusal` below), so a replayed, reordered or raced request, from any
  link of the same person and round, any process, or after a restart, is refused with a reason and changes
  nothing; a new round (the alarm live again) sends new links, which take the person's answers afresh. A move
  that is then not carried out is given back.
Refusals are Chinese, or English for `Accept-Language: en`; JSON `{"detail"}`, or a small page for a
browser that asks for HTML.

A one-tap token is not a login: it carries kind "respond" and its subject is no user, so it opens nothing
but its own alarm's answer page; a session token is refused here for the same reason.

GET /api/escalation/{alarm_id} serves the time from raise to each field state and the rungs paged;
GET /api/escalation/misses counts missed deadlines per rung (drills apart), site-wide: the command room's figure, so
only roles that see the system's health (view_system) may read it.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.responses import Response as HttpResponse
from pydantic import BaseModel, Field

from alerting.ladder import Contact, EscalationState
from alerting.ladder.engine import LadderError
from alerting.lifecycle import FIELD_MOVES, TRANSITIONS, Move
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.api.auth import Auth, Capability, Principal, wants_english
from backend.api.deps import ApiDeps, NotWired
from backend.api.tokens import InvalidToken, TokenSigner
from backend.errors import BackendError
from backend.escalation.service import EscalationService
from backend.escalation.store import UnknownEscalation
from backend.store.users import UserStore
from broker.clock import Clock

__all__ = ["ANSWERS", "ANSWER_ORDER", "DECLINE", "Answer", "LinkRefused", "OneTapLinks", "next_move_refusal", "record_answer", "responses_router"]

log = logging.getLogger(__name__)

# What a responder may answer from a link or the app (closing and false alarms are the duty officer's): the
# lifecycle's field moves by their own names, and the ladder's one event that is no move.
Answer = Literal["acknowledge", "depart", "arrive", "finish", "decline"]
DECLINE: Final = "decline"  # 无法前往: a ladder event (alerting.ladder.decline), not a lifecycle move
ANSWER_ORDER: Final = (Move.ACKNOWLEDGE, Move.DEPART, Move.ARRIVE, Move.FINISH)  # the only order they go in
ANSWERS: Final[dict[str, str]] = {Move.ACKNOWLEDGE: "我已收到", Move.DEPART: "出发", Move.ARRIVE: "到场", Move.FINISH: "处置完成", DECLINE: "无法前往"}
ANSWERS_EN: Final[dict[str, str]] = {Move.ACKNOWLEDGE: "acknowledge", Move.DEPART: "depart", Move.ARRIVE: "arrive", Move.FINISH: "finish",
                                     DECLINE: "decline"}
assert set(get_args(Answer)) == set(ANSWERS), "the answers a request may name are the answers shown"
assert all(m in FIELD_MOVES for m in ANSWER_ORDER), "every field answer is a lifecycle field move"
_KIND = "respond"
_CLAIM_TRIES = 5  # a claim lost to a racing request is re-checked against what that request recorded

# Why a link or a move is refused: (HTTP status, Chinese, English). {move} and {last} are filled in.
_REASONS: Final[dict[str, tuple[int, str, str]]] = {
    "malformed": (401, "这个链接无效，请向值班室索取新的链接。", "this link is not valid; ask the duty room for a new link"),
    "signature": (401, "这个链接无效（签名不符），请向值班室索取新的链接。", "this link's signature does not match; ask the duty room for a new link"),
    "expired": (401, "这个链接已过期，请向值班室索取新的链接。", "this link has expired; ask the duty room for a new link"),
    "kind": (401, "这不是应答链接（登录凭证不能代替链接），请向值班室索取新的链接。",
             "this is not an answer link (a login is no answer link); ask the duty room for a new link"),
    "replayed": (409, "您已提交过「{move}」，本次未作任何更改。", "you already answered “{move}”; nothing was changed"),
    "declined": (409, "您已表示无法前往，此链接不再接受操作，本次未作任何更改；情况有变请致电值班室。",
                 "you already declined this alarm; nothing was changed. If that has changed, call the duty room"),
    "decline_late": (409, "您已确认收到，不能再选择「无法前往」，本次未作任何更改；请致电值班室。",
                     "you already acknowledged, so you can no longer decline; nothing was changed. Call the duty room"),
    "ack_first": (409, "请先点「我已收到」，再报告「{move}」；本次未作任何更改。", "acknowledge first, then report “{move}”; nothing was changed"),
    "backwards": (409, "您已报告「{last}」，不能再报告更早的「{move}」；本次未作任何更改。",
                  "you already reported “{last}”, which comes after “{move}”; nothing was changed"),
    "busy": (409, "同一报警的其他应答正在处理，请稍后重试。", "another answer to this alarm is being recorded; try again"),
    "not_answer": (422, "只能回答：我已收到、出发、到场、处置完成、无法前往。", "answer with one of acknowledge, depart, arrive, finish, decline"),
    "no_ladder": (404, "这个报警已没有响应流程，请致电值班室。", "this alarm has no escalation any more; call the duty room"),
    "no_service": (503, "本服务器未运行报警响应服务，请致电值班室。", "the escalation service is not running on this server; call the duty room"),
    "owner_away": (503, "报警服务暂时无法记录此应答，本次未作任何更改；请稍后重试或致电值班室。",
                   "the alarm service cannot record this answer just now; nothing was changed. Try again, or call the duty room"),
    "ladder": (409, "无法记录此应答（{move}），本次未作任何更改；请致电值班室。",
               "this answer ({move}) could not be recorded; nothing was changed. Call the duty room"),
}


class LinkRefused(BackendError):
    """A one-tap link or one of its moves is refused; `text(english)` is the sentence shown."""

    def __init__(self, reason: str, move: str | None = None, last: str | None = None) -> None:
        self.reason, self.move, self.last = reason, move, last
        self.status = _REASONS[reason][0]
        super().__init__(self.text(english=True))

    def text(self, *, english: bool) -> str:
        _status, zh, en = _REASONS[self.reason]
        names = ANSWERS_EN if english else ANSWERS
        fill = {"move": names.get(self.move, "") if self.move else "", "last": names.get(self.last, "") if self.last else ""}
        return (en if english else zh).format(**fill)


def next_move_refusal(made: Sequence[str], move: str) -> LinkRefused | None:
    """Why `move` may not follow the answers this person already made on this alarm in this round (oldest first);
    None: it may."""
    if move in made:
        return LinkRefused("replayed", move)
    if DECLINE in made:
        return LinkRefused("declined", move)
    if move == DECLINE:
        return LinkRefused("decline_late", move) if made else None
    if not made:
        return None if move == Move.ACKNOWLEDGE else LinkRefused("ack_first", move)
    last = max(made, key=ANSWER_ORDER.index)
    if ANSWER_ORDER.index(Move(move)) < ANSWER_ORDER.index(Move(last)):
        return LinkRefused("backwards", move, last)
    return None


@dataclass(frozen=True)
class OneTapLinks:
    signer: TokenSigner
    clock: Clock
    base_url: str = "http://127.0.0.1:8080"
    ttl_s: float = 30 * 60  # long enough to read the SMS and answer; later moves come with the next notice or the app

    def token(self, alarm_id: str, contact_id: str, round_: int = 1) -> str:
        claims = {"k": _KIND, "sub": f"{_KIND}:{contact_id}", "a": alarm_id, "r": round_, "c": contact_id}
        return self.signer.sign(claims, self.clock.now_ms() / 1000, self.ttl_s)

    def link(self, alarm_id: str, round_: int, contact: Contact) -> str:
        """The LinkMaker the escalation service calls for every notice (the ladder's round goes into the token)."""
        return f"{self.base_url.rstrip('/')}/r/{self.token(alarm_id, contact.id, round_)}"

    def open(self, token: str) -> tuple[str, int, str]:
        """(alarm id, ladder round, contact id) of a valid one-tap token; InvalidToken otherwise. A token signed
        before rounds were in it (at most `ttl_s` old after the upgrade) is round 1."""
        claims = self.signer.verify(token, self.clock.now_ms() / 1000)
        round_ = claims.get("r", 1)
        if (claims.get("k") != _KIND or not isinstance(claims.get("a"), str) or not isinstance(claims.get("c"), str)
                or not isinstance(round_, int) or isinstance(round_, bool) or round_ < 1):
            raise InvalidToken("this is not an answer link", "kind")
        return claims["a"], round_, claims["c"]


class AnswerBody(BaseModel):
    response: Answer = Field(description="acknowledge, depart, arrive, finish (the lifecycle's moves) or decline")
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


def _claim(users: UserStore, alarm_id: str, contact: str, move: str, at_ms: int, *, round_: int) -> int:
    """Record `move` as the next one of this person on this alarm in this round; its number. LinkRefused if it may
    not follow."""
    for _ in range(_CLAIM_TRIES):
        made = users.moves(alarm_id, contact, round_=round_)
        refusal = next_move_refusal([m.move for m in made], move)
        if refusal is not None:
            raise refusal
        seq = (made[-1].seq if made else 0) + 1
        if users.record_move(alarm_id, contact, seq, move, at_ms, round_=round_):
            return seq
    raise LinkRefused("busy", move)


async def _field_answer(deps: ApiDeps, svc: EscalationService, alarm_id: str, move: Move, *, contact: str, note: str) -> EscalationState:
    """Ask the alarm's owner for the move when the alarm takes it: committed, the ladder observes it (the
    bridge). Otherwise (already there or past, held, no owner here) the ladder records the person's answer."""
    owner = deps.alarm_service
    stored = await asyncio.to_thread(deps.alarms.get, alarm_id)
    if owner is not None and stored is not None and (stored.state, move) in TRANSITIONS:
        try:
            await owner.move(alarm_id, move, contact, note=note)
        except (MoveRefused, NoSuchAlarm) as exc:  # moved on between the look and the move: record the answer only
            log.debug("one-tap %s on %s by %s: the alarm moved on meanwhile (%s)", move.value, alarm_id, contact, exc)
        else:
            state = await svc.get(alarm_id)
            if state is not None:
                return state
    return await svc.observe(alarm_id, FIELD_MOVES[move], contact)


async def record_answer(deps: ApiDeps, alarm_id: str, *, round_: int, contact: str, response: str, note: str, now_ms: int) -> AnswerResult:
    """A person's answer on an alarm in a ladder round, once and in order (`_claim`), carried out through the alarm
    service (a field move) or the ladder (decline); LinkRefused with the reason otherwise, nothing changed. The
    one-tap routes below and the responder's phone view (backend.api.responder) both answer through here."""
    if response not in ANSWERS:
        raise LinkRefused("not_answer", response)
    if deps.escalation is None:
        raise LinkRefused("no_service")
    svc, users = deps.escalation, deps.users
    if await svc.get(alarm_id) is None:
        raise LinkRefused("no_ladder", response)
    seq = await asyncio.to_thread(_claim, users, alarm_id, contact, response, now_ms, round_=round_)
    try:
        if response == DECLINE:
            state = await svc.decline(alarm_id, contact, note)
        else:
            state = await _field_answer(deps, svc, alarm_id, Move(response), contact=contact, note=note)
    except BaseException as exc:
        await asyncio.to_thread(users.forget_move, alarm_id, contact, seq, round_=round_)  # not carried out: the move is still open
        if isinstance(exc, UnknownEscalation):
            raise LinkRefused("no_ladder", response) from exc
        if isinstance(exc, LadderError):
            raise LinkRefused("ladder", response) from exc
        if isinstance(exc, NotWired):  # the alarm's owner did not answer (a cluster's rules leader away): try again
            raise LinkRefused("owner_away", response) from exc
        raise
    t0 = state.facts.raised_at_ms
    return AnswerResult(alarm_id=alarm_id, contact=contact, response=response, stopped=state.stopped,
                        reached_ms={s.value: t - t0 for s, t in state.reached})


def responses_router(deps: ApiDeps, auth: Auth) -> APIRouter:
    router = APIRouter(tags=["responses"])
    extras = deps.extras or {}
    links: OneTapLinks = extras.get("one_tap") or OneTapLinks(deps.signer, deps.clock)

    def english(request: Request) -> bool:
        return wants_english(request.headers.get("accept-language"))

    def refuse(request: Request, exc: LinkRefused) -> HttpResponse:
        text = exc.text(english=english(request))
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == status.HTTP_401_UNAUTHORIZED else None
        if "text/html" in request.headers.get("accept", ""):  # a person's browser: a page, not JSON
            return HTMLResponse(_page("守望 · 报警响应", f"<h1>{html.escape(text)}</h1>"), status_code=exc.status, headers=headers)
        return JSONResponse({"detail": text}, status_code=exc.status, headers=headers)

    def service() -> EscalationService:
        if deps.escalation is None:
            raise LinkRefused("no_service")
        return deps.escalation

    def opened(token: str) -> tuple[str, int, str]:
        try:
            return links.open(token)
        except InvalidToken as exc:
            raise LinkRefused(exc.reason if exc.reason in _REASONS else "malformed") from exc

    async def answer(token: str, response: str, note: str) -> AnswerResult:
        alarm_id, round_, contact = opened(token)
        return await record_answer(deps, alarm_id, round_=round_, contact=contact, response=response, note=note, now_ms=links.clock.now_ms())

    # GET /r/{token} (the page a link opens, which also logs its person in on the phone view) is in backend.api.responder.

    @router.post("/r/{token}/{response}", response_class=HTMLResponse, include_in_schema=False)
    async def one_tap_answer(request: Request, token: str, response: Answer) -> HttpResponse:
        try:
            result = await answer(token, response, "one-tap link")
        except LinkRefused as exc:
            return refuse(request, exc)
        return HTMLResponse(_page("守望 · 已记录", f"<h1>已记录：{ANSWERS[response]}</h1><p>报警编号 {html.escape(result.alarm_id)}</p>"))

    @router.post("/api/responses/{token}", summary="A responder's answer (the responder app), authorised by the notice's signed token",
                 response_model=AnswerResult,
                 responses={401: {"description": "the link is invalid or expired"}, 404: {"description": "no escalation for this alarm"},
                            409: {"description": "this person already made this move, or a later one (each move once, in order)"}})
    async def app_answer(request: Request, token: str, body: AnswerBody) -> Any:
        try:
            return await answer(token, body.response, body.note)
        except LinkRefused as exc:
            return refuse(request, exc)

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
