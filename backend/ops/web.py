"""HTTP hygiene of the API: security headers on every response, and the API documentation served locally.

How this works: `SecurityHeaders` is a pure ASGI middleware (it does not buffer bodies, so the live feed's
server-sent events stream through untouched). It adds to every response: a Content-Security-Policy fitted to
the console (scripts and connections to this origin only; inline style attributes, which the console's SVG
map and charts use; no frames, no plugins), X-Frame-Options DENY, X-Content-Type-Options nosniff,
Referrer-Policy no-referrer (one-tap links carry their token in the path), and Strict-Transport-Security
when the request came over HTTPS (directly, or `X-Forwarded-Proto: https` from the reverse proxy) or
`ops.hsts_max_age_s` says so. The documentation pages (Swagger UI, ReDoc) get a policy that also allows
their one inline start-up script and ReDoc's blob worker.

`offline_docs` serves Swagger UI at /api/docs and ReDoc at /api/redoc from the `fastapi-offline` package's
bundled assets under /api/docs-assets: nothing is loaded from a CDN, so the pages work on an intranet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONSOLE_CSP", "DOCS_ASSETS", "DOCS_CSP", "HeaderPolicy", "SecurityHeaders", "offline_docs"]

DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/api/docs-assets"
HSTS_DEFAULT_S = 365 * 24 * 3600

CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
               "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_DOCS_PAGES = ("/api/docs", "/api/redoc", "/docs/oauth2-redirect")


@dataclass
class HeaderPolicy:
    """What SecurityHeaders sends that depends on the deployment (settable until the server starts, and after)."""

    hsts_max_age_s: int = 0


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, policy: HeaderPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = DOCS_CSP if path in _DOCS_PAGES else CONSOLE_CSP
        headers_in = dict(scope.get("headers") or [])
        https = scope.get("scheme") == "https" or headers_in.get(b"x-forwarded-proto", b"").split(b",")[0].strip() == b"https"
        hsts = self.policy.hsts_max_age_s or (HSTS_DEFAULT_S if https else 0)
        extra = [(b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                 (b"referrer-policy", b"no-referrer")]
        if hsts:
            extra.append((b"strict-transport-security", f"max-age={hsts}; includeSubDomains".encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def offline_docs(app: FastAPI) -> None:
    """Swagger UI (/api/docs) and ReDoc (/api/redoc) from local assets; create the app with docs_url=None, redoc_url=None."""
    openapi_url = app.openapi_url or "/api/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.api_route("/api/docs", methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url=redirect_url,
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters)

    @app.api_route(redirect_url, methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.api_route("/api/redoc", methods=["GET", "HEAD"], include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc", redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
