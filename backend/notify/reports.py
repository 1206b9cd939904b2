"""The providers' later word on a notice: a call answered or not, an SMS on the phone or not.

How this works: a provider pushes its reports to the backend (backend.api.notify_links); each names the notice by
the reference the provider gave when it took it (the receipt's `provider_ref`: a voice call's CallId, an SMS's
BizId or SerialNo). `stage_of_*` read one report into a stage and a reason; `ReceiptReports.report` stores the
change on the receipt (backend.notify.receipts: only news is kept) and publishes it on the centre's stream as a
`ReceiptRecorded`, so the console's open alarm shows it and a person no channel reached raises `notice_failed`
(backend.notify.failures).

    report                                           stage       reason / detail
    Alibaba VoiceReport, picked up (status_code      answered    "pressed 1" when the first key pressed is 1
    200000, or a duration, or keys pressed)
    Alibaba VoiceReport, anything else               failed      the report's status_msg (未接听, 关机, ...)
    Alibaba SmsReport success true / false           delivered / failed   err_code err_msg
    Tencent SMS status callback SUCCESS / FAIL       delivered / failed   errmsg description
    the one-tap link the notice carried, opened      read        "opened the one-tap link" (`opened`)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from backend.notify.receipts import ReceiptStage, ReceiptStore, StageChange
from backend.notify.voice import ACCEPT_KEY
from backend.stream import CentreStream

__all__ = ["ACCEPTED_BY_KEY", "ReceiptReports", "stage_of_aliyun_sms", "stage_of_tencent_sms", "stage_of_voice_report"]

ACCEPTED_BY_KEY: Final = "pressed 1"  # an answered call's detail when the person pressed the accept key
_ANSWERED: Final = "200000"  # Alibaba voice: 用户听完挂断 (the call was picked up and heard to the end)


def _duration(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def stage_of_voice_report(item: Mapping[str, Any]) -> tuple[ReceiptStage, str]:
    dtmf = str(item.get("dtmf") or "")
    code = str(item.get("status_code") or "")
    if code == _ANSWERED or dtmf or _duration(item.get("duration")) > 0:
        return ReceiptStage.ANSWERED, ACCEPTED_BY_KEY if dtmf[:1] == ACCEPT_KEY else ""
    return ReceiptStage.FAILED, str(item.get("status_msg") or "") or f"未接通（{code or '无状态码'}）"


def stage_of_aliyun_sms(item: Mapping[str, Any]) -> tuple[ReceiptStage, str]:
    why = " ".join(str(item.get(k) or "") for k in ("err_code", "err_msg")).strip()
    ok = item.get("success") in (True, "true", "True", 1)
    return (ReceiptStage.DELIVERED, "") if ok else (ReceiptStage.FAILED, why or "未送达")


def stage_of_tencent_sms(item: Mapping[str, Any]) -> tuple[ReceiptStage, str]:
    why = " ".join(str(item.get(k) or "") for k in ("errmsg", "description")).strip()
    ok = str(item.get("report_status") or "").upper() == "SUCCESS"
    return (ReceiptStage.DELIVERED, "") if ok else (ReceiptStage.FAILED, why or "未送达")


class ReceiptReports:
    def __init__(self, receipts: ReceiptStore, stream: CentreStream | None) -> None:
        self.receipts = receipts
        self.stream = stream

    async def report(self, channel: str, ref: str, stage: ReceiptStage, at_ms: int, detail: str = "") -> StageChange | None:
        """Record a provider's report on the notice it knows by `ref` and tell the stream; None: unknown notice, or no news."""
        if not ref:
            return None
        change = await asyncio.to_thread(self.receipts.report, channel, ref, stage, at_ms, detail)
        if change is not None and self.stream is not None:
            await self.stream.publish([change.event()])
        return change

    async def opened(self, alarm_id: str, contact: str, at_ms: int) -> StageChange | None:
        """The person opened the one-tap link of their notice about `alarm_id` (the responder's page): it was read."""
        change = await asyncio.to_thread(self.receipts.opened, alarm_id, contact, at_ms)
        if change is not None and self.stream is not None:
            await self.stream.publish([change.event()])
        return change
