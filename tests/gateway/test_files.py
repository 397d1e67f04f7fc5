"""Thread view, attachment download, sanitised HTML and uploads through the mail store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.contracts import cases
from switchboard.contracts.queues import threading as threading_queues
from switchboard.gateway.app import GatewayRuntime, GatewaySettings, build
from switchboard.runtime.errors import Refused

from .conftest import StandIns, login

BLOBS = {"att-1": b"%PDF-1.4 invoice", "html-1": b"<p>Hello <b>there</b></p>"}


def fake_mail_store() -> Starlette:
    async def blobs(request: Request) -> Response:
        blob = BLOBS.get(request.query_params.get("id", ""))
        if blob is None:
            return JSONResponse({"error": "no such blob"}, status_code=404)
        return Response(blob, media_type="application/octet-stream")

    async def attachments(request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "attachment_id": "att-new",
                "filename": request.query_params["filename"],
                "content_type": request.headers.get("content-type"),
                "size": len(body),
            },
            status_code=201,
        )

    return Starlette(
        routes=[
            Route("/mail/blobs", blobs, methods=["GET"]),
            Route("/mail/attachments", attachments, methods=["POST"]),
        ]
    )


THREAD = {
    "case": {"case_number": 14355, "status": "open", "service": "support", "subject": "Invoice"},
    "emails": [
        {
            "email_id": "<a@x>",
            "direction": "inbound",
            "from": {"name": "Ann Customer", "address": "ann@example.com"},
            "when": "2026-11-23T10:00:00+00:00",
            "to": [{"name": "", "address": "support@example.com"}],
            "cc": [],
            "subject": "Invoice",
            "text": "Hello there",
            "html_ref": "html-1",
            "attachments": [
                {
                    "attachment_id": "att-1",
                    "filename": "invoice.pdf",
                    "content_type": "application/pdf",
                    "size": 16,
                }
            ],
        }
    ],
}


@pytest.fixture
async def files_gateway(gateway_settings: GatewaySettings) -> AsyncIterator[GatewayRuntime]:
    runtime = build(gateway_settings, mail_transport=httpx.ASGITransport(app=fake_mail_store()))
    async with runtime.app:
        yield runtime


async def test_thread_view_attachments_html_and_upload(
    files_gateway: GatewayRuntime, stand_ins: StandIns, running: Callable[..., Any]
) -> None:
    async def thread(query: cases.GetCaseThread) -> dict[str, Any]:
        if query.agent_id != "agent-1":
            raise Refused("not_assigned", "this case is not yours", field="case_number")
        return THREAD

    async def upload(command: cases.RecordUpload) -> dict[str, Any]:
        return {"attachment_id": command.attachment.attachment_id}

    stand_ins.answer(
        threading_queues.QUERIES[cases.GetCaseThread.NAME], cases.GetCaseThread, thread
    )
    stand_ins.answer(threading_queues.COMMANDS[cases.RecordUpload.NAME], cases.RecordUpload, upload)
    transport = httpx.ASGITransport(app=files_gateway.api)
    async with (
        running(stand_ins),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        agent = await login(http, "agent-1")
        other = await login(http, "agent-2")

        view = await http.get("/cases/14355", headers=agent)
        assert view.status_code == 200
        email = view.json()["emails"][0]
        assert email["from"]["address"] == "ann@example.com" and email["subject"] == "Invoice"

        got = await http.get("/cases/14355/attachments/att-1", headers=agent)
        assert got.status_code == 200
        assert got.content == BLOBS["att-1"]
        assert got.headers["content-type"] == "application/pdf"
        assert 'filename="invoice.pdf"' in got.headers["content-disposition"]

        foreign = await http.get("/cases/14355/attachments/att-1", headers=other)
        assert foreign.status_code == 403
        assert foreign.json()["detail"] == "this case is not yours"
        # an id that is not part of the case is never fetched
        missing = await http.get("/cases/14355/attachments/html-1", headers=agent)
        assert missing.status_code == 404

        html = await http.get("/cases/14355/html", params={"email_id": "<a@x>"}, headers=agent)
        assert html.status_code == 200
        assert html.text == BLOBS["html-1"].decode()
        assert "sandbox" in html.headers["content-security-policy"]

        uploaded = await http.post(
            "/attachments",
            params={"filename": "notes.txt"},
            content=b"some notes",
            headers={**agent, "Content-Type": "text/plain"},
        )
        assert uploaded.status_code == 201
        assert uploaded.json()["attachment_id"] == "att-new"
        assert uploaded.json()["size"] == 10
        # threading is told whose upload it is (only they may send it)
        [recorded] = stand_ins.of(cases.RecordUpload)
        assert recorded.agent_id == "agent-1"
        assert recorded.attachment.attachment_id == "att-new"
