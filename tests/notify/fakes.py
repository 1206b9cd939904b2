"""Local fakes of the providers' documented HTTP protocols, each on a free loopback port.

Each fake checks what the real platform checks (signatures, keys, idempotency keys, rate limits) and answers in
the platform's documented shapes, errors and throttling included. They are fakes of the documented protocol,
not the real clouds: a test passing here says the client speaks the protocol as documented.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from broker.clock import VirtualClock

Handler = Callable[["Request"], tuple[int, dict[str, str], bytes]]
T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def args(self) -> dict[str, str]:
        return dict(self.query)


def json_answer(data: Any, status: int = 200, content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": content_type}, json.dumps(data, ensure_ascii=False).encode()


@contextmanager
def serve(handle: Handler) -> Iterator[str]:
    """Serve `handle` on 127.0.0.1:<free port>; yields "127.0.0.1:<port>"."""

    class _H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            req = Request(self.command, parts.path, urllib.parse.parse_qsl(parts.query, keep_blank_values=True),
                          {k.lower(): v for k, v in self.headers.items()}, body)
            status, headers, payload = handle(req)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._any()

        def do_POST(self) -> None:
            self._any()

        def log_message(self, format: str, *args: object) -> None:
            return

    class _Server(ThreadingHTTPServer):
        request_queue_size = 128  # a fire station's posts arrive together; the default backlog of 5 refuses some

    server = _Server(("127.0.0.1", 0), _H)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="provider-fake")
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- group robots ------------------------------------------------------------------------------------------------


@dataclass
class FakeRobots:
    """WeCom (`/cgi-bin/webhook/send?key=`) or DingTalk (`/robot/send?access_token=[&timestamp&sign]`) robots.

    20 posts a minute per robot; more is refused with the platform's rate-limit errcode (WeCom 45009; DingTalk
    130101, which then refuses everything for 10 minutes). `now_ms` is the test's virtual clock."""

    kind: str
    now_ms: Callable[[], int]
    keys: dict[str, str | None]  # key or access token -> DingTalk secret (signed mode) or None
    limit: int = 20
    fail_next: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (HTTP status, body) answered before the real work
    posts: list[dict[str, Any]] = field(default_factory=list)  # accepted posts, with "robot" added
    refusals: list[dict[str, Any]] = field(default_factory=list)
    _sent: dict[str, list[int]] = field(default_factory=dict)
    _punished_until: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if self.fail_next:
                status, body = self.fail_next.pop(0)
                return json_answer(body, status)
            now = self.now_ms()
            if self.kind == "wecom":
                key = req.args.get("key", "")
                if req.path != "/cgi-bin/webhook/send" or key not in self.keys:
                    return self._refuse({"errcode": 93000, "errmsg": "invalid webhook url"})
            else:
                key = req.args.get("access_token", "")
                if req.path != "/robot/send" or key not in self.keys:
                    return self._refuse({"errcode": 300001, "errmsg": "token is not exist"})
                secret = self.keys[key]
                if secret is not None:
                    ts = req.args.get("timestamp", "")
                    expected = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()).decode()
                    # parse_qsl has already URL-decoded the sign once, as DingTalk does
                    if not ts.isdigit() or abs(int(ts) - now) > 3600_000:
                        return self._refuse({"errcode": 310000, "errmsg": "timestamp expired"})
                    if not hmac.compare_digest(req.args.get("sign", ""), expected):
                        return self._refuse({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"})
                if self._punished_until.get(key, 0) > now:
                    return self._refuse({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
            sent = [t for t in self._sent.get(key, []) if t > now - 60_000]
            if len(sent) >= self.limit:
                if self.kind == "wecom":
                    return self._refuse({"errcode": 45009, "errmsg": "api freq out of limit"})
                self._punished_until[key] = now + 600_000
                return self._refuse({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
            body = json.loads(req.body)
            self._sent[key] = [*sent, now]
            self.posts.append({**body, "robot": key, "at_ms": now})
            return json_answer({"errcode": 0, "errmsg": "ok"})

    def _refuse(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        self.refusals.append(body)
        return json_answer(body)

    def notified(self, post: dict[str, Any]) -> list[str]:
        """Who a post really reaches with an @: WeCom's mentioned mobiles; DingTalk's atMobiles that are also in the text."""
        if self.kind == "wecom":
            return list(post["text"].get("mentioned_mobile_list", []))
        return [m for m in post.get("at", {}).get("atMobiles", []) if f"@{m}" in post["text"]["content"]]


# -- Alibaba Cloud (RPC APIs, V3 signature ACS3-HMAC-SHA256) -------------------------------------------------------------


def acs3_signature_ok(req: Request, secrets_by_key: dict[str, str]) -> str | None:
    """Check an Alibaba Cloud V3 signature (ACS3-HMAC-SHA256) as the gateway does; None if good, else the error Code."""
    auth = req.headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        return "IncompleteSignature"
    fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    secret = secrets_by_key.get(fields.get("Credential", ""))
    if secret is None:
        return "InvalidAccessKeyId.NotFound"
    payload_hash = req.headers.get("x-acs-content-sha256", "")
    if payload_hash != hashlib.sha256(req.body).hexdigest():
        return "SignatureDoesNotMatch"
    signed = fields.get("SignedHeaders", "").split(";")
    if not {"host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"} <= set(signed):
        return "IncompleteSignature"
    query = "&".join(f"{k}={urllib.parse.quote(v, safe='~')}" for k, v in sorted(req.query))
    headers = "".join(f"{h}:{req.headers.get(h, '').strip()}\n" for h in signed)
    canonical = f"{req.method}\n{req.path or '/'}\n{query}\n{headers}\n{';'.join(signed)}\n{payload_hash}"
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(fields.get("Signature", ""), expected) else "SignatureDoesNotMatch"


@dataclass
class FakeAliyun:
    """dysmsapi (SendSms) and dyvmsapi (SingleCallByTts) as documented: the V3 signature checked, OutId treated as an
    idempotency key (a repeat answers the first BizId/CallId and is not sent again), the documented error shapes."""

    access_keys: dict[str, str]  # AccessKey id -> secret
    templates: dict[str, tuple[str, ...]]  # TemplateCode / TtsCode -> its parameter names
    signs: set[str] = field(default_factory=lambda: {"守望"})
    fail_next: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lose_answer_next: int = 0  # accept the next requests, then answer 500 as if the answer were lost on the way
    sent: dict[str, dict[str, str]] = field(default_factory=dict)  # OutId -> the accepted request's parameters
    requests: list[dict[str, str]] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            request_id = f"REQ-{len(self.requests) + 1:04d}"
            params = {**req.args, **dict(urllib.parse.parse_qsl(req.body.decode()))} if req.body else req.args
            self.requests.append({"action": req.headers.get("x-acs-action", ""), **params})
            bad = acs3_signature_ok(req, self.access_keys)
            if bad is not None:
                status = 404 if bad == "InvalidAccessKeyId.NotFound" else 400
                return json_answer({"RequestId": request_id, "Code": bad, "Message": "Specified signature is not matched with our calculation.",
                                    "HostId": "dysmsapi.aliyuncs.com"}, status)
            nonce = req.headers.get("x-acs-signature-nonce", "")
            if nonce in self.nonces:
                return json_answer({"RequestId": request_id, "Code": "SignatureNonceUsed", "Message": "Specified signature nonce was used already."}, 400)
            self.nonces.add(nonce)
            if self.fail_next:
                status, body = self.fail_next.pop(0)
                return json_answer({"RequestId": request_id, **body}, status)
            action = req.headers.get("x-acs-action")
            if action == "SendSms":
                answer = self._sms(params, request_id)
            elif action == "SingleCallByTts":
                answer = self._call(params, request_id)
            else:
                return json_answer({"RequestId": request_id, "Code": "InvalidAction.NotFound", "Message": f"{action} not found"}, 404)
            if self.lose_answer_next and answer.get("Code") == "OK":
                self.lose_answer_next -= 1
                return json_answer({"RequestId": request_id, "Code": "ServiceUnavailable", "Message": "The request has failed due to a "
                                    "temporary failure of the server."}, 503)
            return json_answer(answer)

    def _sms(self, p: dict[str, str], request_id: str) -> dict[str, Any]:
        if p.get("SignName") not in self.signs:
            return {"RequestId": request_id, "Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "该账号下找不到对应签名"}
        names = self.templates.get(p.get("TemplateCode", ""))
        if names is None:
            return {"RequestId": request_id, "Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "该账号下找不到对应模板"}
        try:
            values = json.loads(p.get("TemplateParam", "{}"))
        except ValueError:
            return {"RequestId": request_id, "Code": "isv.INVALID_JSON_PARAM", "Message": "JSON参数不合法，只接受字符串值"}
        if not isinstance(values, dict) or set(values) != set(names) or not all(isinstance(v, str) for v in values.values()):
            return {"RequestId": request_id, "Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": "模板变量缺少对应参数值"}
        if not p.get("PhoneNumbers", "").isdigit():
            return {"RequestId": request_id, "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}
        out_id = p.get("OutId", "")
        if out_id in self.sent:
            return {"RequestId": request_id, "Code": "OK", "Message": "OK", "BizId": self.sent[out_id]["BizId"]}
        self.sent[out_id] = {**p, "BizId": f"{900619746936498 + len(self.sent)}^0"}
        return {"RequestId": request_id, "Code": "OK", "Message": "OK", "BizId": self.sent[out_id]["BizId"]}

    def _call(self, p: dict[str, str], request_id: str) -> dict[str, Any]:
        names = self.templates.get(p.get("TtsCode", ""))
        if names is None:
            return {"RequestId": request_id, "Code": "isv.TTS_TEMPLATE_ILLEGAL", "Message": "TTS模板不存在"}
        values = json.loads(p.get("TtsParam", "{}") or "{}")
        if set(values) != set(names):
            return {"RequestId": request_id, "Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": "模板变量缺少对应参数值"}
        if not p.get("CalledNumber", "").isdigit():
            return {"RequestId": request_id, "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}
        out_id = p.get("OutId", "")
        if out_id in self.sent:
            return {"RequestId": request_id, "Code": "OK", "Message": "OK", "CallId": self.sent[out_id]["CallId"]}
        self.sent[out_id] = {**p, "CallId": f"11601235{len(self.sent):04d}^10281378{len(self.sent):04d}"}
        return {"RequestId": request_id, "Code": "OK", "Message": "OK", "CallId": self.sent[out_id]["CallId"]}


# -- Tencent Cloud (API 3.0, TC3-HMAC-SHA256) ---------------------------------------------------------------------------


def tc3_signature_ok(req: Request, secrets_by_id: dict[str, str], service: str, now_s: float) -> str | None:
    """Check a TC3-HMAC-SHA256 signature as Tencent Cloud API 3.0 does; None if good, else the error Code."""
    auth = req.headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "TC3-HMAC-SHA256":
        return "AuthFailure.InvalidAuthorization"
    fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
    secret_id, date, svc, terminator = ([*fields.get("Credential", "").split("/"), "", "", "", ""])[:4]
    secret = secrets_by_id.get(secret_id)
    if secret is None:
        return "AuthFailure.SecretIdNotFound"
    timestamp = req.headers.get("x-tc-timestamp", "")
    if not timestamp.isdigit() or abs(int(timestamp) - now_s) > 300:
        return "AuthFailure.SignatureExpire"
    if svc != service or terminator != "tc3_request":
        return "AuthFailure.SignatureFailure"
    signed = fields.get("SignedHeaders", "")
    headers = "".join(f"{h}:{req.headers.get(h, '').strip().lower()}\n" for h in signed.split(";"))
    query = "&".join(f"{k}={urllib.parse.quote(v, safe='~')}" for k, v in req.query)
    canonical = f"{req.method}\n{req.path}\n{query}\n{headers}\n{signed}\n{hashlib.sha256(req.body).hexdigest()}"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{svc}/tc3_request\n{hashlib.sha256(canonical.encode()).hexdigest()}"

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing = mac(mac(mac(f"TC3{secret}".encode(), date), svc), "tc3_request")
    expected = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(fields.get("Signature", ""), expected) else "AuthFailure.SignatureFailure"


@dataclass
class FakeTencentSms:
    """sms.tencentcloudapi.com, SendSms of API version 2021-01-11: TC3 checked against the wall clock the SDK signs with,
    SessionContext treated as an idempotency key, the documented error shapes (`Response.Error`) and per-number status."""

    secrets: dict[str, str]  # SecretId -> SecretKey
    app_id: str
    templates: dict[str, int]  # TemplateId -> number of parameters
    now_s: Callable[[], float]
    signs: set[str] = field(default_factory=lambda: {"守望"})
    fail_next: list[dict[str, Any]] = field(default_factory=list)  # Response bodies answered before the real work
    lose_answer_next: int = 0
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # SessionContext -> accepted request
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            request_id = f"tc-{len(self.requests) + 1:04d}"
            body = json.loads(req.body or b"{}")
            self.requests.append(body)

            def error(code: str, message: str) -> tuple[int, dict[str, str], bytes]:
                return json_answer({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}})

            bad = tc3_signature_ok(req, self.secrets, "sms", self.now_s())
            if bad is not None:
                return error(bad, "The provided credentials could not be validated. Please check your signature is correct.")
            if req.headers.get("x-tc-action") != "SendSms" or req.headers.get("x-tc-version") != "2021-01-11":
                return error("InvalidAction", "The requested action does not exist.")
            if self.fail_next:
                answer = self.fail_next.pop(0)
                return json_answer({"Response": {**answer, "RequestId": request_id}})
            if body.get("SmsSdkAppId") != self.app_id:
                return error("FailedOperation.SmsSdkAppIdVerifyFail", "SdkAppId校验失败")
            if body.get("SignName") not in self.signs:
                return error("FailedOperation.SignatureIncorrectOrUnapproved", "签名未审批或格式错误")
            n = self.templates.get(str(body.get("TemplateId")))
            params = body.get("TemplateParamSet") or []
            if n is None:
                return error("FailedOperation.TemplateIncorrectOrUnapproved", "模板未审批或内容不匹配")
            if len(params) != n or not all(isinstance(p, str) for p in params):
                return error("InvalidParameterValue.TemplateParameterFormatError", "验证码模板参数格式错误")
            statuses = []
            for phone in body.get("PhoneNumberSet", []):
                if not (phone.startswith("+86") and phone[3:].isdigit()):
                    statuses.append({"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": body.get("SessionContext", ""),
                                     "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "手机号格式错误", "IsoCode": ""})
                    continue
                ctx = body.get("SessionContext", "")
                if ctx not in self.sent:
                    self.sent[ctx] = {**body, "SerialNo": f"2645:{len(self.sent) + 1:06d}"}
                statuses.append({"SerialNo": self.sent[ctx]["SerialNo"], "PhoneNumber": phone, "Fee": 1, "SessionContext": ctx, "Code": "Ok",
                                 "Message": "send success", "IsoCode": "CN"})
            if self.lose_answer_next:
                self.lose_answer_next -= 1
                return error("InternalError.Timeout", "请求下发短信超时")
            return json_answer({"Response": {"SendStatusSet": statuses, "RequestId": request_id}})


async def finish(clock: VirtualClock, tasks: list[asyncio.Task[T]], step_s: float = 1.0) -> list[T]:
    """Run virtual time forward until every task is done, letting real HTTP answers (and SDK threads) arrive in between."""
    for _ in range(5000):
        if all(t.done() for t in tasks):
            return [t.result() for t in tasks]
        await asyncio.wait(tasks, timeout=0.005)
        await clock.run_for(step_s)
    raise AssertionError("never finished")
