"""A local receiving system (a stand-in for the fire brigade's 119 receiver) speaking our documented webhook (docs/forward.md).

A real HTTP/1.1 server on a free loopback port (asyncio streams, keep-alive), one of four behaviours, switchable
while it runs: `receipt` (answers 200 with a receipt number; the same Idempotency-Key gets the same number, as a
receiver that saw a repeat would), `fail` (500), `slow` (answers after `delay_s`), `down` (closes the connection
without an answer). Every request is kept (headers and JSON body) for the tests to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

__all__ = ["Receiver", "Request"]


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    at: float  # time.perf_counter() when the request had fully arrived


@dataclass
class Receiver:
    name: str = "rx"
    mode: str = "receipt"
    delay_s: float = 5.0
    requests: list[Request] = field(default_factory=list)
    receipts: dict[str, str] = field(default_factory=dict)  # idempotency key -> receipt number
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/119/alarms"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(path, headers, json.loads(raw) if raw else {}, raw, time.perf_counter()))
                if self.mode == "down":
                    return
                if self.mode == "slow":
                    await asyncio.sleep(self.delay_s)
                if self.mode == "fail":
                    status, body = "500 Internal Server Error", b'{"error":"receiver busy"}'
                else:
                    key = headers.get("idempotency-key", str(len(self.requests)))
                    number = self.receipts.setdefault(key, f"{self.name.upper()}-{len(self.receipts) + 1:04d}")
                    status, body = "200 OK", json.dumps({"receipt": number, "accepted": True}).encode()
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
