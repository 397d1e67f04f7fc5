"""Attachments and sanitised HTML of a case's emails, and uploads for replies.

The bytes live in the mail edge's raw-mail store, served by its HTTP API (``GET /mail/blobs``,
``POST /mail/attachments``). The gateway first asks threading for the case's thread view on the
person's behalf (so threading's rules decide who may read the case), finds the attachment or the
HTML reference in it, and only then fetches the bytes: an id that is not part of that case is
never fetched. An upload is recorded with threading as the uploader's (``case.upload.record``):
only the uploader may send it.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoint annotations.

from collections.abc import Callable
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from switchboard.contracts.cases import GetCaseThread, RecordUpload
from switchboard.gateway.auth import Principal
from switchboard.gateway.errors import ApiError
from switchboard.gateway.forward import Forwarder, build_command
from switchboard.gateway.routes import ERROR_RESPONSES

MAX_UPLOAD = 25 * 1024 * 1024


class MailStore:
    """The mail edge's HTTP API for stored bytes."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(504, "timeout", "the mail store did not answer in time") from None
        except httpx.HTTPError:
            raise ApiError(
                503, "unavailable", "the mail store (ingestion) is not reachable"
            ) from None
        if answer.status_code == 404:
            raise ApiError(404, "not_found", "the mail store does not have this content")
        if answer.status_code == 413:
            raise ApiError(413, "too_large", "the file is larger than the mail store accepts")
        if answer.status_code >= 400:
            raise ApiError(
                503 if answer.status_code >= 500 else 502,
                "mail_store_error",
                f"the mail store answered {answer.status_code}",
            )
        return answer

    async def quarantine(self, limit: int) -> list[dict[str, Any]]:
        answer = await self._call("GET", "/mail/quarantine", params={"limit": limit})
        found: list[dict[str, Any]] = answer.json()
        return found

    async def blob(self, blob_id: str) -> httpx.Response:
        return await self._call("GET", "/mail/blobs", params={"id": blob_id})

    async def upload(self, filename: str, content_type: str | None, body: bytes) -> dict[str, Any]:
        """Store the bytes; the mail edge takes the type from ``content_type`` or, without one,
        guesses it from the file name."""
        params = {"filename": filename}
        if content_type:
            params["content_type"] = content_type
        answer = await self._call(
            "POST",
            "/mail/attachments",
            params=params,
            content=body,
            headers={"Content-Type": content_type or "application/octet-stream"},
        )
        result: dict[str, Any] = answer.json()
        return result


def _safe_filename(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch.isprintable() and ch not in '"\\/\r\n')
    return cleaned[:200] or "attachment"


def file_router(forwarder: Forwarder, store: MailStore, current: Callable[..., Any]) -> APIRouter:
    router = APIRouter(tags=["cases"], responses=ERROR_RESPONSES)

    async def thread(principal: Principal, case_number: int) -> dict[str, Any]:
        command = build_command(
            GetCaseThread,
            case_number=case_number,
            agent_id=principal.person_id,
            acting_role=principal.role,
            include_drafts=False,
        )
        return await forwarder.send(
            command,
            owner="threading",
            path_fields={"case_number"},
            identity_fields={"agent_id", "acting_role"},
        )

    @router.get(
        "/cases/{case_number}/attachments/{attachment_id}",
        summary="Download an attachment of an email of the case",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def attachment(
        case_number: Annotated[int, Path(ge=1, le=2**53)],
        attachment_id: Annotated[str, Path(min_length=1, max_length=200)],
        principal: Annotated[Principal, Depends(current)],
    ) -> Response:
        view = await thread(principal, case_number)
        for email in view.get("emails", []):
            for item in email.get("attachments", []) or []:
                if isinstance(item, dict) and item.get("attachment_id") == attachment_id:
                    blob = await store.blob(attachment_id)
                    filename = _safe_filename(str(item.get("filename", "")))
                    return Response(
                        blob.content,
                        media_type=str(item.get("content_type") or "application/octet-stream"),
                        headers={
                            "Content-Disposition": f'attachment; filename="{filename}"',
                            "X-Content-Type-Options": "nosniff",
                        },
                    )
        raise ApiError(
            404,
            "no_such_attachment",
            "no email of this case has this attachment",
            field="attachment_id",
        )

    @router.get(
        "/cases/{case_number}/html",
        summary="The sanitised HTML of an email of the case",
        response_class=Response,
        responses={200: {"content": {"text/html": {}}}},
    )
    async def html(
        case_number: Annotated[int, Path(ge=1, le=2**53)],
        email_id: Annotated[str, Query(min_length=1, max_length=1000)],
        principal: Annotated[Principal, Depends(current)],
    ) -> Response:
        view = await thread(principal, case_number)
        for email in view.get("emails", []):
            if email.get("email_id") != email_id:
                continue
            headers = {
                "Content-Security-Policy": "sandbox; default-src 'none'; img-src data: cid:",
                "X-Content-Type-Options": "nosniff",
            }
            if email.get("html_withheld"):
                raise ApiError(
                    409, "html_withheld", "the HTML is withheld (it carried sensitive data)"
                )
            if email.get("html"):
                return Response(str(email["html"]), media_type="text/html", headers=headers)
            if email.get("html_ref"):
                blob = await store.blob(str(email["html_ref"]))
                return Response(blob.content, media_type="text/html", headers=headers)
            raise ApiError(404, "no_html", "this email has no HTML part", field="email_id")
        raise ApiError(404, "no_such_email", "no email of this case has this id", field="email_id")

    @router.post(
        "/attachments",
        status_code=201,
        summary="Upload a file to attach to a reply (answers the attachment reference)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def upload(
        request: Request,
        filename: Annotated[str, Query(min_length=1, max_length=200)],
        principal: Annotated[Principal, Depends(current)],
    ) -> dict[str, Any]:
        if any(not ch.isprintable() for ch in filename):
            raise ApiError(
                422,
                "invalid",
                "a file name may not hold a line break or control character",
                field="filename",
            )
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_UPLOAD:
            raise ApiError(413, "too_large", f"at most {MAX_UPLOAD} bytes", field="body")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD:
                raise ApiError(413, "too_large", f"at most {MAX_UPLOAD} bytes", field="body")
        # a client that does not know the type sends none or octet-stream: the mail edge then
        # guesses it from the file name
        content_type = request.headers.get("content-type", "").strip()[:200] or None
        if content_type and content_type.split(";")[0].strip() == "application/octet-stream":
            content_type = None
        stored = await store.upload(_safe_filename(filename), content_type, bytes(body))
        # threading lets only the uploader's own files (and the case's) leave with their mail
        await forwarder.send(
            build_command(RecordUpload, agent_id=principal.person_id, attachment=stored),
            owner="threading",
            identity_fields={"agent_id"},
        )
        return stored

    return router


class QuarantinedMail(BaseModel):
    """Mail the mail edge held back, and why (the wallboard's quarantine list)."""

    email_id: str
    mailbox: str | None = None
    service: str | None = None
    received_at: str | None = None
    size: int | None = None
    reason: str = ""


def quarantine_router(store: MailStore, supervisor: Callable[..., Any]) -> APIRouter:
    router = APIRouter(tags=["supervisor"], responses=ERROR_RESPONSES)

    @router.get(
        "/supervisor/quarantine",
        response_model=list[QuarantinedMail],
        summary="Mail in quarantine with its reason (from the mail edge)",
    )
    async def quarantine(
        _: Annotated[Principal, Depends(supervisor)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[QuarantinedMail]:
        found = await store.quarantine(limit)
        return [QuarantinedMail.model_validate(doc) for doc in found]

    return router
