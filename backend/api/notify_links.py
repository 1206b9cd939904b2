"""The providers' way back in: short links from SMS, and the voice platform's call reports (issue 18).

- `GET /s/{code}`: a short link sent by SMS (backend.notify.shortlinks). A live code answers 302 to the full
  one-tap link, which checks its own signature, expiry and single use; an unknown or expired code answers 401
  with a sentence (Chinese first) asking the duty room for a new link, as a page for a browser, JSON otherwise.
- `POST /api/notify/voice-report/{token}`: Alibaba Cloud pushes its voice call reports (VoiceReport: a JSON array
  of call results) to this URL, whose last segment is the secret `notify.voice_report_token` (the push carries
  no signature of its own, so the URL is the credential; compared in constant time). A report where the person
  pressed 1 is looked up by its CallId among the voice receipts, and the alarm service is asked for the
  ACKNOWLEDGE move on that person's behalf (the alarm service is the only writer of alarm state; a move it
  refuses, because the alarm is already further along, changes nothing). The answer is the shape the platform
  expects, `{"code": 0, "msg": "成功"}`, so it does not push the same reports again. Every report is also the voice
  receipt's next stage (answered, "pressed 1"; or failed with the report's reason: backend.notify.reports), stored
  and published on the stream before the keypress is acted on, so the alarm's timeline shows 已接听·按1确认.
- `POST /api/notify/sms-report/{token}` (issue 18): the SMS providers' status reports, Alibaba's SmsReport push
  (`[{biz_id, success, err_code, err_msg, ...}]`) or Tencent's status callback (`[{sid, report_status, errmsg,
  description, ...}]`), under the same secret URL segment: each is the SMS receipt's next stage (delivered or failed
  with its reason). The answer carries both platforms' "received" fields.

Both take their credential in the path and ignore any Authorization header.
"""

import asyncio
import hmac
import html
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from alerting.lifecycle import Move
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.api.deps import ApiDeps
from backend.i18n import lang_of
from backend.notify.receipts import ReceiptStore
from backend.notify.reports import ReceiptReports, stage_of_aliyun_sms, stage_of_tencent_sms, stage_of_voice_report
from backend.notify.settings import NotifySettings
from backend.notify.shortlinks import ShortLinks
from backend.notify.voice import CallReport, keypress_answers

__all__ = ["notify_links_router"]

log = logging.getLogger(__name__)

_LINK_GONE = ("这个链接无效或已过期，请向值班室索取新的链接。", "this link is not valid or has expired; ask the duty room for a new link")
_BAD_REPORT_URL = ("回执地址的密钥不符，未作任何更改。", "the receipt URL's secret does not match; nothing was changed")
_NO_REPORTS = ("本服务器未配置语音回执（notify.voice_report_token）。", "voice receipts are not configured here (notify.voice_report_token)")


class VoiceReportItem(BaseModel):
    """One call result of Alibaba Cloud's VoiceReport push (fields as documented; others are kept, unused)."""

    model_config = ConfigDict(extra="allow")

    call_id: str = Field(default="", max_length=200, description="CallId of SingleCallByTts")
    out_id: str = Field(default="", max_length=200, description="the OutId the call was placed with")
    status_code: str = Field(default="", max_length=20, description="the call's result code (200000: answered)")
    status_msg: str = Field(default="", max_length=200)
    dtmf: str = Field(default="", max_length=40, description="the keys the person pressed")
    callee: str = Field(default="", max_length=40)
    caller: str = Field(default="", max_length=40)
    duration: int | str | None = None
    start_time: str | None = Field(default=None, max_length=40)
    end_time: str | None = Field(default=None, max_length=40)


class VoiceReportAnswer(BaseModel):
    code: int = Field(description="0: received (the platform stops pushing these reports)")
    msg: str
    acknowledged: int = Field(description="alarms acknowledged by a keypress in this push")


def _say(request: Request, pair: tuple[str, str]) -> str:
    return pair[1] if lang_of(request.headers.get("accept-language")) == "en" else pair[0]


