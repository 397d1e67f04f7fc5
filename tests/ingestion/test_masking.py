"""Masking reaches the raw copy: after threading's ``case.masked``, the unmasked original, its
HTML and its full text are destroyed and answered 410 by the mail edge's HTTP endpoints. Real
RabbitMQ and FerretDB; the event is published on the bus exactly as threading publishes it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
from testkit import eventually

from switchboard.contracts.cases import CaseMasked
from switchboard.ingestion.app import IngestionRuntime

SECRET = "account 9876.5432.1098"  # what an agent masks by hand (no card number: the
# edge masks those before storing)
SECRET_MAIL = (
    "From: Customer <customer@example.com>\r\n"
    "To: support@switchboard.local\r\n"
    "Subject: My card\r\n"
    "Message-ID: <card-1@example.com>\r\n"
    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    'Content-Type: multipart/alternative; boundary="b2"\r\n'
    "\r\n"
    "--b2\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    f"Please charge {SECRET}.\r\n" + ("Long text. " * 400) + "\r\n"
    "--b2\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    f"<p>Please charge <b>{SECRET}</b>.</p>\r\n"
    "--b2--\r\n"
    "--b1\r\n"
    'Content-Type: application/pdf; name="invoice.pdf"\r\n'
    'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
    "\r\n"
    "%PDF-1.4 invoice\r\n"
    "--b1--\r\n"
).encode()
OTHER_MAIL = (
    b"From: Someone <someone@example.com>\r\nTo: support@switchboard.local\r\n"
    b"Subject: unrelated\r\nMessage-ID: <other-1@example.com>\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nNothing secret.\r\n"
)


def _client(runtime: IngestionRuntime) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app), base_url="http://ingestion"
    )


async def test_case_masked_destroys_the_raw_copy_html_and_full_text(
    make_service: Callable[..., Any],
) -> None:
    runtime, listener = make_service(max_event_text_chars=1000)
    async with runtime.app, _client(runtime) as http:
        for raw in (SECRET_MAIL, OTHER_MAIL):
            answer = await http.post(
                "/mail/messages", params={"mailbox": "support@switchboard.local"}, content=raw
            )
            assert answer.status_code == 202
        await eventually(lambda: len(listener.received) == 2)
        event = next(e for e in listener.received if e.subject == "My card")
        other = next(e for e in listener.received if e.subject == "unrelated")
        assert event.html_ref and event.text_ref and event.text_truncated
        [pdf] = event.attachments

        async def status(path: str, blob_id: str) -> int:
            return (await http.get(path, params={"id": blob_id})).status_code

        original = await http.get("/mail/raw", params={"id": event.email_id})
        assert original.status_code == 200 and SECRET.encode() in original.content
        assert SECRET in (await http.get("/mail/blobs", params={"id": event.html_ref})).text
        assert SECRET in (await http.get("/mail/blobs", params={"id": event.text_ref})).text

        # threading masks the card number in the case: its key is the Message-ID sans brackets
        masked = CaseMasked(case_number=14355, email_ids=["card-1@example.com"], spans=1)
        await runtime.bus.publish(masked)
        await eventually(lambda: _eq(status("/mail/raw", event.email_id), 410))
        gone = await http.get("/mail/raw", params={"id": event.email_id})
        assert gone.json()["case_number"] == 14355 and SECRET not in gone.text
        assert await status("/mail/blobs", event.html_ref) == 410
        assert await status("/mail/blobs", event.text_ref) == 410
        # the bytes are gone, not only hidden (the record is marked last)
        await eventually(lambda: _masked(http, event.email_id))
        assert not await runtime.store.raw.exists(event.email_id)
        assert not await runtime.store.blobs.exists(event.html_ref)
        assert not await runtime.store.blobs.exists(event.text_ref)
        # attachments are not text threading masks; other mail is untouched
        assert await status("/mail/blobs", pdf.attachment_id) == 200
        assert await status("/mail/raw", other.email_id) == 200
        record = (await http.get("/mail/messages", params={"id": event.email_id})).json()
        assert record["masked"]["case_number"] == 14355

        # idempotent: the same event redelivered, and a second masking of the case, change
        # nothing and fail nothing
        await runtime.bus.publish(masked)
        await runtime.bus.publish(
            CaseMasked(case_number=14355, email_ids=["card-1@example.com", "gone@x"], spans=2)
        )
        await asyncio.sleep(1.0)
        assert await status("/mail/raw", event.email_id) == 410
        assert await runtime.store.locks.count_documents({}) == 3


async def test_a_mail_without_message_id_and_an_old_record_are_locked_too(
    make_service: Callable[..., Any],
) -> None:
    """Threading files a mail it got without a Message-ID under ``sha256-<email_id>``; a mail
    recorded before HTML refs were kept on its document is re-parsed to find them."""
    runtime, listener = make_service()
    raw = (
        b"From: c@example.com\r\nTo: support@switchboard.local\r\n"
        b"Content-Type: text/html\r\n\r\n<p>IBAN DE89 3704 0044 0532 0130 00</p>\r\n"
    )
    email_id = hashlib.sha256(raw).hexdigest()
    async with runtime.app, _client(runtime) as http:
        answer = await http.post(
            "/mail/messages", params={"mailbox": "support@switchboard.local"}, content=raw
        )
        assert answer.status_code == 202
        [event] = await eventually(lambda: listener.received)
        assert event.html_ref
        await runtime.store.mails.update_one(
            {"_id": email_id}, {"$unset": {"html_ref": "", "text_ref": ""}}
        )
        await runtime.bus.publish(CaseMasked(case_number=7, email_ids=[f"sha256-{email_id}"]))
        # the raw mail's lock is written last: once it shows, the HTML's shows too
        await eventually(
            lambda: _eq(http.get("/mail/raw", params={"id": email_id}), 410, status=True)
        )
        assert (await http.get("/mail/blobs", params={"id": event.html_ref})).status_code == 410


async def _eq(value: Any, expected: Any, *, status: bool = False) -> bool:
    got = await value
    return (got.status_code if status else got) == expected


async def _masked(http: httpx.AsyncClient, email_id: str) -> bool:
    record = (await http.get("/mail/messages", params={"id": email_id})).json()
    return bool(record.get("masked"))
