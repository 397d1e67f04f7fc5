"""Outlook's winmail.dat (TNEF): the files inside become ordinary attachments (the winmail.dat is
kept too), decoded by tnefparse; a damaged one is kept and flagged. End to end through the
running service's upload, with real RabbitMQ and FerretDB."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sb_tnef import winmail_dat
from testkit import eventually

from switchboard.ingestion.parsing import ParsedMail, parse

PDF = b"%PDF-1.4\n% Quartalsbericht Q3\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _outlook_mail(winmail: bytes, *, text: str | None = "See the attached report.") -> bytes:
    parts = []
    if text is not None:
        parts.append(f'Content-Type: text/plain; charset="us-ascii"\r\n\r\n{text}\r\n')
    encoded = base64.encodebytes(winmail).decode().replace("\n", "\r\n")
    parts.append(
        'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        'Content-Disposition: attachment; filename="winmail.dat"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + encoded
    )
    body = "".join(f"--TNEF\r\n{p}" for p in parts) + "--TNEF--\r\n"
    return (
        "From: Kim <kim@example.com>\r\nTo: support@switchboard.local\r\n"
        "Subject: Report\r\nMessage-ID: <tnef-1@example.com>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="TNEF"\r\n\r\n' + body
    ).encode()


def _parse(raw: bytes) -> ParsedMail:
    parsed = parse(raw, received_at=datetime(2026, 11, 23, tzinfo=UTC))
    assert isinstance(parsed, ParsedMail)
    return parsed


def test_files_inside_winmail_dat_become_attachments_with_their_long_names() -> None:
    winmail = winmail_dat(
        [("QUARTA~1.PDF", "Quartalsbericht Größe.pdf", PDF), ("IMAGE0~1.PNG", "image001.png", PNG)]
    )
    parsed = _parse(_outlook_mail(winmail))
    by_name = {a.filename: a for a in parsed.attachments}
    assert set(by_name) == {"winmail.dat", "Quartalsbericht Größe.pdf", "image001.png"}
    assert by_name["winmail.dat"].content == winmail  # the original is kept
    assert by_name["Quartalsbericht Größe.pdf"].content == PDF
    assert by_name["Quartalsbericht Größe.pdf"].content_type == "application/pdf"
    assert by_name["image001.png"].content_type == "image/png"
    assert parsed.text == "See the attached report."
    assert not any(d.startswith("tnef") for d in parsed.defects)


def test_a_body_only_in_tnef_becomes_the_text() -> None:
    winmail = winmail_dat([("A.TXT", "a.txt", b"file")], body="Hello from Outlook rich text")
    parsed = _parse(_outlook_mail(winmail, text=None))
    assert parsed.text == "Hello from Outlook rich text"


def test_a_damaged_winmail_dat_is_kept_and_flagged() -> None:
    parsed = _parse(_outlook_mail(b"not TNEF at all"))
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert any(d.startswith("tnef_undecodable") for d in parsed.defects)


async def test_decoded_files_are_on_the_event_and_fetchable(
    make_service: Callable[..., Any],
) -> None:
    winmail = winmail_dat([("QUARTA~1.PDF", "Quartalsbericht.pdf", PDF)])
    runtime, listener = make_service()
    async with (
        runtime.app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.app), base_url="http://ingestion"
        ) as http,
    ):
        answer = await http.post(
            "/mail/messages",
            params={"mailbox": "support@switchboard.local"},
            content=_outlook_mail(winmail),
        )
        assert answer.status_code == 202
        [event] = await eventually(lambda: listener.received)
        refs = {a.filename: a for a in event.attachments}
        assert set(refs) == {"winmail.dat", "Quartalsbericht.pdf"}
        pdf = await http.get(
            "/mail/blobs", params={"id": refs["Quartalsbericht.pdf"].attachment_id}
        )
        assert pdf.status_code == 200 and pdf.content == PDF
        assert pdf.headers["content-type"] == "application/pdf"
        assert refs["Quartalsbericht.pdf"].size == len(PDF)
