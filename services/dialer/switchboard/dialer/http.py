"""HTTP upload of record files, streamed straight into the importer.

``POST /dialer/imports?campaign_id=C&format=csv|jsonl[&region=GB][&import_id=X]`` with the file
as the body answers the summary when done (counts, the first bad rows with line and reason).
``GET /dialer/imports/status?import_id=X`` shows the progress of a running import and, when
done, its result (``&errors=N`` lists up to N bad rows).

Why HTTP and not a bus command for big files: a 100k-row file is tens of megabytes; as one
broker message it would sit in memory whole, in RabbitMQ and in the consumer, and be redelivered
whole. An HTTP body is read chunk by chunk into batched upserts, in constant memory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from switchboard.dialer.handlers import DialerHandlers
from switchboard.dialer.openapi import OPENAPI
from switchboard.runtime.types import ASGIApp, Receive, Scope, Send


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode())
    return {k: v[-1] for k, v in parsed.items()}


def upload_app(handlers: DialerHandlers) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _respond(send, 405, {"error": "POST a file here"})
            return
        query = _query(scope)
        campaign_id = query.get("campaign_id", "")
        file_format = query.get("format", "csv")
        if file_format not in ("csv", "jsonl"):
            await _respond(send, 400, {"error": "format must be csv or jsonl", "field": "format"})
            return
        spec = await handlers.store.campaign(campaign_id)
        if spec is None:
            await _respond(
                send, 404, {"error": f"no campaign {campaign_id!r}", "field": "campaign_id"}
            )
            return

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError("the client went away during the upload")
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        summary = await handlers.run_import(
            campaign_id,
            body(),
            file_format,
            query.get("region") or spec.default_region,
            import_id=query.get("import_id") or uuid.uuid4().hex,
        )
        await _respond(send, 200, summary)

    return app


def status_app(handlers: DialerHandlers) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = _query(scope)
        errors = query.get("errors", "100") or "100"
        if not errors.isdigit() or int(errors) > 1000:
            await _respond(
                send, 422, {"error": "errors must be a whole number to 1000", "field": "errors"}
            )
            return
        found = await handlers.store.get_import(query.get("import_id", ""), errors=int(errors))
        if found is None:
            await _respond(send, 404, {"error": "no such import", "field": "import_id"})
            return
        await _respond(send, 200, found.reply())

    return app


def openapi_app() -> ASGIApp:
    """This API as an OpenAPI document (``GET /dialer/openapi.json``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _respond(send, 200, OPENAPI)

    return app
