"""Inbound mail through the running service: SMTP (real smtplib client) and HTTP upload, against
real RabbitMQ and FerretDB. Every accepted mail is stored, then published, exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import smtplib
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sb_ingestion_testkit import CORPUS, MAILBOXES
from testkit import eventually

from switchboard.ingestion.app import IngestionRuntime

SIMPLE = (
    b"From: Customer <customer@example.com>\r\n"
    b"To: support@switchboard.local\r\n"
    b"Subject: Where is my parcel?\r\n"
    b"Message-ID: <simple-1@example.com>\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"\r\n"
    b"Hello, where is it?\r\n"
)


def _smtp_send(port: int, raw: bytes, rcpts: list[str], sender: str = "c@example.com") -> Any:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.com")
        return client.sendmail(sender, rcpts, raw)


def _send_without_size(port: int, raw: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.com")
        client.mail("c@example.com")
        client.rcpt("support@switchboard.local")
        code, _ = client.data(raw)
        return code


async def _send(runtime: IngestionRuntime, raw: bytes, rcpts: list[str] | None = None) -> Any:
    assert runtime.smtp is not None and runtime.smtp.port
    return await asyncio.to_thread(
        _smtp_send, runtime.smtp.port, raw, rcpts or ["support@switchboard.local"]
    )


def _client(runtime: IngestionRuntime) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app), base_url="http://ingestion"
    )


async def test_smtp_mail_is_stored_then_published_once(make_service: Callable[..., Any]) -> None:
    runtime, listener = make_service()
    async with runtime.app:
        refused = await _send(runtime, SIMPLE)
        assert refused == {}
        [event] = await eventually(lambda: listener.received)
        email_id = hashlib.sha256(SIMPLE).hexdigest()
        assert event.email_id == email_id
        assert (event.channel, event.mailbox, event.service) == (
            "smtp",
            "support@switchboard.local",
            "support",
        )
        assert event.subject == "Where is my parcel?"
        assert event.sender.address == "customer@example.com"
        assert await runtime.store.raw.get(email_id) == SIMPLE
        # the same bytes again: accepted (250), no second copy, no second event
        assert await _send(runtime, SIMPLE) == {}
        await asyncio.sleep(0.5)
        assert len(listener.received) == 1
        assert await runtime.store.raw._files.count_documents({}) == 1
        async with _client(runtime) as http:
            doc = (await http.get("/mail/messages", params={"id": email_id})).json()
            metrics = (await http.get("/metrics")).text
        assert doc["state"] == "done" and len(doc["also"]) == 1
        assert 'switchboard_ingestion_received_total{channel="smtp",mailbox="support@switch' in (
            metrics
        )
        assert "switchboard_ingestion_duplicates_total" in metrics


async def test_one_transaction_to_several_mailboxes_is_one_event_per_mailbox(
    make_service: Callable[..., Any],
) -> None:
    billing = {"address": "billing@switchboard.local", "service": "billing"}
    runtime, listener = make_service(mailboxes=[*MAILBOXES, billing])
    raw = SIMPLE.replace(b"simple-1@", b"two-boxes@")
    email_id = hashlib.sha256(raw).hexdigest()
    async with runtime.app:
        rcpts = [
            "support@switchboard.local",
            "Sales@Switchboard.Local",
            "support+vip@switchboard.local",
        ]
        assert await _send(runtime, raw, rcpts) == {}
        await eventually(lambda: len(listener.received) == 2)
        by_box = {e.mailbox: e for e in listener.received}
        assert set(by_box) == {"support@switchboard.local", "sales@switchboard.local"}
        assert (
            by_box["support@switchboard.local"].service,
            by_box["sales@switchboard.local"].service,
        ) == ("support", "sales")
        # one raw copy, two events with distinct ids; both point at the same stored bytes
        assert {e.email_id for e in listener.received} == {email_id}
        assert len({e.message_id for e in listener.received}) == 2
        assert await runtime.store.raw._files.count_documents({"_id": email_id}) == 1

        # the same transaction again (the sender did not see our 250): nothing new
        assert await _send(runtime, raw, rcpts[:2]) == {}
        # the same bytes uploaded for a third mailbox later: an event for that one only
        async with _client(runtime) as http:
            answer = await http.post(
                "/mail/messages", params={"mailbox": "billing@switchboard.local"}, content=raw
            )
            assert answer.status_code == 202 and answer.json()["duplicate"] is False
            again = await http.post(
                "/mail/messages", params={"mailbox": "billing@switchboard.local"}, content=raw
            )
            assert again.json()["duplicate"] is True
        await eventually(lambda: len(listener.received) == 3)
        await asyncio.sleep(0.5)
        assert [e.mailbox for e in listener.received][2:] == ["billing@switchboard.local"]
        assert len({e.message_id for e in listener.received}) == 3
        doc = await runtime.store.mails.find_one({"_id": email_id})
        assert doc is not None and doc["state"] == "done"
        assert sorted(doc["published_for"]) == [
            "billing@switchboard.local",
            "sales@switchboard.local",
            "support@switchboard.local",
        ]


async def test_unknown_recipient_550_and_too_big_552(make_service: Callable[..., Any]) -> None:
    runtime, listener = make_service(max_message_bytes=4096)
    async with runtime.app:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await _send(runtime, SIMPLE, ["nobody@switchboard.local"])
        [(code, _)] = refused.value.recipients.values()
        assert code == 550
        big = SIMPLE + (b"x" * 80 + b"\r\n") * 60
        # announced too big (MAIL FROM ... SIZE=): refused before the data is sent
        with pytest.raises(smtplib.SMTPSenderRefused) as announced:
            await _send(runtime, big)
        assert announced.value.smtp_code == 552
        # not announced: the data is read and refused
        assert runtime.smtp is not None and runtime.smtp.port
        assert await asyncio.to_thread(_send_without_size, runtime.smtp.port, big) == 552
        # one good recipient among bad ones is delivered; the bad one is named
        partial = await _send(
            runtime, SIMPLE, ["nobody@switchboard.local", "support@switchboard.local"]
        )
        assert list(partial) == ["nobody@switchboard.local"]
        await eventually(lambda: len(listener.received) == 1)


async def test_451_when_the_event_cannot_be_confirmed_then_250_on_retry(
    make_service: Callable[..., Any],
) -> None:
    # Nobody has bound email.received yet: the publish is unroutable, so no confirm -> 451.
    runtime, listener = make_service(listen_received=False)
    async with runtime.app:
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            await _send(runtime, SIMPLE)
        assert deferred.value.smtp_code == 451
        email_id = hashlib.sha256(SIMPLE).hexdigest()
        assert await runtime.store.raw.get(email_id) == SIMPLE  # kept, but not acknowledged
        doc = await runtime.store.mails.find_one({"_id": email_id})
        assert doc is not None and doc["state"] == "pending"
    # threading comes up (its queue is bound); the sender's retry now gets 250 and one event
    runtime, listener = make_service()
    async with runtime.app:
        assert await _send(runtime, SIMPLE) == {}
        [event] = await eventually(lambda: listener.received)
        assert event.email_id == email_id


async def test_a_stored_but_unpublished_mail_is_published_by_the_sweep(
    make_service: Callable[..., Any],
) -> None:
    runtime, listener = make_service(listen_received=False)
    async with runtime.app:
        with pytest.raises(smtplib.SMTPDataError):
            await _send(runtime, SIMPLE)
        # the attempt that stored it "died" long ago
        await runtime.store.mails.update_many({}, {"$set": {"received_at": _long_ago()}})
    runtime, listener = make_service(stale_publish_sweep_seconds=0.3)
    async with runtime.app:
        [event] = await eventually(lambda: listener.received)
        assert event.email_id == hashlib.sha256(SIMPLE).hexdigest()

        async def done() -> bool:
            doc = await runtime.store.mails.find_one({"_id": event.email_id})
            return doc is not None and doc["state"] == "done"

        await eventually(done)  # recorded right after the broker's confirm


def _long_ago() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(minutes=10)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_auth_when_configured(make_service: Callable[..., Any]) -> None:
    runtime, listener = make_service(
        smtp_auth_users={"relay": "s3cret"}, smtp_auth_required=True, smtp_auth_require_tls=False
    )
    async with runtime.app:
        assert runtime.smtp is not None and runtime.smtp.port
        port = runtime.smtp.port

        def without_login() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail("c@example.com", ["support@switchboard.local"], SIMPLE)

        def with_login(password: str) -> Any:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.login("relay", password)
                return client.sendmail("c@example.com", ["support@switchboard.local"], SIMPLE)

        with pytest.raises(smtplib.SMTPSenderRefused):
            await asyncio.to_thread(without_login)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            await asyncio.to_thread(with_login, "wrong")
        assert await asyncio.to_thread(with_login, "s3cret") == {}
        await eventually(lambda: listener.received)


async def test_upload_202_dedupe_and_errors(make_service: Callable[..., Any]) -> None:
    runtime, listener = make_service(max_message_bytes=64 * 1024, service_token="t0ken")
    auth = {"authorization": "Bearer t0ken"}
    async with runtime.app, _client(runtime) as http:
        denied = await http.post("/mail/messages", params={"mailbox": "support@switchboard.local"})
        assert denied.status_code == 401
        first = await http.post(
            "/mail/messages",
            params={"mailbox": "sales@switchboard.local"},
            content=SIMPLE,
            headers=auth,
        )
        assert first.status_code == 202, first.text
        body = first.json()
        assert body == {
            "email_id": hashlib.sha256(SIMPLE).hexdigest(),
            "duplicate": False,
            "event": "email.received",
            "reason": None,
        }
        again = await http.post(
            "/mail/messages",
            params={"mailbox": "sales@switchboard.local"},
            content=SIMPLE,
            headers=auth,
        )
        assert again.status_code == 202 and again.json()["duplicate"] is True
        unknown = await http.post(
            "/mail/messages", params={"mailbox": "x@nowhere.test"}, content=SIMPLE, headers=auth
        )
        assert unknown.status_code == 404
        too_big = await http.post(
            "/mail/messages",
            params={"mailbox": "sales@switchboard.local"},
            content=SIMPLE * 2000,
            headers=auth,
        )
        assert too_big.status_code == 413
        raw = await http.get("/mail/raw", params={"id": body["email_id"]}, headers=auth)
        assert raw.content == SIMPLE
        [event] = await eventually(lambda: listener.received)
        assert (event.channel, event.service) == ("upload", "sales")


async def test_the_whole_corpus_is_stored_and_parsed_or_quarantined(
    make_service: Callable[..., Any],
) -> None:
    runtime, listener = make_service()
    files = sorted(p for p in CORPUS.glob("*.eml"))
    async with runtime.app, _client(runtime) as http:
        answers: dict[str, Any] = {}
        for path in files:
            response = await http.post(
                "/mail/messages",
                params={"mailbox": "support@switchboard.local"},
                content=path.read_bytes(),
            )
            if path.stat().st_size == 0:
                assert response.status_code == 400  # an empty upload is a client error
                continue
            assert response.status_code == 202, (path.name, response.text)
            answers[path.name] = response.json()
        await eventually(lambda: len(listener.received) + len(listener.quarantined) == len(answers))
        for name, answer in answers.items():
            assert await runtime.store.raw.exists(answer["email_id"]), name
        quarantined = {
            a["email_id"]: n for n, a in answers.items() if a["event"] == "email.quarantined"
        }
        assert set(quarantined.values()) == {"21-binary-garbage.eml", "24-no-sender.eml"}
        assert {q.email_id for q in listener.quarantined} == set(quarantined)
        assert all(q.reason for q in listener.quarantined)
        # quarantined mail is on the operators' list
        listed = await eventually(lambda: _quarantine_list(http, len(quarantined)))
        assert {item["email_id"] for item in listed} == set(quarantined)

        by_name = {
            name: next(e for e in listener.received if e.email_id == a["email_id"])
            for name, a in answers.items()
            if a["event"] == "email.received"
        }
        bounce = by_name["08-dsn-bounce.eml"]
        assert bounce.classification == "bounce"
        assert bounce.bounced_message_id == "<sb.out.42@switchboard.local>"
        html_mail = by_name["04-html-only.eml"]
        assert html_mail.html_ref is not None
        html = (await http.get("/mail/blobs", params={"id": html_mail.html_ref})).text
        assert "<script" not in html and "<b>team</b>" in html
        # attachments are stored once and referenced by id
        pdf = next(
            a
            for a in by_name["06-rfc2231-filenames.eml"].attachments
            if a.filename.endswith(".pdf")
        )
        assert pdf.filename == "€ Preisliste Köln.pdf"
        content = (await http.get("/mail/blobs", params={"id": pdf.attachment_id})).content
        assert (
            content.startswith(b"%PDF") and hashlib.sha256(content).hexdigest() == pdf.attachment_id
        )
        assert by_name["22-reply-with-thread-header.eml"].thread_header == "JXA6PDRNQ2SO"
        assert by_name["13-no-message-id-no-date-no-content-type.eml"].message_id_synthesized


async def _quarantine_list(http: httpx.AsyncClient, expected: int) -> list[dict[str, Any]] | None:
    listed = (await http.get("/mail/quarantine")).json()
    return listed if len(listed) == expected else None


async def test_a_long_body_is_not_carried_whole_on_the_bus(
    make_service: Callable[..., Any],
) -> None:
    runtime, listener = make_service(max_event_text_chars=1000)
    text = ("All work and no play makes Jack a dull boy. " * 200).encode()
    raw = SIMPLE.replace(b"Hello, where is it?\r\n", text + b"\r\n")
    async with runtime.app:
        await _send(runtime, raw)
        [event] = await eventually(lambda: listener.received)
        assert event.text_truncated and len(event.text) == 1000
        assert event.text_ref is not None
        full = await runtime.store.blobs.get(event.text_ref)
        assert full.decode().strip() == text.decode().strip()


def test_corpus_is_varied_enough() -> None:
    assert len(list(Path(CORPUS).glob("*.eml"))) >= 25


def _self_signed(where: Path) -> tuple[Path, Path]:
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_starttls_when_a_certificate_is_configured(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    cert, key = await asyncio.to_thread(_self_signed, tmp_path)
    runtime, listener = make_service(
        smtp_tls_cert_file=cert, smtp_tls_key_file=key, smtp_require_starttls=True
    )
    async with runtime.app:
        assert runtime.smtp is not None and runtime.smtp.port
        port = runtime.smtp.port

        def plain() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail("c@example.com", ["support@switchboard.local"], SIMPLE)

        def over_tls() -> Any:
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.starttls(context=context)
                return client.sendmail("c@example.com", ["support@switchboard.local"], SIMPLE)

        with pytest.raises(smtplib.SMTPException):
            await asyncio.to_thread(plain)
        assert await asyncio.to_thread(over_tls) == {}
        await eventually(lambda: listener.received)
