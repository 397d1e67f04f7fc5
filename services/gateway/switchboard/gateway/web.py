"""The desktop's side of the gateway: the cookie session and the built web app (``web/dist``).

* A browser logs in with ``{"cookie": true}``: the session token goes into an ``HttpOnly``,
  ``SameSite=Strict`` cookie (``Secure`` when the request came over TLS) and never into the
  answer, so no page script can read it. Scripts keep the bearer token.
* Cookie-authenticated unsafe requests (anything but GET/HEAD/OPTIONS) must carry
  ``X-Switchboard-Csrf: 1`` and, when the browser sends one, an ``Origin`` equal to the
  request's own: another site cannot set that header without a CORS preflight, which this
  origin never grants. SameSite=Strict is the first wall, this is the second.
* The app's files are served from the same origin as the API (no CORS) with a strict
  Content-Security-Policy: scripts, styles and connections only from this origin, customer HTML
  only in a frame of this origin (which the ``/cases/{n}/html`` answer sandboxes itself).
* Anything that is not an API path and asks for HTML gets ``index.html`` (the app's router is
  the URL fragment, so this fallback only catches reloads of odd paths).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.gateway.errors import ApiError

SESSION_COOKIE = "sb_session"
CSRF_HEADER = "x-switchboard-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self'; media-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
BASE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


SECRET_HEADERS = frozenset({"cookie", "set-cookie", "authorization"})


class SecretHeaderFilter(logging.Filter):
    """Blanks session headers in the WebSocket library's DEBUG header trace (``< cookie: ...``),
    which uvicorn writes to its own logger: no session token in any log, at any level."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in SECRET_HEADERS:
            record.args = (args[0], "[redacted]")
        return True


def hide_secret_headers() -> None:
    for name in ("uvicorn.error", "websockets.server", "websockets.protocol"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretHeaderFilter) for f in logger.filters):
            logger.addFilter(SecretHeaderFilter())


def is_tls(scheme: str) -> bool:
    return scheme in {"https", "wss"}


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_tls(request.url.scheme),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_tls(request.url.scheme),
    )


def same_origin(origin: str | None, host: str | None, scheme: str) -> bool:
    """True when there is no Origin (not a browser's cross-site request) or it is this host."""
    if not origin:
        return True
    if not host:
        return False
    expected = {f"http://{host}", f"https://{host}"} if scheme in {"ws", "wss"} else set()
    expected.add(f"{'https' if is_tls(scheme) else 'http'}://{host}")
    return origin in expected


def check_csrf(request: Request) -> None:
    """Refuse a cookie-authenticated unsafe request without the app's header or from elsewhere."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(
            403,
            "csrf",
            f"a request authenticated by the session cookie must send {CSRF_HEADER}: 1",
        )
    if not same_origin(request.headers.get("origin"), request.headers.get("host"), "http"):
        raise ApiError(403, "csrf", "this request comes from another origin")


class SecurityHeaders:
    """Adds nosniff / no-referrer to every answer and the app's CSP to the app's HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in BASE_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html") and b"content-security-policy" not in (
                    present
                ):
                    headers.append((b"content-security-policy", APP_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def mount_web_app(app: FastAPI, dist: Path | None) -> None:
    """Serve the built app (if there is one) at ``/``, its files under ``/assets``."""
    if dist is None or not (dist / "index.html").is_file():
        return
    index = dist / "index.html"
    assets = (dist / "assets").resolve()

    def _index() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers={"cache-control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def web_index() -> FileResponse:
        return _index()

    @app.get("/assets/{name}", include_in_schema=False)
    async def web_asset(name: str) -> FileResponse:
        path = (assets / name).resolve()
        if path.parent != assets or not path.is_file():
            raise ApiError(404, "not_found", "no such file of the web app")
        return FileResponse(path, headers={"cache-control": "public, max-age=31536000, immutable"})

    @app.exception_handler(StarletteHTTPException)
    async def spa_fallback(request: Request, exc: StarletteHTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 404 and request.method == "GET" and wants_html:
            return _index()
        return JSONResponse(
            {"detail": str(exc.detail), "code": f"http_{exc.status_code}", "field": None},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
