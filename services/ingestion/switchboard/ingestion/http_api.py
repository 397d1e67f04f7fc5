"""HTTP beside /metrics and /health: upload of raw ``.eml`` mail, and the raw-mail store.

The runtime mounts apps on *exact* paths, so ids travel as query parameters:

* ``POST /mail/messages?mailbox=support@example.com`` body = the raw RFC 822 bytes -> 202
  ``{"email_id", "duplicate", "event", "reason"}``; 404 unknown mailbox; 413 over the size limit;
  503 (Retry-After) when the mail could not be stored or its event not confirmed.
* ``GET /mail/messages?id=<email_id>`` -> what we know of one stored mail.
* ``GET /mail/raw?id=<email_id>`` -> the raw bytes (``message/rfc822``).
* ``GET /mail/blobs?id=<blob_id>`` -> an attachment, sanitised HTML or full text.
* ``POST /mail/attachments?filename=a.pdf`` body = bytes -> 201 ``AttachmentRef`` (for replies).
* ``GET /mail/quarantine`` -> the mail that could not be parsed, newest first.
* ``GET /mail/openapi.json`` -> this API as an OpenAPI document.

Every call needs the service token (``Authorization: Bearer``; the runtime checks it, see
:mod:`switchboard.runtime.service_token`). A raw mail, HTML or
full text whose email threading masked answers 410 (see :mod:`switchboard.ingestion.masking`).
"""

from __future__ import annotations

import mimetypes
from datetime import datetime
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.contracts.mail import AttachmentRef
from switchboard.ingestion import metrics
from switchboard.ingestion.ingest import Arrival, Ingestor
from switchboard.ingestion.mailboxes import MailboxDirectory
from switchboard.ingestion.openapi import OPENAPI
from switchboard.ingestion.store import BlobMissing, MailStore

log = structlog.get_logger("switchboard.ingestion.http")

PATHS = (
    "/mail/messages",
    "/mail/raw",
    "/mail/blobs",
    "/mail/attachments",
    "/mail/quarantine",
    "/mail/openapi.json",
)


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _TooLarge
    return bytes(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _gone(lock: dict[str, Any]) -> Response:
    return JSONResponse(
        {
            "error": "masked: the email's text was masked in its case; the original is locked",
            "case_number": lock.get("case_number"),
        },
        status_code=410,
    )


def build_http_app(
    ingestor: Ingestor,
    store: MailStore,
    mailboxes: MailboxDirectory,
    *,
    size_limit: int,
) -> Starlette:
    async def messages(request: Request) -> Response:
        if request.method == "GET":
            doc = await store.mails.find_one({"_id": request.query_params.get("id", "")})
            if doc is None:
                return JSONResponse({"error": "no such mail"}, status_code=404)
            return JSONResponse(_jsonable({"email_id": doc.pop("_id"), **doc}))
        address = request.query_params.get("mailbox", "")
        mailbox = mailboxes.find(address)
        if mailbox is None:
            metrics.REJECTED.labels("upload", "404").inc()
            return JSONResponse(
                {"error": f"no mailbox {address!r} is configured", "field": "mailbox"},
                status_code=404,
            )
        try:
            raw = await _body(request, size_limit)
        except _TooLarge:
            metrics.REJECTED.labels("upload", "413").inc()
            return JSONResponse(
                {"error": f"message larger than {size_limit} bytes"}, status_code=413
            )
        if not raw:
            return JSONResponse({"error": "empty body", "field": "body"}, status_code=400)
        client = request.client
        arrival = Arrival(
            channel="upload",
            mailbox=mailbox,
            source=f"upload:{client.host if client else '?'}",
        )
        try:
            done = await ingestor.ingest(raw, arrival)
        except Exception as exc:
            metrics.REJECTED.labels("upload", "503").inc()
            log.warning("upload deferred", error=f"{type(exc).__name__}: {exc}")
            return JSONResponse(
                {"error": "not stored or not confirmed; try again"},
                status_code=503,
                headers={"retry-after": "5"},
            )
        return JSONResponse(
            {
                "email_id": done.email_id,
                "duplicate": done.duplicate,
                "event": done.event,
                "reason": done.reason,
            },
            status_code=202,
        )

    async def raw(request: Request) -> Response:
        email_id = request.query_params.get("id", "")
        lock = await store.locked("raw", email_id)
        if lock is not None:
            return _gone(lock)
        try:
            data = await store.raw.get(email_id)
        except BlobMissing:
            return JSONResponse({"error": "no such mail"}, status_code=404)
        return Response(data, media_type="message/rfc822")

    async def blobs(request: Request) -> Response:
        blob_id = request.query_params.get("id", "")
        lock = await store.locked("blob", blob_id)
        if lock is not None:
            return _gone(lock)
        info = await store.blobs.info(blob_id)
        if info is None:
            return JSONResponse({"error": "no such blob"}, status_code=404)
        data = await store.blobs.get(blob_id)
        ctype = str((info.get("metadata") or {}).get("content_type", "application/octet-stream"))
        headers = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox"}
        return Response(data, media_type=ctype, headers=headers)

    async def attachments(request: Request) -> Response:
        try:
            data = await _body(request, size_limit)
        except _TooLarge:
            return JSONResponse({"error": f"larger than {size_limit} bytes"}, status_code=413)
        filename = request.query_params.get("filename", "attachment.bin")
        if not filename or any(not ch.isprintable() for ch in filename):
            return JSONResponse(
                {
                    "error": "a file name may not hold a line break or control character",
                    "field": "filename",
                },
                status_code=422,
            )
        ctype = (
            request.query_params.get("content_type")
            or mimetypes.guess_type(filename)[0]
            or "application/octet-stream"
        )
        blob_id = await store.put_blob(data, content_type=ctype, kind="attachment")
        ref = AttachmentRef(
            attachment_id=blob_id, filename=filename, content_type=ctype, size=len(data)
        )
        return JSONResponse(ref.model_dump(mode="json"), status_code=201)

    async def quarantine(request: Request) -> Response:
        limit = request.query_params.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            return JSONResponse(
                {"error": "limit must be a whole number from 1 to 1000", "field": "limit"},
                status_code=422,
            )
        docs = await store.list_quarantine(int(limit))
        return JSONResponse([_jsonable({"email_id": d.pop("_id"), **d}) for d in docs])

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    return Starlette(
        routes=[
            Route("/mail/messages", messages, methods=["GET", "POST"]),
            Route("/mail/raw", raw, methods=["GET"]),
            Route("/mail/blobs", blobs, methods=["GET"]),
            Route("/mail/attachments", attachments, methods=["POST"]),
            Route("/mail/quarantine", quarantine, methods=["GET"]),
            Route("/mail/openapi.json", openapi, methods=["GET"]),
        ]
    )
