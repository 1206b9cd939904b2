"""Webhook channels against a real local HTTP receiver; retries on a virtual sleeper; receipts recorded."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerting.ladder import Contact
from backend.notify import DeliveryStatus, Dispatcher, Message, Receipt, ReceiptStore, WebhookChannel
from backend.store.db import make_engine, sqlite_url
from backend.stream import CentreStream
from broker.clock import VirtualClock
from tests.notify.fakes import FakeRobots, serve


@dataclass
class Gateway:
    """Fails the first `fail` requests with `status`, then accepts; de-duplicates by Idempotency-Key."""

    fail: int = 0
    status: int = 500
    process_before_failing: bool = False  # the answer is lost after the message was taken
    attempts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, key: str, body: dict[str, Any]) -> tuple[int, bytes]:
        with self.lock:
            self.attempts.append((key, body))
            failing = len(self.attempts) <= self.fail
            if failing and not self.process_before_failing:
                return self.status, b'{"error": "try later"}'
            self.accepted.setdefault(key, body)  # a repeat of an accepted key is not a second message
            return (self.status, b"{}") if failing else (200, json.dumps({"id": f"gw-{len(self.accepted)}"}).encode())


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    gw = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            code, payload = gw.handle(self.headers.get("Idempotency-Key", ""), body)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="gateway")
    thread.start()
    yield gw, f"http://127.0.0.1:{server.server_address[1]}/send"
    server.shutdown()
    server.server_close()
    thread.join(5)


def message(key: str = "A1/1/c01-g1-w1", *, drill: bool = False, outside: bool = True) -> Message:
    return Message(key=key, alarm_id="A1", contact=Contact("c01-g1-w1", "杨敏", phone="13986665755"), channels=("sms",),
                   text="【守望】紧急烟感报警，1号楼。网格员：请立即处置。", title="烟感报警", drill=drill, outside_allowed=outside)


@dataclass
class Rig:
    dispatcher: Dispatcher
    store: ReceiptStore
    sleeps: list[float]
    http: httpx.AsyncClient


async def rig(tmp_path: Path, url: str, kind: str = "sms") -> Rig:
    clock = VirtualClock()
    store = ReceiptStore(make_engine(sqlite_url(tmp_path / "receipts.db")))
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)
        clock.advance(s)

    async def record(r: Receipt) -> None:
        store.record(r)

    http = httpx.AsyncClient(timeout=5)
    d = Dispatcher({kind: WebhookChannel(kind, url, http)}, CentreStream(), clock, sleep=sleep, record=record)
    return Rig(d, store, sleeps, http)


async def test_fails_three_times_then_succeeds_delivers_once_with_receipt(tmp_path: Path, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    gw.fail = 3
    r = await rig(tmp_path, url)
    try:
        receipts = await r.dispatcher.deliver(message())
    finally:
        await r.http.aclose()
    assert [k for k, _ in gw.attempts] == ["A1/1/c01-g1-w1/sms"] * 4  # one idempotency key through every retry
    assert list(gw.accepted) == ["A1/1/c01-g1-w1/sms"]  # the gateway got the message once
    assert gw.accepted["A1/1/c01-g1-w1/sms"]["to"] == "13986665755"
    assert r.sleeps == [0.5, 1.0, 2.0]  # exponential back-off, on the virtual sleeper
    sms = next(x for x in receipts if x.channel == "sms")
    assert (sms.status, sms.attempts, sms.provider_ref) == (DeliveryStatus.DELIVERED, 4, "gw-1")
    stored = {x.channel: x for x in r.store.for_alarm("A1")}
    assert stored["sms"].status is DeliveryStatus.DELIVERED
    assert stored["sms"].attempts == 4
    assert stored["console"].status is DeliveryStatus.DELIVERED


async def test_lost_answers_are_deduplicated_by_the_key(tmp_path: Path, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    gw.fail, gw.process_before_failing = 2, True  # took it, but the 500 made us retry
    r = await rig(tmp_path, url)
    try:
        receipts = await r.dispatcher.deliver(message())
    finally:
        await r.http.aclose()
    assert len(gw.attempts) == 3
    assert len(gw.accepted) == 1
    assert next(x for x in receipts if x.channel == "sms").status is DeliveryStatus.DELIVERED


async def test_permanent_error_is_not_retried(tmp_path: Path, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    gw.fail, gw.status = 10, 400
    r = await rig(tmp_path, url)
    try:
        receipts = await r.dispatcher.deliver(message())
    finally:
        await r.http.aclose()
    sms = next(x for x in receipts if x.channel == "sms")
    assert sms.status is DeliveryStatus.FAILED
    assert sms.attempts == 1
    assert "HTTP 400" in (sms.error or "")
    assert r.sleeps == []


async def test_gives_up_after_the_configured_attempts(tmp_path: Path, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    gw.fail = 100
    r = await rig(tmp_path, url)
    try:
        receipts = await r.dispatcher.deliver(message())
    finally:
        await r.http.aclose()
    assert len(gw.attempts) == 6
    assert next(x for x in receipts if x.channel == "sms").status is DeliveryStatus.FAILED
    assert r.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]


async def test_drill_without_permission_never_reaches_the_gateway(tmp_path: Path, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    r = await rig(tmp_path, url)
    try:
        receipts = await r.dispatcher.deliver(message(drill=True, outside=False))
        real = await r.dispatcher.deliver(message("R1/1/c01-g1-w1"))
    finally:
        await r.http.aclose()
    assert next(x for x in receipts if x.channel == "sms").status is DeliveryStatus.WITHHELD_DRILL
    assert next(x for x in real if x.channel == "sms").status is DeliveryStatus.DELIVERED
    assert [k for k, _ in gw.attempts] == ["R1/1/c01-g1-w1/sms"]


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "voice"])
async def test_gateway_body_shapes(tmp_path: Path, gateway: tuple[Gateway, str], kind: str) -> None:
    gw, url = gateway
    r = await rig(tmp_path, url, kind)
    try:
        await r.dispatcher.deliver(dataclasses.replace(message(), channels=(kind,), text="【守望】紧急烟感报警，1号楼。请立即处置。回复链接：https://x/r/t"))
    finally:
        await r.http.aclose()
    body = gw.accepted[f"A1/1/c01-g1-w1/{kind}"]
    if kind in ("wecom", "dingtalk"):
        assert body["msgtype"] == "text"
        assert body["text"]["content"].startswith("【守望】")
        assert "https://x/r/t" not in body["text"]["content"], "a group robot's post is read by the whole group: no one-tap link in it"
    else:
        assert body["to"] == "13986665755"
        assert "回复链接" not in body["tts"]  # a link means nothing on a phone call


@pytest.mark.parametrize(("kind", "answer"), [
    ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}),
    ("dingtalk", {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
])
async def test_a_robots_rate_limit_answer_is_retried_not_final(tmp_path: Path, kind: str, answer: dict[str, Any]) -> None:
    """The generic webhook to one robot (issue 18: the platforms' rate-limit errcodes were taken as final)."""
    clock = VirtualClock()
    path, query = ("/cgi-bin/webhook/send", "key=k1") if kind == "wecom" else ("/robot/send", "access_token=k1")
    fake = FakeRobots(kind, clock.now_ms, {"k1": None}, fail_next=[(200, answer)])
    with serve(fake.handle) as host:
        r = await rig(tmp_path, f"http://{host}{path}?{query}", kind)
        try:
            receipts = await r.dispatcher.deliver(dataclasses.replace(message(), channels=(kind,)))
        finally:
            await r.http.aclose()
    sent = next(x for x in receipts if x.channel == kind)
    assert sent.status is DeliveryStatus.DELIVERED
    assert sent.attempts == 2
    assert len(fake.posts) == 1