def notify_links_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(tags=["notify"])
    links = ShortLinks(deps.alarms.engine)  # the same database as the receipts and the ladder (the server's one engine)
    receipts = ReceiptStore(deps.alarms.engine)
    reported = ReceiptReports(receipts, deps.stream)  # a provider's later report: the receipt's next stage, on the stream (issue 18)
    extras = deps.extras or {}
    settings = extras.get("notify")
    token = settings.voice_report_token.get_secret_value() if isinstance(settings, NotifySettings) and settings.voice_report_token else None

    @router.get("/s/{code}", summary="A short link from an SMS: 302 to the one-tap answer link it stands for",
                status_code=302, response_class=RedirectResponse,
                responses={302: {"description": "to the full one-tap link"}, 401: {"description": "unknown or expired: ask the duty room"}})
    async def short_link(request: Request, code: str) -> Response:
        target = await asyncio.to_thread(links.resolve, code, now_ms=deps.clock.now_ms()) if len(code) <= 64 else None
        if target is not None:
            return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        text = _say(request, _LINK_GONE)
        if "text/html" in request.headers.get("accept", ""):
            page = f'<!doctype html><html lang="zh"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><h1>{html.escape(text)}</h1>'
            return HTMLResponse(page, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse({"detail": text}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @router.post("/api/notify/voice-report/{secret}", summary="Alibaba Cloud's voice call reports: a keypress 1 acknowledges the alarm",
                 responses={401: {"description": "the URL's secret does not match"}, 404: {"description": "voice receipts are not configured here"}})
    async def voice_report(request: Request, secret: str, reports: list[VoiceReportItem] | VoiceReportItem) -> Any:
        if token is None:
            return JSONResponse({"detail": _say(request, _NO_REPORTS)}, status_code=404)  # no receipt URL here
        if not hmac.compare_digest(secret.encode(), token.encode()):
            return JSONResponse({"detail": _say(request, _BAD_REPORT_URL)}, status_code=401)
        acknowledged = 0
        items = reports if isinstance(reports, list) else [reports]  # the push is an array; one report alone is taken too
        for item in items:
            stage, detail = stage_of_voice_report(item.model_dump())
            await reported.report("voice", item.call_id, stage, deps.clock.now_ms(), detail)
        for report in keypress_answers([CallReport.of(r.model_dump()) for r in items]):
            receipt = await asyncio.to_thread(receipts.by_provider_ref, "voice", report.call_id)
            if receipt is None:
                log.warning("voice report for unknown call %s", report.call_id)
                continue
            if deps.alarm_service is None:
                log.error("voice keypress for %s: no alarm service in this process", receipt.alarm_id)
                continue
            try:
                await deps.alarm_service.move(receipt.alarm_id, Move.ACKNOWLEDGE, receipt.contact, note="语音通知按键确认（按1）")
            except (MoveRefused, NoSuchAlarm) as exc:  # already acknowledged or further along: nothing to do
                log.info("voice keypress for %s by %s changed nothing: %s", receipt.alarm_id, receipt.contact, exc)
                continue
            acknowledged += 1
        return VoiceReportAnswer(code=0, msg="成功", acknowledged=acknowledged)

    @router.post("/api/notify/sms-report/{secret}", summary="The SMS providers' status reports (Alibaba SmsReport, Tencent callback): delivered or failed",
                 responses={401: {"description": "the URL's secret does not match"}, 404: {"description": "provider reports are not configured here"}})
    async def sms_report(request: Request, secret: str, reports: list[dict[str, Any]]) -> Any:
        if token is None:
            return JSONResponse({"detail": _say(request, _NO_REPORTS)}, status_code=404)
        if not hmac.compare_digest(secret.encode(), token.encode()):
            return JSONResponse({"detail": _say(request, _BAD_REPORT_URL)}, status_code=401)
        recorded = 0
        for item in reports[:1000]:
            ref, (stage, detail) = (str(item.get("biz_id") or ""), stage_of_aliyun_sms(item)) if "biz_id" in item else \
                (str(item.get("sid") or ""), stage_of_tencent_sms(item))
            recorded += await reported.report("sms", ref[:200], stage, deps.clock.now_ms(), detail) is not None
        return {"code": 0, "msg": "接收成功", "result": 0, "errmsg": "OK", "recorded": recorded}

    return router
