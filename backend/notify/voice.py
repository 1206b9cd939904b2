"""Voice calls through Alibaba Cloud's voice notification (dyvmsapi 2017-05-25), and their keypress receipts.

How this works: `AliyunVoiceChannel.send` places one `SingleCallByTts` call: CalledNumber, CalledShowNumber
(the number shown, one the account owns), TtsCode (an approved text-to-speech template that ends in "确认收到请按1"),
TtsParam (its parameters as JSON: severity, title, place, action; never a link: nobody can tap a call) and
OutId (derived from the message key and channel, so a retry of one notice carries the same OutId). The answer's
CallId is the receipt's reference.

When the call ends, the platform posts its call report (VoiceReport, pushed over HTTP as a JSON array) to the
backend's receipt route (backend.api.voice_reports). `keypress_answers(reports)` picks the calls where the person
pressed 1; the route looks each call up by its CallId among the voice receipts, and asks the alarm service for
the ACKNOWLEDGE move on that person's behalf (the alarm service is the only writer of alarm state).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backend.notify.channel import DeliveryFailed, Message
from backend.notify.sms import ACTION_SHORT, aliyun_call, idempotency_key
from backend.notify.templates import SEVERITY_TEXT

__all__ = ["ACCEPT_KEY", "AliyunVoiceChannel", "CallReport", "keypress_answers", "tts_params"]

ACCEPT_KEY = "1"  # "press 1 to accept" (确认收到请按1)


def tts_params(message: Message) -> dict[str, str]:
    return {"severity": SEVERITY_TEXT.get(message.severity, ""), "title": message.title or "报警", "place": message.place or "请查看短信",
            "action": ACTION_SHORT.get(message.reason, ACTION_SHORT["page"])}


class AliyunVoiceChannel:
    """kind "voice". `client` is an `alibabacloud_dyvmsapi20170525.client.Client` (Config: production endpoint
    `dyvmsapi.aliyuncs.com` over HTTPS)."""

    outside = True

    def __init__(self, client: Any, tts_code: str, show_number: str, *, play_times: int = 2, timeout_s: float = 5.0,
                 drill_tts_code: str | None = None) -> None:
        self.client = client
        self.tts_code = tts_code
        self.drill_tts_code = drill_tts_code
        self.show_number = show_number
        self.play_times = play_times
        self.timeout_ms = round(timeout_s * 1000)

    @property
    def kind(self) -> str:
        return "voice"

    async def send(self, message: Message) -> str | None:
        from alibabacloud_dyvmsapi20170525 import models as vms_models
        from darabonba.runtime import RuntimeOptions

        if not message.contact.phone:
            raise DeliveryFailed("voice", f"{message.contact.id} has no phone number", transient=False)
        if message.reason == "storm":
            raise DeliveryFailed("voice", "a storm summary is not read out by phone (it is on the console and by SMS)", transient=False)
        code = self.drill_tts_code if message.drill else self.tts_code
        if not code:
            raise DeliveryFailed("voice", "no approved TTS template for drill calls", transient=False)
        request = vms_models.SingleCallByTtsRequest(
            called_number=message.contact.phone, called_show_number=self.show_number, tts_code=code,
            tts_param=json.dumps(tts_params(message), ensure_ascii=False), play_times=self.play_times, out_id=idempotency_key(message, "voice"),
        )
        runtime = RuntimeOptions(autoretry=False, read_timeout=self.timeout_ms, connect_timeout=self.timeout_ms)
        body = await aliyun_call("voice", lambda: self.client.single_call_by_tts_with_options(request, runtime))
        return str(body.get("CallId") or body.get("RequestId") or "") or None


@dataclass(frozen=True, slots=True)
class CallReport:
    """One call report of the platform's VoiceReport push: who was called, how it ended, which keys were pressed."""

    call_id: str
    out_id: str
    status_code: str
    dtmf: str
    callee: str

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> CallReport:
        return cls(call_id=str(item.get("call_id") or ""), out_id=str(item.get("out_id") or ""), status_code=str(item.get("status_code") or ""),
                   dtmf=str(item.get("dtmf") or ""), callee=str(item.get("callee") or ""))


def keypress_answers(reports: list[CallReport]) -> list[CallReport]:
    """The answered calls where the person pressed the accept key (the first key counts)."""
    return [r for r in reports if r.call_id and r.dtmf[:1] == ACCEPT_KEY]
