"""Every error the API returns is JSON `{"detail": "<what to do>", ...}`: one sentence a person can act on.

Language: `detail` is Chinese unless the request's `Accept-Language` puts English first (backend/i18n.py).
Routes keep raising English sentences; the handlers here translate them by their shape at the boundary, so
the status code and the machine-readable fields (`errors`, headers) never change with the language.

How this works: routes raise `HTTPException(status, "sentence")`; `install(app)` turns request-validation
errors into the same shape (`detail` a sentence naming the fields, `errors` the machine-readable list) and
any unexpected exception into a 500 that says the error was logged, without leaking internals. `ERRORS`
documents these bodies in the OpenAPI document so clients (and schemathesis) know every error's shape.

(No `from __future__ import annotations`: FastAPI must see the real types in signatures.)
"""

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import Unavailable
from backend.i18n import Lang, error_text, lang_of, validation_text
from backend.ingest.handoff import AlertingUnavailable

__all__ = ["ERRORS", "ErrorBody", "install", "request_lang"]

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


def _doc(text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _doc("the request body could not be read (not JSON?)"),
    401: _doc("not logged in, or the token expired: log in again"),
    403: _doc("your role may not do this"),
    404: _doc("no such thing in your territory"),
    409: _doc("the alarm is not in a state that allows this"),
    422: _doc("the request is malformed: `detail` names the fields"),
    503: _doc("a part of the backend this needs is not running"),
}


def request_lang(request: Request) -> Lang:
    """The language a person asked for (`Accept-Language`, Chinese by default): a route dependency."""
    return lang_of(request.headers.get("accept-language"))


_lang = request_lang


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        slim = [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in errs]
        body = {"detail": validation_text(errs, _lang(request)), "errors": jsonable_encoder(slim)}
        return JSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == status.HTTP_400_BAD_REQUEST and detail == "There was an error parsing the body":
            detail = "the request body is not valid JSON: send Content-Type: application/json with a JSON object"
        return JSONResponse({"detail": error_text(str(detail), _lang(request))}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        """A store this needs is away (the alarm database, the login database, the cluster's queue): the person's act
        was not recorded; say so plainly, 503 with Retry-After, never a 500."""
        log.warning("%s %s: %s unavailable: %s", request.method, request.url.path, type(exc).__name__, exc)
        if isinstance(exc, AlertingUnavailable):
            zh = "告警数据库暂时不可用，本次操作未记录：请稍后重试（值班台顶部的系统故障条会在恢复后消失）"
            en = "the alarm database is unavailable right now, so this was not recorded: try again in a moment (the system-fault strip goes when it is back)"
        else:
            zh = "系统所需的数据库暂时不可用，本次操作未完成：请稍后重试"
            en = "a database this needs is unavailable right now, so this was not done: try again in a moment"
        return JSONResponse({"detail": en if _lang(request) == "en" else zh}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        sentence = "the server failed on this request and logged it; try again, and tell the administrator if it persists"
        return JSONResponse({"detail": error_text(sentence, _lang(request))},
                            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
