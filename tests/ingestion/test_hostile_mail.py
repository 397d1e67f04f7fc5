"""Hostile mail end to end: a real SMTP client, the ingestion service and the threading service
(in-process, real RabbitMQ and FerretDB), and a queue standing in for routing.

What a customer must be able to count on, whatever the bytes: the mail is answered 250 and
then filed under a case and routed (or, for automatic mail, filed closed), or quarantined with
a reason; never 451 for ever, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import smtplib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from sb_ingestion_testkit import CORPUS, Listener, Relay
from testkit import eventually

from switchboard.contracts import ConsumerQueue, Message
from switchboard.contracts.cases import GetCaseThread
from switchboard.contracts.queues import threading as threading_queues
from switchboard.contracts.routing import RouteRequested
from switchboard.ingestion.app import IngestionRuntime
from switchboard.runtime.service import Runtime
from switchboard.threading import rules
from switchboard.threading.app import ThreadingSettings
from switchboard.threading.app import build as build_threading
from switchboard.threading.handlers import ThreadingHandlers
from switchboard.threading.store import Document, ThreadingStore

THREADING_CONFIG = {
    "services": [
        {
            "name": name,
            "sender": {"name": f"Acme {name}", "address": f"{name}@acme.example"},
            "auto_ack": {"enabled": True, "per_recipient_limit": 1000},
        }
        for name in ("support", "sales")
    ]
}


@dataclass
class MailStack:
    ingestion: IngestionRuntime
    threading: Runtime
    listener: Listener
    relay: Relay
    amqp_url: str
    routes: list[RouteRequested] = field(default_factory=list)

    @property
    def store(self) -> ThreadingStore:
        return self.threading.store  # type: ignore[attr-defined,no-any-return]

    @property
    def handlers(self) -> ThreadingHandlers:
        return self.threading.handlers  # type: ignore[attr-defined,no-any-return]

    async def send(
        self, raw: bytes, rcpt: str = "support@switchboard.local", sender: str = "c@example.com"
    ) -> tuple[int, str]:
        """One SMTP transaction; the server's answer to DATA."""
        assert self.ingestion.smtp is not None and self.ingestion.smtp.port
        port = self.ingestion.smtp.port

        def transaction() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
                client.ehlo("client.example.com")
                client.mail(sender)
                client.rcpt(rcpt)
                code, reply = client.data(raw)
                return code, reply.decode("utf-8", "replace")

        return await asyncio.to_thread(transaction)

    async def send_with_8bit_sender(self, sender: bytes, raw: bytes) -> tuple[int, str]:
        """A transaction whose MAIL FROM carries raw 8-bit bytes (smtplib would refuse them)."""
        assert self.ingestion.smtp is not None and self.ingestion.smtp.port
        port = self.ingestion.smtp.port

        def transaction() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
                client.ehlo("client.example.com")
                client.send(b"MAIL FROM:<" + sender + b">\r\n")
                assert client.getreply()[0] == 250
                client.rcpt("support@switchboard.local")
                code, reply = client.data(raw)
                return code, reply.decode("utf-8", "replace")

        return await asyncio.to_thread(transaction)

    async def filed(self, email_id: str) -> tuple[Document, Document] | None:
        """The email with these raw bytes and its case, once the email is on the case and the
        case was routed (or filed closed, unrouted, as automatic mail is)."""
        return (await self.all_filed([email_id])).get(email_id)

    async def all_filed(self, email_ids: list[str]) -> dict[str, tuple[Document, Document]]:
        """:meth:`filed` for many raw mails at once (two queries)."""
        wanted = {"raw_email_ids": {"$in": email_ids}, "direction": "inbound"}
        emails = [doc async for doc in self.store.emails.find(wanted)]
        numbers = list({doc["case_number"] for doc in emails})
        cases = {c["_id"]: c async for c in self.store.cases.find({"_id": {"$in": numbers}})}
        found: dict[str, tuple[Document, Document]] = {}
        for doc in emails:
            case = cases.get(doc["case_number"])
            if case is None or doc["_id"] not in case.get("email_keys", []):
                continue
            if case.get("filed_unrouted") or self.routed(case["_id"]):
                for email_id in doc["raw_email_ids"]:
                    found[email_id] = (doc, case)
        return found

    def routed(self, case_number: int) -> bool:
        return any(
            (rules.parse_interaction_id(r.interaction_id) or (0, 0))[0] == case_number
            for r in self.routes
        )

    async def dead_letters(self) -> dict[str, int]:
        """Messages in every dead-letter queue of threading's and ingestion's consumers."""
        names = [f"{q.name}.dead" for q in threading_queues.ALL]
        connection = await aio_pika.connect(self.amqp_url)
        counts: dict[str, int] = {}
        try:
            for name in names:
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    continue  # never declared: nothing was dead-lettered there
                counts[name] = queue.declaration_result.message_count or 0
        finally:
            await connection.close()
        return counts

    async def nothing_dead_lettered(self) -> bool:
        counts = await self.dead_letters()
        assert counts, "threading declared no queues"
        return all(count == 0 for count in counts.values())

    async def thread(self, case_number: int) -> dict[str, Any]:
        query = GetCaseThread(case_number=case_number, acting_role="supervisor")
        return await self.handlers.on_get_thread(query)


