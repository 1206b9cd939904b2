"""The responder's phone view (issue 18): the one-tap link's page, the session it opens, the tasks and the moves.

Routes (thin; the work is in backend.responder and backend.api.responses.record_answer):
- `GET /r/{token}`: the page a one-tap link (or its short link, GET /s/{code}) opens. A valid link with moves
  left logs its person in (the `sw_responder` cookie, backend.responder.session) and serves the phone page
  (backend/api/static/responder.html) with the link's own alarm and its answer buttons drawn on the server (they
  POST /r/{token}/{answer}, so they work without script); the script then shows every open task of the person.
  A forged, malformed or expired link, or one whose moves are all made, answers a Chinese page (English for
  `Accept-Language: en`) that says why and offers the duty room's number as a tel: link; a used link logs nobody in.
- `GET /m/`: the phone page for a person already logged in (a Chinese page with the duty room's number otherwise).
- `GET /m/api/tasks`: my open tasks, newest first: alarms whose ladder paged me in my community, and work orders
  assigned to me, each with its place in words, navigation, calls and the moves I may still make.
- `POST /m/api/alarms/{alarm_id}/moves` (multipart: `move`, optional `note`, optional `photo`): 收到 / 出发 /
  到场 / 处置完成 through the alarm service (record_answer: once per person and ladder round, in order).
- `POST /m/api/workorders/{order_id}/moves` (the same form): 开始整改 / 整改完成 through the work-order service.
The two POSTs need the header `X-Shouwang-Responder: 1` besides the cookie (another site's page cannot send it).
A photo is checked before anything is written (size: `workorders.photo_max_bytes` and the alarm comments'
`alarms.photo_max_bytes`; type by its first bytes: JPEG, PNG, WebP) and goes on the alarm's record as the person's
comment with the photo (backend.alarms.collab, under the alarm photos' folder, named by its checksum), so the
console shows it live in the alarm's comments; the move's note says a photo is attached. Every refusal is a sentence
in Chinese (English on request), `{"detail"}`, and changes nothing: 401 no or a bad session, 404 an alarm or
order that is not one of my tasks (another community's, or one that did not page me: the same answer as an
unknown id), 409 a move the ladder's order or the table does not allow now, 413 a photo too large, 415 not an
image, 422 an unknown move.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
import html
import logging
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, File, Form, Header, Request, UploadFile, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.responses import Response as HttpResponse

from alerting.ladder import EscalationState
from alerting.workorders import OrderMove, OrderState
from backend.alarms.collab import CollabError
from backend.alarms.collab import PhotoRefused as CollabPhotoRefused
from backend.alarms.store import AlarmRecord
from backend.api.console_collab import collab_of
from backend.api.console_workorders import service_of
from backend.api.deps import ApiDeps
from backend.api.responses import ANSWER_ORDER, ANSWERS, LinkRefused, OneTapLinks, next_move_refusal, record_answer
from backend.api.tokens import InvalidToken
from backend.errors import BackendError
from backend.i18n import lang_of
from backend.notify.receipts import ReceiptStore
from backend.notify.reports import ReceiptReports
from backend.responder import COOKIE, COOKIE_PATH, Person, ResponderSessions, alarm_task, order_is_mine, order_task, paged, person_of
from backend.responder.view import ORDER_MOVES, open_alarms_of
from backend.workorders import PhotoRefused, WorkOrderService, WorkOrderServiceError
from backend.workorders.photos import sniff

__all__ = ["responder_router"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
Ident = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
_LINKED_MARK: Final = "<!--linked-->"
_ALARM_SCAN: Final = 500  # a community's open alarms looked through for a person's tasks (newest first)

# (status, Chinese, English)
_SAY: Final[dict[str, tuple[int, str, str]]] = {
    "no_session": (401, "请用短信或通知里的链接打开本页（登录已过期或未登录）。",
                   "open this page from the link in your SMS or notice (not logged in, or the login expired)"),
    "nobody": (401, "这个链接对应的人员不在社区名录中，请致电值班室。", "the person of this link is not in the site directory; call the duty room"),
    "used": (410, "这个链接的操作都已提交（链接已用过），本次未作任何更改。如有情况请致电值班室。",
             "every answer of this link was already given (the link is used); nothing was changed. Call the duty room if needed"),
    "not_mine": (404, "您的任务中没有这个报警（不在您的社区，或未呼叫您），本次未作任何更改。",
                 "no such alarm among your tasks (not in your community, or you were not paged); nothing was changed"),
    "not_my_order": (404, "您的任务中没有这张工单（未派给您，或已完成），本次未作任何更改。",
                     "no such work order among your tasks (not assigned to you, or finished); nothing was changed"),
    "closed": (409, "这个报警已关闭，本次未作任何更改。", "this alarm is closed; nothing was changed"),
    "bad_move": (422, "只能提交：收到、出发、到场、处置完成。", "answer with one of acknowledge, depart, arrive, finish"),
    "bad_order_move": (422, "工单只能提交：开始整改、整改完成。", "a work order takes start or finish only"),
    "order_state": (409, "工单当前为「{state}」，不能「{move}」，本次未作任何更改。",
                    "the work order is {state_en}: it cannot {move_en} now; nothing was changed"),
    "csrf": (403, "请从手机页面操作（缺少页面标记），本次未作任何更改。", "use the phone page (its header is missing); nothing was changed"),
}


class Refused(BackendError):
    """A request of the phone view refused; `text(english)` is the sentence shown. Answered by the routes, never raised past them."""

    def __init__(self, why: str, **fill: str) -> None:
        self.why, self.fill = why, fill
        super().__init__(why)

    def text(self, english: bool) -> str:
        _s, zh, en = _SAY[self.why]
        return (en if english else zh).format(**self.fill)

    @property
    def status(self) -> int:
        return _SAY[self.why][0]


def _english(request: Request) -> bool:
    return lang_of(request.headers.get("accept-language")) == "en"


def _page(title: str, body: str, *, english: bool) -> str:
    lang = "en" if english else "zh-CN"
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/static/responder.css"></head>'
            f'<body class="notice-page"><main>{body}</main></body></html>')


def _call_button(phone: str | None, english: bool) -> str:
    if not phone:
        return ""
    label = "Call the duty room" if english else "致电值班室"
    return f'<a class="call big" href="tel:{html.escape(phone)}">{label} {html.escape(phone)}</a>'


def responder_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(tags=["responder"])
    extras = deps.extras or {}
    links: OneTapLinks = extras.get("one_tap") or OneTapLinks(deps.signer, deps.clock)
    api_settings = extras.get("api")
    sessions = ResponderSessions(deps.signer, deps.clock, float(getattr(api_settings, "responder_session_ttl_s", 12 * 3600)))
    orders: WorkOrderService = service_of(deps)
    tz = ZoneInfo(orders.settings.time_zone)
    collab = collab_of(deps)
    shell = (STATIC / "responder.html").read_text(encoding="utf-8")
    read = ReceiptReports(ReceiptStore(deps.alarms.engine), deps.stream)  # issue 18: a link opened is its notice read

    def duty_phone(community: str | None) -> str | None:
        per: dict[str, str] = getattr(api_settings, "community_duty_phones", {}) or {}
        return per.get(community or "") or getattr(api_settings, "duty_phone", "") or None

    def refusal_page(request: Request, text: str, code: int, community: str | None = None) -> HttpResponse:
        """A page for a person's browser (it asks for text/html), `{"detail"}` for a program, as the answer routes do."""
        english = _english(request)
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if code == status.HTTP_401_UNAUTHORIZED:
            headers["WWW-Authenticate"] = "Bearer"
        phone = duty_phone(community)
        if "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": text, "duty_phone": phone}, status_code=code, headers=headers)
        title = "Shouwang · responder" if english else "守望 · 报警响应"
        body = f'<h1>{html.escape(text)}</h1>{_call_button(phone, english)}'
        return HTMLResponse(_page(title, body, english=english), status_code=code, headers=headers)

    def who(request: Request) -> Person:
        token = request.cookies.get(COOKIE)
        try:
            contact = sessions.open(token or "")
        except InvalidToken as exc:
            raise Refused("no_session") from exc
        person = person_of(contact, deps.sites)
        if person is None:
            raise Refused("nobody")
        return person

    def refused(request: Request, exc: Refused | LinkRefused | WorkOrderServiceError, code: int | None = None) -> JSONResponse:
        english = _english(request)
        if isinstance(exc, Refused):
            return JSONResponse({"detail": exc.text(english), "reason": exc.why}, status_code=exc.status)
        if isinstance(exc, LinkRefused):
            return JSONResponse({"detail": exc.text(english=english), "reason": exc.reason}, status_code=exc.status)
        return JSONResponse({"detail": exc.text("en" if english else "zh")}, status_code=code or status.HTTP_422_UNPROCESSABLE_CONTENT)

    def mine(person: Person, a: AlarmRecord) -> bool:
        """In my reach: my community's alarm, or (a family contact, a neighbour) my household's."""
        if person.community is not None:
            return a.community_id == person.community
        return person.household is not None and a.household_id == person.household

    async def alarm_of(person: Person, alarm_id: str) -> tuple[AlarmRecord, EscalationState]:
        stored = await asyncio.to_thread(deps.alarms.get, alarm_id)
        record = deps.alarms.record(stored) if stored is not None else None
        state = await deps.escalation.get(alarm_id) if deps.escalation is not None and record is not None else None
        if record is None or state is None or not mine(person, record) or not paged(state, person.id):
            raise Refused("not_mine")
        return record, state

    async def alarm_task_of(person: Person, record: AlarmRecord, state: EscalationState) -> dict[str, Any]:
        made = [m.move for m in await asyncio.to_thread(deps.users.moves, record.id, person.id, round_=state.round)]
        return alarm_task(record, state, made, person, deps.sites, duty_phone=duty_phone(record.community_id or person.community), tz=tz)

    async def tasks(person: Person) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        records = await asyncio.to_thread(open_alarms_of, deps.alarms, person, limit=_ALARM_SCAN)
        for record in records:
            if deps.escalation is None:
                break
            state = await deps.escalation.get(record.id)
            if state is not None and paged(state, person.id):
                out.append(await alarm_task_of(person, record, state))
        for wanted in (OrderState.ASSIGNED, OrderState.IN_PROGRESS):
            out.extend(order_task(o, person, deps.sites, duty_phone=duty_phone(o.community_id or person.community), tz=tz)
                       for o in await asyncio.to_thread(orders.records, state=wanted, limit=500) if order_is_mine(o, person))
        out.sort(key=lambda t: int(t["at_ms"]), reverse=True)
        return out

    async def read_photo(photo: UploadFile | None) -> tuple[bytes, str] | None:
        """The photo's bytes and type, checked as the work orders' photos are; PhotoRefused otherwise."""
        if photo is None or (not photo.filename and not photo.size):
            return None
        limit = orders.settings.photo_max_bytes
        data = await photo.read(limit + 1)
        if not data:
            return None
        if len(data) > limit:
            raise PhotoRefused(f"照片过大（超过 {limit / 1048576:.0f} MB 上限），本次未作任何更改：请压缩后再传",
                               f"the photo is too large (at most {limit} bytes); nothing was changed: shrink it", status.HTTP_413_CONTENT_TOO_LARGE)
        kind = sniff(data[:16])
        if kind is None:
            raise PhotoRefused("只接受 JPEG、PNG 或 WebP 格式的照片（按文件内容判断），本次未作任何更改",
                               "only JPEG, PNG or WebP photos are taken (judged by the file's bytes); nothing was changed",
                               status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
        return data, kind

    def check_header(marker: str | None) -> None:
        if marker != "1":
            raise Refused("csrf")

    # -- pages ----------------------------------------------------------------------------------------------------------

    @router.get("/r/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def one_tap_page(request: Request, token: str) -> HttpResponse:
        english = _english(request)
        try:
            try:
                alarm_id, round_, contact = links.open(token)
            except InvalidToken as exc:
                raise LinkRefused(exc.reason if exc.reason in ("malformed", "signature", "expired", "kind") else "malformed") from exc
            if deps.escalation is None:
                raise LinkRefused("no_service")
        except LinkRefused as exc:
            return refusal_page(request, exc.text(english=english), exc.status)
        await read.opened(alarm_id, contact, deps.clock.now_ms())  # the alarm's timeline: 短信 已读
        state = await deps.escalation.get(alarm_id)
        person = person_of(contact, deps.sites)
        community = state.facts.where.community if state is not None else None
        made = [m.move for m in await asyncio.to_thread(deps.users.moves, alarm_id, contact, round_=round_)]
        title = (state.facts.title or state.facts.alarm_type) if state is not None else alarm_id
        drill = ("[drill] " if english else "【演练】") if state is not None and state.facts.drill else ""
        done = "".join(f'<p class="done">已提交：{ANSWERS.get(m, m)}</p>' for m in made)
        open_moves = [r for r in ANSWERS if next_move_refusal(made, r) is None]
        if not open_moves:  # a used link: it explains itself (a page: it was opened in a browser) and logs nobody in
            what = f'<p class="muted">{html.escape(drill + title)}（{html.escape(alarm_id)}）</p>{done}'
            body = f'<h1>{html.escape(Refused("used").text(english))}</h1>{what}{_call_button(duty_phone(community), english)}'
            return HTMLResponse(_page("守望 · 报警响应", body, english=english), headers={"Cache-Control": "no-store"})
        buttons = "".join(f'<form method="post" action="/r/{html.escape(token)}/{r}"><button class="move">{ANSWERS[r]}</button></form>'
                          if r != "decline" else
                          f'<form method="post" action="/r/{html.escape(token)}/{r}"><button class="move secondary">{ANSWERS[r]}</button></form>'
                          for r in open_moves)
        linked = (f'<section id="linked" class="card" data-alarm-id="{html.escape(alarm_id)}"><h2>{html.escape(drill + title)}</h2>'
                  f'<p class="muted">报警编号 {html.escape(alarm_id)}</p>{done}{buttons}</section>')
        response = HTMLResponse(shell.replace(_LINKED_MARK, linked), headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        if person is not None:
            response.set_cookie(COOKIE, sessions.issue(contact), max_age=int(sessions.ttl_s), path=COOKIE_PATH, httponly=True, samesite="lax",
                                secure=request.url.scheme == "https")
        return response

    @router.get("/m/", response_class=HTMLResponse, include_in_schema=False)
    async def phone_page(request: Request) -> HttpResponse:
        try:
            who(request)
        except Refused as exc:
            return refusal_page(request, exc.text(_english(request)), exc.status)
        return HTMLResponse(shell.replace(_LINKED_MARK, ""), headers={"Cache-Control": "no-store"})

    # -- the phone's API ------------------------------------------------------------------------------------------------

    @router.get("/m/api/tasks", summary="The responder's open tasks, newest first (session cookie from their one-tap link)",
                responses={401: {"description": "no or an expired responder session"}})
    async def my_tasks(request: Request) -> Any:
        try:
            person = who(request)
        except Refused as exc:
            return refused(request, exc)
        now = deps.clock.now_ms()
        return {"me": {"id": person.id, "name": person.name, "role": person.role, "role_zh": person.role_zh},
                "duty_phone": duty_phone(person.community), "tasks": await tasks(person), "server_now_ms": now, "time_zone": str(tz)}

    @router.post("/m/api/alarms/{alarm_id}/moves", summary="A responder's field move on an alarm they were paged for (收到/出发/到场/处置完成)",
                 responses={401: {"description": "no responder session"}, 404: {"description": "not one of your tasks"},
                            409: {"description": "a move the ladder's order or the table does not allow now"},
                            413: {"description": "the photo is too large"}, 415: {"description": "the photo is not a JPEG, PNG or WebP"}})
    async def alarm_move(request: Request, alarm_id: Ident, *, move: Annotated[str, Form(max_length=20)],
                         note: Annotated[str, Form(max_length=500)] = "", photo: Annotated[UploadFile | None, File()] = None,
                         x_shouwang_responder: Annotated[str | None, Header()] = None) -> Any:
        try:
            check_header(x_shouwang_responder)
            person = who(request)
            if move not in {m.value for m in ANSWER_ORDER}:
                raise Refused("bad_move")
            image = await read_photo(photo)
            record, state = await alarm_of(person, alarm_id)
            if not record.is_open:
                raise Refused("closed")
            refusal = next_move_refusal([m.move for m in await asyncio.to_thread(deps.users.moves, alarm_id, person.id, round_=state.round)], move)
            if refusal is not None:
                raise refusal
            if image is not None:
                try:
                    collab.check_photo(image[0])  # the alarm's comments take it (their own limits): checked before the move
                except CollabPhotoRefused as exc:
                    raise PhotoRefused(exc.zh + "，本次未作任何更改", exc.en + "; nothing was changed", exc.status) from exc
            words = " ".join(x for x in ("手机", note.strip(), "（附现场照片，见评论）" if image else "") if x)
            await record_answer(deps, alarm_id, round_=state.round, contact=person.id, response=move, note=words, now_ms=deps.clock.now_ms())
        except (Refused, LinkRefused, PhotoRefused) as exc:
            return refused(request, exc, exc.status if isinstance(exc, PhotoRefused) else None)
        # The photo goes on the alarm's record as the person's comment (backend.alarms.collab): the console shows it
        # in the alarm's comments, live, as it shows a duty officer's photo.
        comment_id, photo_error = None, None
        if image is not None:
            try:
                c = await collab.comment(alarm_id, f"{person.name}（{person.role_zh}）", note.strip() or "现场照片", [image[0]])
                comment_id = c.id
            except CollabError as exc:  # the move stands; the photo did not make it: say so, the person can send it again
                log.warning("phone move on %s by %s: the photo was not kept: %s", alarm_id, person.id, exc.en)
                photo_error = exc.text("en" if _english(request) else "zh")
        record, state = await alarm_of(person, alarm_id)
        return {"task": await alarm_task_of(person, record, state), "photo": comment_id, "photo_error": photo_error}

    @router.post("/m/api/workorders/{order_id}/moves", summary="A responder's move on a work order assigned to them (开始整改/整改完成, with a photo)",
                 responses={401: {"description": "no responder session"}, 404: {"description": "not one of your tasks"},
                            409: {"description": "a move the table does not allow now"},
                            413: {"description": "the photo is too large"}, 415: {"description": "the photo is not a JPEG, PNG or WebP"}})
    async def order_move(request: Request, order_id: Ident, *, move: Annotated[str, Form(max_length=20)],
                         note: Annotated[str, Form(max_length=500)] = "", photo: Annotated[UploadFile | None, File()] = None,
                         x_shouwang_responder: Annotated[str | None, Header()] = None) -> Any:
        english = _english(request)
        try:
            check_header(x_shouwang_responder)
            person = who(request)
            if move not in ORDER_MOVES:
                raise Refused("bad_order_move")
            image = await read_photo(photo)
            o = await asyncio.to_thread(orders.get, order_id)
            if o is None or not order_is_mine(o, person):
                raise Refused("not_my_order")
            needed = OrderState.ASSIGNED if move == "start" else OrderState.IN_PROGRESS
            if o.state is not needed:
                raise Refused("order_state", state=view_state(o.state), move=ORDER_MOVES[move], state_en=o.state.value, move_en=move)
            if image is not None:
                await orders.add_photo(order_id, person.id, image[0], caption=note.strip()[:200])
            o = await orders.move(order_id, OrderMove(move), person.id, note=note.strip())
        except (Refused, PhotoRefused) as exc:
            return refused(request, exc, exc.status if isinstance(exc, PhotoRefused) else None)
        except WorkOrderServiceError as exc:
            code = status.HTTP_409_CONFLICT if type(exc).__name__ in ("OrderConflict",) else status.HTTP_422_UNPROCESSABLE_CONTENT
            return JSONResponse({"detail": exc.text("en" if english else "zh")}, status_code=code)
        return {"task": order_task(o, person, deps.sites, duty_phone=duty_phone(o.community_id or person.community), tz=tz)}

    def view_state(state: OrderState) -> str:
        return {"assigned": "已派单", "in_progress": "整改中", "done": "整改完成", "reinspected": "复查合格", "closed": "已销号",
                "cancelled": "已撤销", "open": "待派单"}.get(state.value, state.value)

    return router
