"""Local fakes of the providers' documented HTTP protocols, each on a free loopback port.

Each fake checks what the real platform checks (signatures, keys, idempotency keys, rate limits) and answers in
the platform's documented shapes, errors and throttling included. They are fakes of the documented protocol,
not the real clouds: a test passing here says the client speaks the protocol as documented.
"""

from __future__ import annotations

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
from typing import Any

Handler = Callable[["Request"], tuple[int, dict[str, str], bytes]]


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
