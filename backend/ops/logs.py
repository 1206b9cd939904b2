"""Log lines for people and for log collectors: plain text or one JSON object a line, times in UTC with offset.

How this works: `configure_logging` installs one stderr handler on the root logger. Plain lines read
`2026-12-06T04:51:46.123+00:00 INFO backend.server: backend ready on ...`; with `ops.log_json` each line is
a JSON object with `time` (UTC, ISO 8601 with offset), `level`, `logger`, `message`, the exception if any,
and the structured fields where the code knows them: `alarm_id`, `device`, `gateway`, `msg_id` and `trace`
(one message's id across processes). A field comes from `extra={...}` on the log call or from
`log_fields(...)`, a context manager that tags every line logged inside it (contextvars: per task).
The console and reports show times in the site's zone; logs stay in UTC so processes on different
machines sort together.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = ["FIELDS", "JsonFormatter", "UtcFormatter", "configure_logging", "log_fields"]

FIELDS = ("alarm_id", "device", "gateway", "msg_id", "trace")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("shouwang_log_fields", default={})  # noqa: B039 (never mutated)
QUIET = ("amqtt", "transitions", "uvicorn.access", "httpx")


@contextlib.contextmanager
def log_fields(**fields: str | None) -> Iterator[None]:
    """Tag every line logged inside with these structured fields (None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return _utc(record.created)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _utc(record.created), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        fields = _context.get()
        for key in FIELDS:
            value = record.__dict__.get(key, fields.get(key))
            if value is not None:
                out[key] = value
        out["process"] = os.getpid()  # record.process is not filled in (configure_logging)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(*, verbose: bool = False, json_lines: bool = False) -> None:
    # What no line here shows is not gathered (the logging HOWTO's "Optimization"): the caller's file and line (a walk
    # up the stack), the thread's and process's names. A line cost ~30 µs and now ~18 µs; issue 19: a storm of 2,000
    # alarms is 2,000 lines written on the event loop.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
