"""Liveness and readiness endpoints, as operators and orchestrators probe them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from faststream.asgi import AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.asgi.types import Scope

Check = Callable[[], Awaitable[bool]]


def _json(status: int, body: dict[str, object]) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status, headers={"content-type": "application/json"}
    )


def live_endpoint(is_alive: Callable[[], bool]) -> GetHandler:
    """200 while the process does its job; 503 once it has decided to give up (and exit)."""

    @get(include_in_schema=False)
    async def live(scope: Scope) -> AsgiResponse:
        ok = is_alive()
        return _json(200 if ok else 503, {"status": "live" if ok else "dying"})

    return live


def ready_endpoint(checks: dict[str, Check]) -> GetHandler:
    """200 when every dependency (broker, MongoDB) answers; 503 naming the ones that do not."""

    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        results = {}
        for name, check in checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        ok = all(results.values())
        return _json(200 if ok else 503, {"status": "ready" if ok else "not ready", **results})

    return ready
