"""The gateway's access log and HTTP metrics: one JSON line and one sample per request.

Labelled and logged by route template (``/cases/{case_number}``), never by the raw path or the
query string, so no token, password or customer identifier reaches a log line or a label.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.gateway.metrics import HTTP_REQUESTS, HTTP_SECONDS

UNMATCHED = "unmatched"
"""The route label of a request no route matched (scanners, typos): one series for all."""


def route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessLog:
    """ASGI middleware: counts, times and logs each HTTP request once it has been answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            seconds = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(seconds)
            structlog.get_logger("switchboard.gateway.access").info(
                "http request",
                method=method,
                route=route,
                status=status,
                seconds=round(seconds, 4),
            )
