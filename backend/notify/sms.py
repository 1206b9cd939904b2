"""SMS through the providers' own SDKs: Alibaba Cloud (dysmsapi 2017-05-25) and Tencent Cloud (sms 2021-01-11).

How this works: a Chinese SMS provider sends only texts it approved in advance (templates with parameters);
free text is refused. So a notice becomes a template kind (`page`, `drill`, `storm`) and its parameters
(`sms_params`): severity, title, place, a short action and the one-tap link shortened by the backend's own
short-link route (backend.notify.shortlinks: `<base>/s/<code>`). `fit_one_part` trims the title and the place so
the rendered text, the signature included, stays within one SMS part (70 characters for Chinese); the approved
template text in settings is what that length is measured on.

- Alibaba: `SendSms` with PhoneNumbers, SignName, TemplateCode, TemplateParam (JSON object of the named
  parameters) and OutId; the SDK signs the request (ACS3-HMAC-SHA256: dysmsapi 4.6.0 goes through
  `call_api` -> `do_request`, the V3 signature, unless `signature_algorithm="v2"` is configured).
- Tencent: `SendSms` with PhoneNumberSet (+86…), SmsSdkAppId, SignName, TemplateId, TemplateParamSet (the
  parameters in the template's order) and SessionContext; the SDK signs it (TC3-HMAC-SHA256).

The idempotency key (OutId / SessionContext) is derived from the message key and channel, so every retry of one
notice carries the same key; the short link is stored by the message key too, so a retry sends the same text.
The SDKs are synchronous: each call runs in a worker thread. Their exceptions are translated into
`DeliveryFailed` here: throttling, server errors and network failures are transient (the dispatcher retries),
refusals of the request itself (a bad number, a missing template, a wrong key) are permanent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from backend.notify.channel import DeliveryFailed, Message
from backend.notify.templates import SEVERITY_TEXT

__all__ = [
    "ACTION_SHORT", "SMS_PART_CHARS", "AliyunSmsChannel", "Shorten", "SmsTemplate", "TencentSmsChannel", "fit_one_part", "idempotency_key",
    "render", "sms_kind", "sms_params",
]

SMS_PART_CHARS = 70  # one part of a Chinese (UCS-2) SMS; longer texts are split into 67-character parts
ACTION_SHORT = {  # what the responder must do, short enough for one part (the full sentence is on the console)
    "page": "请立即处置", "repeat": "尚未确认请处置", "escalate": "已升级由您处置", "vacancy": "请代为处置", "declined": "请就近处置",
    "unverified": "按真实警情处置", "exhausted": "请电话调度", "reopened": "报警再次生效", "severity_raised": "险情升级请处置",
}
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
Shorten = Callable[[str, str], Awaitable[str]]  # (full link, message key) -> short link


@dataclass(frozen=True, slots=True)
class SmsTemplate:
    """An approved template: its code (Alibaba TemplateCode / Tencent TemplateId), its approved text with ${name}
    placeholders, and the order of the parameters (Tencent's TemplateParamSet is positional)."""

    code: str
    text: str
    params: tuple[str, ...]

    def __post_init__(self) -> None:
        named = tuple(_PLACEHOLDER.findall(self.text))
        if sorted(named) != sorted(self.params):
            raise ValueError(f"template {self.code}: the text names {named}, the parameters are {self.params}")


def idempotency_key(message: Message, channel: str) -> str:
    """OutId / SessionContext: the same for every retry of one notice on one channel; 32 hex characters."""
    return hashlib.sha256(f"{message.key}/{channel}".encode()).hexdigest()[:32]


def sms_kind(message: Message) -> str:
    if message.reason == "storm":
        return "storm"
    return "drill" if message.drill else "page"


def sms_params(message: Message, link: str | None) -> dict[str, str]:
    if message.reason == "storm":
        numbers = re.findall(r"\d+", message.text)
        return {"minutes": numbers[0] if numbers else "1", "count": numbers[1] if len(numbers) > 1 else "0"}
    return {"severity": SEVERITY_TEXT.get(message.severity, ""), "title": message.title or "报警", "place": message.place or "见值班台",
            "action": ACTION_SHORT.get(message.reason, ACTION_SHORT["page"]), "link": link or "见值班台"}


def render(template: SmsTemplate, params: Mapping[str, str], sign: str) -> str:
    """The SMS as the phone shows it: 【signature】 then the template with its parameters."""
    return f"【{sign}】" + _PLACEHOLDER.sub(lambda m: params.get(m.group(1), ""), template.text)


def fit_one_part(template: SmsTemplate, params: dict[str, str], sign: str) -> dict[str, str]:
    """Trim the place, then the title (each keeps at least 4 characters, the rest marked …) until the SMS is one part."""
    out = dict(params)
    for name in ("place", "title"):
        while len(render(template, out, sign)) > SMS_PART_CHARS and len(out.get(name, "")) > 4:
            out[name] = out[name][: len(out[name].rstrip("…")) - 1] + "…"
    return out


class _TemplatedSms:
    """What the two SMS providers share: the phone, the template, the parameters, the short link."""

    outside = True

    def __init__(self, sign_name: str, templates: Mapping[str, SmsTemplate], shorten: Shorten | None) -> None:
        self.sign_name = sign_name
        self.templates = dict(templates)
        self.shorten = shorten

    @property
    def kind(self) -> str:
        return "sms"

    async def prepare(self, message: Message) -> tuple[str, SmsTemplate, dict[str, str]]:
        if not message.contact.phone:
            raise DeliveryFailed("sms", f"{message.contact.id} has no phone number", transient=False)
        template = self.templates.get(sms_kind(message))
        if template is None:
            raise DeliveryFailed("sms", f"no approved SMS template for {sms_kind(message)!r} notices", transient=False)
        link = message.link
        if link and self.shorten is not None:
            link = await self.shorten(link, message.key)
        params = fit_one_part(template, sms_params(message, link), self.sign_name)
        return message.contact.phone, template, params


class AliyunSmsChannel(_TemplatedSms):
    """Alibaba Cloud SMS. `client` is an `alibabacloud_dysmsapi20170525.client.Client` (its Config names the
    endpoint and protocol: production `dysmsapi.aliyuncs.com` over HTTPS)."""

    def __init__(self, client: Any, sign_name: str, templates: Mapping[str, SmsTemplate], *, shorten: Shorten | None = None,
                 timeout_s: float = 5.0) -> None:
        super().__init__(sign_name, templates, shorten)
        self.client = client
        self.timeout_ms = round(timeout_s * 1000)

    async def send(self, message: Message) -> str | None:
        from alibabacloud_dysmsapi20170525 import models as sms_models
        from darabonba.runtime import RuntimeOptions

        phone, template, params = await self.prepare(message)
        request = sms_models.SendSmsRequest(
            phone_numbers=phone, sign_name=self.sign_name, template_code=template.code,
            template_param=json.dumps({k: params[k] for k in template.params}, ensure_ascii=False), out_id=idempotency_key(message, "sms"),
        )
        runtime = RuntimeOptions(autoretry=False, read_timeout=self.timeout_ms, connect_timeout=self.timeout_ms)
        body = await aliyun_call("sms", lambda: self.client.send_sms_with_options(request, runtime))
        return str(body.get("BizId") or body.get("RequestId") or "") or None


_ALIYUN_TRANSIENT_CODES = {"isv.BUSINESS_LIMIT_CONTROL", "isv.OUT_OF_SERVICE", "isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY_TEMPORARY",
                           "ServiceUnavailable", "InternalError", "Throttling", "Throttling.User", "Throttling.Api", "SignatureNonceUsed"}


async def aliyun_call(channel: str, call: Callable[[], Any]) -> dict[str, Any]:
    """Run one Alibaba Cloud SDK call in a thread; the body of an answer whose Code is OK, or DeliveryFailed."""
    from darabonba.exceptions import ResponseException

    try:
        response = await asyncio.to_thread(call)
    except ResponseException as exc:
        code = str(getattr(exc, "code", "") or "")
        status = getattr(exc, "status_code", None)
        transient = (isinstance(status, int) and (status >= 500 or status == 429)) or code in _ALIYUN_TRANSIENT_CODES or code.startswith("Throttling")
        raise DeliveryFailed(channel, f"Alibaba Cloud {status} {code}: {getattr(exc, 'message', exc)}", transient=transient,
                             status=status if isinstance(status, int) else None) from exc
    except Exception as exc:  # the SDK wraps network failures (UnretryableException, requests' errors): try again
        raise DeliveryFailed(channel, f"Alibaba Cloud unreachable: {exc.__class__.__name__}: {str(exc)[:200]}", transient=True) from exc
    body = response.body.to_map() if response.body is not None else {}
    code = str(body.get("Code", ""))
    if code != "OK":
        raise DeliveryFailed(channel, f"Alibaba Cloud {code}: {body.get('Message', '')}", transient=code in _ALIYUN_TRANSIENT_CODES)
    return dict(body)


_TENCENT_TRANSIENT_PREFIXES = ("InternalError", "RequestLimitExceeded", "LimitExceeded.PhoneNumberThirtySecondLimit",
                               "LimitExceeded.PhoneNumberOneHourLimit", "FailedOperation.InsufficientBalanceInSmsPackage",
                               "ServerNetworkError", "ClientNetworkError", "ResourceUnavailable")


def _tencent_transient(code: str) -> bool:
    return code.startswith(_TENCENT_TRANSIENT_PREFIXES)


class TencentSmsChannel(_TemplatedSms):
    """Tencent Cloud SMS. `client` is a `tencentcloud.sms.v20210111.sms_client.SmsClient` (its ClientProfile's
    HttpProfile names the endpoint: production `sms.tencentcloudapi.com` over HTTPS)."""

    def __init__(self, client: Any, sdk_app_id: str, sign_name: str, templates: Mapping[str, SmsTemplate], *,
                 shorten: Shorten | None = None, country_code: str = "+86") -> None:
        super().__init__(sign_name, templates, shorten)
        self.client = client
        self.sdk_app_id = sdk_app_id
        self.country_code = country_code

    async def send(self, message: Message) -> str | None:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.sms.v20210111 import models as sms_models

        phone, template, params = await self.prepare(message)
        request = sms_models.SendSmsRequest()
        request.PhoneNumberSet = [phone if phone.startswith("+") else f"{self.country_code}{phone}"]
        request.SmsSdkAppId = self.sdk_app_id
        request.SignName = self.sign_name
        request.TemplateId = template.code
        request.TemplateParamSet = [params[k] for k in template.params]
        request.SessionContext = idempotency_key(message, "sms")
        try:
            response = await asyncio.to_thread(self.client.SendSms, request)
        except TencentCloudSDKException as exc:
            code = str(exc.get_code() or "")
            raise DeliveryFailed("sms", f"Tencent Cloud {code}: {exc.get_message()}", transient=_tencent_transient(code)) from exc
        except Exception as exc:  # a network failure outside the SDK's own wrapping
            raise DeliveryFailed("sms", f"Tencent Cloud unreachable: {exc.__class__.__name__}", transient=True) from exc
        statuses = response.SendStatusSet or []
        if not statuses:
            raise DeliveryFailed("sms", "Tencent Cloud answered without a send status", transient=True)
        status = statuses[0]
        if str(status.Code).lower() != "ok":
            code = str(status.Code)
            raise DeliveryFailed("sms", f"Tencent Cloud {code}: {status.Message}", transient=_tencent_transient(code))
        return str(status.SerialNo or response.RequestId or "") or None
