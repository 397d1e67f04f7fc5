"""The credential every service's HTTP API asks for: one shared service token.

Services other than the gateway serve HTTP only to other services and operators' tools (the
gateway fetching attachments, an operator uploading a record file). Each such call carries
``Authorization: Bearer <SB_SERVICE_TOKEN>``; the token is compared in constant time. ``/metrics``
and ``/health/*`` stay open for probes and Prometheus, and return no customer data.

Without a token a service that serves an API refuses to start, unless the development flag
``SB_DEVELOPMENT`` says so (tests and a person trying one service by hand).
"""

from __future__ import annotations

import hmac
import json
import secrets

from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.types import ASGIApp, Receive, Scope, Send


class ServiceTokenMissing(RuntimeError):
    """A service API would be served without any credential."""


def new_service_token() -> str:
    """A fresh random token (``make run`` makes one per run when none is configured)."""
    return secrets.token_urlsafe(32)


def service_token(settings: ServiceSettings) -> str | None:
    """The configured token; an empty one counts as none."""
    token = settings.service_token.get_secret_value() if settings.service_token else ""
    return token or None


def bearer_headers(settings: ServiceSettings) -> dict[str, str]:
    """The headers a service sends when it calls another service's API."""
    token = service_token(settings)
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_service_token(settings: ServiceSettings, service: str) -> None:
    """Refuse to serve an API with no credential, unless development says so."""
    if service_token(settings) is None and not settings.development:
        raise ServiceTokenMissing(
            f"{service} serves an HTTP API but no service token is configured: set "
            "SB_SERVICE_TOKEN or SB_SERVICE_TOKEN_FILE (or, for development only, "
            "SB_DEVELOPMENT=true)"
        )


def is_authorised(header: str | None, token: str) -> bool:
    given = (header or "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def require_service_token(app: ASGIApp, token: str | None) -> ASGIApp:
    """``app`` behind the service token: 401 for a request without it or with a wrong one."""
    if token is None:
        return app

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        header = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"),
            None,
        )
        if is_authorised(header, token):
            await app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {"error": "unauthorized: this API needs Authorization: Bearer <service token>"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="switchboard services"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return guarded