@pytest.fixture
async def mail_stack(
    make_service: Callable[..., Any],
    make_settings: Callable[..., Any],
    relay: Relay,
    amqp_url: str,
    tmp_path: Path,
) -> AsyncIterator[MailStack]:
    config = tmp_path / "threading.json"
    config.write_text(json.dumps(THREADING_CONFIG), encoding="utf-8")
    threading = build_threading(
        make_settings(
            ThreadingSettings,
            thread_key="test-thread-key-for-hostile-mail",
            threading_config_file=config,
            outbox_sweep_seconds=1.0,
            max_attempts=3,
            log_level="WARNING",
            log_format="json",
        )
    )
    ingestion, listener = make_service(listen_received=False, max_message_bytes=96 * 1024 * 1024)
    stack = MailStack(ingestion, threading, listener, relay, amqp_url)

    async def route(message: Message) -> None:
        assert isinstance(message, RouteRequested)
        stack.routes.append(message)

    routing = ConsumerQueue("test.routing.stand_in", (RouteRequested.NAME,))
    ingestion.bus.consume(routing, RouteRequested, route)
    async with threading.app, ingestion.app:  # threading first: its queue takes the mail
        yield stack


def _auto_answers(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "switchboard_threading_auto_answers_total", {"kind": "auto_ack", "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.timeout(900)
async def test_every_corpus_mail_is_answered_250_then_filed_and_routed_or_quarantined(
    mail_stack: MailStack,
) -> None:
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) >= 45
    answers: dict[str, tuple[int, str]] = {}
    for path in files:
        answers[path.name] = await mail_stack.send(path.read_bytes())
    assert {n: a for n, a in answers.items() if a[0] != 250} == {}

    # (no sender anywhere in 24: over SMTP the envelope's MAIL FROM is the sender)
    quarantined = {"21-binary-garbage.eml", "27-empty.eml"}
    ids = {p.name: sha(as_sent(p.read_bytes())) for p in files}

    filed: dict[str, tuple[Document, Document]] = {}
    unsettled = set(ids)

    async def all_settled() -> bool:
        held = {q.email_id for q in mail_stack.listener.quarantined}
        found = await mail_stack.all_filed([ids[n] for n in unsettled if n not in quarantined])
        for name in sorted(unsettled):
            if ids[name] in held or ids[name] in found:
                if ids[name] in found:
                    filed[name] = found[ids[name]]
                unsettled.discard(name)
        return not unsettled

    try:
        await eventually(all_settled, seconds=300)
    except AssertionError:
        raise AssertionError(f"not filed and routed nor quarantined: {sorted(unsettled)}") from None
    assert all(q.reason for q in mail_stack.listener.quarantined)
    # two different mails under one Message-ID stay two emails, each with its own text
    first, second = filed["31-reused-message-id-a.eml"][0], filed["31-reused-message-id-b.eml"][0]
    assert first["_id"] != second["_id"] and second["message_id_reused"]
    # automatic mail is filed closed, never routed; a person's mail is routed
    assert filed["41-bounce-of-a-bounce.eml"][1]["filed_unrouted"] == "bounce"
    assert mail_stack.routed(filed["37-calendar-invite.eml"][1]["_id"])
    assert await mail_stack.nothing_dead_lettered()


async def test_an_undecodable_encoded_word_is_filed_with_its_defect_shown(
    mail_stack: MailStack,
) -> None:
    raw = (CORPUS / "28-invalid-encoded-word-iso-2022-jp.eml").read_bytes()
    code, reply = await mail_stack.send(raw)
    assert code == 250, reply  # was 451 for ever: the event could not be serialised
    email, case = await eventually(lambda: mail_stack.filed(hashlib.sha256(raw).hexdigest()))
    assert mail_stack.routed(case["_id"])
    [view] = (await mail_stack.thread(case["_id"]))["emails"][:1]
    assert view["from"]["name"].endswith("山田") and "\ufffd" in view["from"]["name"]
    assert view["subject"].endswith("注文について")
    assert any(d.startswith("encoded_word_invalid: From") for d in view["defects"])
    assert any(d.startswith("encoded_word_invalid: Subject") for d in view["defects"])
    # the raw bytes are kept as they came
    assert await mail_stack.ingestion.store.raw.get(email["raw_email_ids"][0]) == raw


async def test_an_8bit_envelope_sender_is_stored_and_filed(mail_stack: MailStack) -> None:
    raw = b"To: support@switchboard.local\r\nSubject: no From header\r\n\r\nHallo\r\n"
    code, reply = await mail_stack.send_with_8bit_sender(b"j\xfcrgen@example.de", raw)
    assert code == 250, reply  # was 451 for ever: the envelope could not be stored
    email, case = await eventually(lambda: mail_stack.filed(sha(raw)))
    assert email["from"]["address"] == "jürgen@example.de"
    assert mail_stack.routed(case["_id"])


async def test_a_line_far_longer_than_1000_characters_is_accepted_and_flagged(
    mail_stack: MailStack,
) -> None:
    line = "".join(f"<td>cell {i}</td>" for i in range(20_000))  # ~300,000 characters
    raw = (
        "From: Report Bot <bot@example.com>\r\nTo: support@switchboard.local\r\n"
        "Subject: Nightly report\r\nMessage-ID: <long-line-2@example.com>\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        f"<table><tr>{line}</tr></table>\r\n"
    ).encode()
    code, reply = await mail_stack.send(raw)
    assert code == 250, reply  # was "500 Line too long"
    email, _case = await eventually(lambda: mail_stack.filed(hashlib.sha256(raw).hexdigest()))
    assert any(d.startswith("line_too_long") for d in email["defects"])
    assert await mail_stack.ingestion.store.raw.get(email["raw_email_ids"][0]) == raw
    assert email["text"].startswith("cell 0")


async def test_a_sender_that_cannot_be_answered_is_filed_and_routed_without_an_answer(
    mail_stack: MailStack,
) -> None:
    skipped_before = _auto_answers("unaddressable")
    names = ["33-unaddressable-sender-with-spaces.eml", "34-broken-from-millions-lottery.eml"]
    raws = [(CORPUS / name).read_bytes() for name in names]
    for raw in raws:
        code, reply = await mail_stack.send(raw)
        assert code == 250, reply
    for raw in raws:
        email, case = await eventually(lambda raw=raw: mail_stack.filed(sha(raw)), seconds=60)
        assert mail_stack.routed(case["_id"]) and case["status"] == "open"
        assert email["intake"]["auto_answer"] is None
        assert "cannot be addressed" in email["intake"]["auto_answer_skipped"]
        assert [h["what"] for h in case["history"]] == ["created", "auto_answer_skipped"]
        view = await mail_stack.thread(case["_id"])
        assert "cannot be addressed" in view["emails"][0]["intake"]["auto_answer_skipped"]
        assert len(view["emails"]) == 1  # no answer was stored as sent
    assert _auto_answers("unaddressable") == skipped_before + 2
    # an ordinary sender still gets the acknowledgement (so the skip above is the address's)
    plain = (
        b"From: Ann <ann@example.com>\r\nTo: support@switchboard.local\r\n"
        b"Subject: Hello\r\nMessage-ID: <plain-ack@example.com>\r\n\r\nHi\r\n"
    )
    assert (await mail_stack.send(plain))[0] == 250
    await eventually(lambda: [m for m in mail_stack.relay.messages if "ann@" in m.rcpt_tos[0]])
    assert await mail_stack.nothing_dead_lettered()


async def test_two_mails_under_one_message_id_are_two_emails_but_copies_are_one(
    mail_stack: MailStack,
) -> None:
    first = (CORPUS / "31-reused-message-id-a.eml").read_bytes()
    # the same mail through another relay: other bytes, same content
    copy = b"Received: from mx2.shop.example by mx.switchboard.local; 23 Nov 2026\r\n" + first
    other = (CORPUS / "31-reused-message-id-b.eml").read_bytes()
    for raw in (first, copy, other):
        code, reply = await mail_stack.send(raw)
        assert code == 250, reply
    one, case_one = await eventually(lambda: mail_stack.filed(sha(first)))
    two, case_two = await eventually(lambda: mail_stack.filed(sha(other)))
    await eventually(lambda: _copies(mail_stack, one["_id"], 2))
    inbound = await mail_stack.store.emails.count_documents(
        {"message_id": "<notification@shop.example>", "direction": "inbound"}
    )
    assert inbound == 2  # the copy joined the first; the other mail is an email of its own
    assert one["_id"] != two["_id"] and case_one["_id"] != case_two["_id"]
    assert not one["message_id_reused"] and two["message_id_reused"]
    assert mail_stack.routed(case_two["_id"])
    view = await mail_stack.thread(case_two["_id"])
    [shown] = view["emails"][:1]
    assert "Order 2002 was cancelled" in shown["text"] and shown["message_id_reused"]
    assert any(d.startswith("message_id_reused") for d in shown["defects"])


@pytest.mark.timeout(900)
async def test_a_50_mb_attachment_and_10000_recipients_are_filed(mail_stack: MailStack) -> None:
    attachment = hashlib.sha256(b"seed").digest() * (50 * 1024 * 1024 // 32)  # 50 MiB
    recipients = ", ".join(f"person{i}@example.com" for i in range(10_000))
    big = _mail_with_attachment(attachment, "Scan of the contract")
    crowd = (
        "From: Newsletter <news@example.com>\r\nTo: support@switchboard.local\r\n"
        f"Cc: {recipients}\r\nSubject: To all of you\r\nMessage-ID: <crowd@example.com>\r\n"
        "\r\nHello everyone.\r\n"
    ).encode()
    for raw in (big, crowd):
        code, reply = await mail_stack.send(raw)
        assert code == 250, reply
    email, _ = await eventually(lambda: mail_stack.filed(sha(big)), seconds=300)
    [stored] = [a for a in email["attachments"] if a["filename"] == "contract.bin"]
    assert stored["size"] == len(attachment)
    assert await mail_stack.ingestion.store.blobs.get(stored["attachment_id"]) == attachment
    email, _case = await eventually(lambda: mail_stack.filed(sha(crowd)), seconds=120)
    assert len(email["cc"]) == 500 and any(
        d.startswith("addresses_truncated") for d in email["defects"]
    )


def _mail_with_attachment(data: bytes, subject: str) -> bytes:
    import base64

    encoded = base64.encodebytes(data)
    return (
        (
            "From: Scanner <scanner@example.com>\r\nTo: support@switchboard.local\r\n"
            f"Subject: {subject}\r\nMessage-ID: <big-attachment@example.com>\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nThe signed contract.\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\n"
            'Content-Disposition: attachment; filename="contract.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + encoded.replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )


async def _copies(stack: MailStack, key: str, count: int) -> bool:
    doc = await stack.store.get_email(key)
    return doc is not None and len(doc.get("raw_email_ids", [])) == count


def as_sent(raw: bytes) -> bytes:
    """The bytes the server stores for a file sent with smtplib: dot-stuffed by the client
    (after any line break), a final CRLF added, one leading dot taken off each CRLF line."""
    stuffed = re.sub(rb"(?m)^\.", b"..", raw)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    lines = stuffed.split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
