"""Webhook channels: SMS and voice gateways, WeCom (企业微信) and DingTalk (钉钉) group robots, over httpx.

How this works: one POST per attempt, JSON in the shape the gateway expects, with the message's idempotency
key in the `Idempotency-Key` header (and in the body for gateways that read only the body), so a gateway that
processed a request whose answer was lost sees the retry as the same message. 2xx is delivered; 408, 429,
5xx, timeouts and connection errors are transient (the dispatcher retries with back-off); any other 4xx is
permanent. httpx's exceptions are translated into `DeliveryFailed` here and never leak inward.
"""

from __future__ import annotations

from typing import Any

import httpx

from backend.notify.channel import DeliveryFailed, Message
from backend.notify.templates import without_link

__all__ = ["WEBHOOK_KINDS", "WebhookChannel", "webhook_body"]

WEBHOOK_KINDS = ("sms", "voice", "wecom", "dingtalk")
_TRANSIENT_STATUS = {408, 425, 429}
# WeCom/DingTalk errcodes that say "later": system busy (-1), DingTalk's 130001, and the robots' rate limits (WeCom 45009 api
# freq out of limit; DingTalk 130101/130102 send too fast): retried with back-off, never final (issue 18)
_ROBOT_RETRY_ERRCODES = {-1, 130001, 45009, 130101, 130102}


def webhook_body(kind: str, message: Message) -> dict[str, Any]:
    phone = message.contact.phone
    if kind == "sms":
        return {"to": phone, "text": message.text, "key": message.key, "drill": message.drill}
    if kind == "voice":
        # text to speech; the link means nothing on a call, so it is left out
        return {"to": phone, "tts": without_link(message.text), "repeat": 2, "key": message.key, "drill": message.drill}
    # A group robot's post is read by the whole group: the one-tap link belongs to the person paged (issue 22), so it
    # goes by SMS only and never into a group.
    if kind == "wecom":
        return {"msgtype": "text", "text": {"content": without_link(message.text), "mentioned_mobile_list": [phone] if phone else []}}
    if kind == "dingtalk":
        return {"msgtype": "text", "text": {"content": without_link(message.text)}, "at": {"atMobiles": [phone] if phone else [], "isAtAll": False}}
    raise ValueError(f"unknown webhook kind {kind!r}; use one of {WEBHOOK_KINDS}")


class WebhookChannel:
    outside = True

    def __init__(self, kind: str, url: str, client: httpx.AsyncClient, *, headers: dict[str, str] | None = None) -> None:
        if kind not in WEBHOOK_KINDS:
            raise ValueError(f"unknown webhook kind {kind!r}; use one of {WEBHOOK_KINDS}")
        self._kind = kind
        self.url = url
        self.client = client
        self.headers = headers or {}

    @property
    def kind(self) -> str:
        return self._kind

    async def send(self, message: Message) -> str | None:
        if self._kind in ("sms", "voice") and not message.contact.phone:
            raise DeliveryFailed(self._kind, f"{message.contact.id} has no phone number", transient=False)
        headers = {**self.headers, "Idempotency-Key": f"{message.key}/{self._kind}"}
        try:
            resp = await self.client.post(self.url, json=webhook_body(self._kind, message), headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(self._kind, f"timed out: {exc.__class__.__name__}", transient=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(self._kind, f"{exc.__class__.__name__}: {exc}", transient=True) from exc
        if resp.is_success:
            ref: str | None = resp.headers.get("x-request-id")
            try:
                data = resp.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                # WeCom and DingTalk answer 200 with errcode != 0 on failure
                errcode = data.get("errcode", 0)
                if errcode not in (0, None):
                    errmsg = str(data.get("errmsg", ""))
                    raise DeliveryFailed(self._kind, f"errcode {errcode}: {errmsg}", transient=errcode in _ROBOT_RETRY_ERRCODES or "too fast" in errmsg)
                ref = str(data.get("id") or data.get("msgid") or data.get("ref") or ref or "") or None
            return ref
        transient = resp.status_code >= 500 or resp.status_code in _TRANSIENT_STATUS
        raise DeliveryFailed(self._kind, f"HTTP {resp.status_code}: {resp.text[:200]}", transient=transient, status=resp.status_code)
