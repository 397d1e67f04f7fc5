"""Outbound delivery through a real SMTP relay (an aiosmtpd sink), driven over real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import aio_pika
import pytest
from pydantic import ValidationError
from sb_ingestion_testkit import Relay
from testkit import eventually

from switchboard.contracts import topology as names
from switchboard.contracts.mail import AttachmentRef, EmailOutboundRequested, OutboundAddress
from switchboard.contracts.queues import ingestion as queues
from switchboard.ingestion.compose import Unsendable, compose, recipients


def _request(**overrides: Any) -> EmailOutboundRequested:
    values: dict[str, Any] = {
        "outbound_id": "out-1",
        "case_number": 14355,
        "sender": OutboundAddress(name="Support Team", address="support@switchboard.local"),
        "to": [OutboundAddress(name="Jürgen Müller", address="juergen@example.de")],
        "cc": [OutboundAddress(address="boss@example.de")],
        "bcc": [OutboundAddress(address="audit@switchboard.local")],
        "subject": "Re: Rückfrage zu Bestellung 4711 [#JXA6PDRNQ2SO]",
        "text": "Guten Tag,\n\nIhre Bestellung ist unterwegs.\n",
        "html": "<p>Guten Tag,</p><p>Ihre Bestellung ist <b>unterwegs</b>.</p>",
        "internet_message_id": "<sb.out.1@switchboard.local>",
        "in_reply_to": "<CAF1234.plain@example.de>",
        "references": ["<first@example.de>", "<CAF1234.plain@example.de>"],
        **overrides,
    }
    return EmailOutboundRequested(**values)


# ----------------------------------------------------------------- composing (no servers)


def test_compose_alternative_with_attachment_and_threading_headers() -> None:
    msg = compose(_request(), [("Rechnung.pdf", "application/pdf", b"%PDF-1.4", None)])
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Message-ID"] == "<sb.out.1@switchboard.local>"
    assert parsed["In-Reply-To"] == "<CAF1234.plain@example.de>"
    assert parsed["References"] == "<first@example.de> <CAF1234.plain@example.de>"
    assert parsed["Subject"] == "Re: Rückfrage zu Bestellung 4711 [#JXA6PDRNQ2SO]"
    assert "Bcc" not in parsed and parsed["Auto-Submitted"] is None
    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(("plain",))
    assert body is not None and "unterwegs" in body.get_content()
    html = parsed.get_body(("html",))
    assert html is not None and "<b>unterwegs</b>" in html.get_content()
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "Rechnung.pdf"
    assert attachment.get_content() == b"%PDF-1.4"
    assert recipients(_request()) == [
        "juergen@example.de",
        "boss@example.de",
        "audit@switchboard.local",
    ]


def test_automatic_mail_says_so() -> None:
    msg = compose(_request(automatic=True, html=None), [])
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg.get_content_type() == "text/plain"


@pytest.mark.parametrize(
    "field",
    [
        {"subject": "hi\r\nBcc: victim@example.com"},
        {"subject": "hi\nX-Evil: 1"},
        {"in_reply_to": "<a@b>\r\nBcc: x@y.z"},
        {"internet_message_id": "<a@b>\nX: y"},
        {"references": ["<a@b>", "<c@d>\r\nBcc: x@y.z"]},
        {"to": [{"name": "Eve\r\nBcc: x@y.z", "address": "eve@example.com"}]},
        {"to": [{"address": "eve@example.com\r\nBcc: x@y.z"}]},
        {"extra_headers": {"X-Ok": "fine\r\nBcc: x@y.z"}},
        {"extra_headers": {"X-Bad\r\nBcc": "x@y.z"}},
    ],
)
def test_header_injection_is_refused_by_the_contract(field: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"single line|CR or LF|local@domain"):
        _request(**field)


@pytest.mark.parametrize(
    "headers",
    [{"Bad Name": "x"}, {"X-Colon:": "x"}, {"From": "other@example.com"}, {"message-id": "<x@y>"}],
)
def test_bad_or_overriding_extra_headers_are_unsendable(headers: dict[str, str]) -> None:
    with pytest.raises(Unsendable):
        compose(_request(extra_headers=headers), [])


# ----------------------------------------------------------------- delivery (real servers)


async def _publish(runtime: Any, request: EmailOutboundRequested) -> None:
    await runtime.bus.publish(request)


async def test_success_sends_once_and_publishes_email_sent(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    runtime, listener = make_service()
    async with runtime.app:
        pdf = await runtime.store.put_blob(
            b"%PDF-1.4 test", content_type="application/pdf", kind="a"
        )
        request = _request(
            attachments=[
                AttachmentRef(
                    attachment_id=pdf,
                    filename="Rechnung.pdf",
                    content_type="application/pdf",
                    size=13,
                )
            ]
        )
        await _publish(runtime, request)
        [sent] = await eventually(lambda: listener.sent)
        assert sent.outbound_id == "out-1" and sent.case_number == 14355
        assert sent.relay_reply.startswith("250") and sent.causation_id == request.message_id
        [envelope] = relay.messages
        assert envelope.mail_from == "support@switchboard.local"
        assert sorted(envelope.rcpt_tos) == sorted(
            ["juergen@example.de", "boss@example.de", "audit@switchboard.local"]
        )
        delivered = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert delivered["Message-ID"] == "<sb.out.1@switchboard.local>"
        assert "Bcc" not in delivered
        [attachment] = list(delivered.iter_attachments())
        assert attachment.get_content() == b"%PDF-1.4 test"

        # a redelivered request (same message) and a repeated request (same outbound_id,
        # new message id) both answer with the recorded outcome and never send again
        await _publish(runtime, request)
        await _publish(runtime, _request())
        await eventually(lambda: len(listener.sent) >= 2)
        await asyncio.sleep(0.5)
        assert len(relay.messages) == 1
        assert {s.message_id for s in listener.sent} == {s.message_id for s in listener.sent[:2]}


async def test_4xx_is_retried_with_backoff_then_sent_once(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    relay.tempfail_next = 2
    runtime, listener = make_service()
    async with runtime.app:
        await _publish(runtime, _request(outbound_id="out-4xx"))
        [sent] = await eventually(lambda: listener.sent)
        assert sent.outbound_id == "out-4xx"
        assert len(relay.messages) == 1 and relay.tempfail_next == 0
        record = await runtime.store.outbound_record("out-4xx")
        assert record is not None and record["state"] == "sent" and record["tries"] == 3
        assert listener.failed == []


async def test_4xx_until_tries_run_out_is_a_temporary_delivery_failure(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    relay.tempfail_next = 99
    runtime, listener = make_service(outbound_max_tries=3)
    async with runtime.app:
        await _publish(runtime, _request(outbound_id="out-gone"))
        [failed] = await eventually(lambda: listener.failed)
        assert failed.permanent is False and failed.smtp_code == 451
        assert "gave up after 3 tries" in failed.smtp_reply
        assert relay.messages == []


async def test_5xx_publishes_delivery_failed_with_the_reply(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    relay.reject_with = "554 5.7.1 Message rejected as spam"
    runtime, listener = make_service()
    async with runtime.app:
        await _publish(runtime, _request(outbound_id="out-5xx"))
        [failed] = await eventually(lambda: listener.failed)
        assert failed.smtp_code == 554 and failed.permanent
        assert "rejected as spam" in failed.smtp_reply
        assert listener.sent == []
        # every recipient refused at RCPT is a permanent failure too
        relay.reject_with = None
        await _publish(
            runtime,
            _request(
                outbound_id="out-rcpt",
                to=[OutboundAddress(address="nobody@example.com")],
                cc=[],
                bcc=[],
            ),
        )
        await eventually(lambda: len(listener.failed) == 2)
        assert (
            listener.failed[1].smtp_code == 550 and "User unknown" in listener.failed[1].smtp_reply
        )


async def test_a_request_caught_mid_send_is_not_sent_again(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    runtime, listener = make_service()
    async with runtime.app:
        from datetime import UTC, datetime, timedelta

        # a previous process wrote "sending" and died during DATA, long ago
        await runtime.store.outbound.insert_one(
            {
                "_id": "out-crash",
                "state": "sending",
                "tries": 1,
                "sending_since": datetime.now(UTC) - timedelta(hours=1),
            }
        )
        await _publish(runtime, _request(outbound_id="out-crash"))
        [failed] = await eventually(lambda: listener.failed)
        assert not failed.permanent and "unknown" in failed.smtp_reply
        assert relay.messages == []


async def test_an_injected_request_on_the_wire_is_dead_lettered_unsent(
    make_service: Callable[..., Any], relay: Relay, amqp_url: str
) -> None:
    runtime, listener = make_service()
    body = json.loads(_request(outbound_id="out-evil").model_dump_json())
    body["subject"] = "hello\r\nBcc: victim@example.com"
    async with runtime.app:
        await runtime.broker.publish(
            json.dumps(body).encode(),
            exchange=names.EXCHANGE,
            routing_key=EmailOutboundRequested.NAME,
            persist=True,
        )

        async def dead() -> list[Any]:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(queues.OUTBOUND.dead, passive=True)
                message = await queue.get(fail=False, no_ack=True)
                return [message] if message else []

        [message] = await eventually(dead)
        assert "subject" in str(message.headers[names.HEADER_ERROR])
    assert relay.messages == [] and listener.sent == []


async def test_a_non_smtp_error_ends_as_delivery_failed_not_silence(
    make_service: Callable[..., Any], relay: Relay, amqp_url: str
) -> None:
    """A stored attachment whose bytes are damaged fails every try with a storage error (not
    an SMTP reply): after the runtime's last attempt threading still hears the outcome."""
    runtime, listener = make_service(max_attempts=3)
    async with runtime.app:
        blob = await runtime.store.put_blob(
            b"%PDF-1.4 damaged", content_type="application/pdf", kind="a"
        )
        await runtime.store.blobs._chunks.delete_many({"files_id": blob})
        ref = AttachmentRef(
            attachment_id=blob, filename="a.pdf", content_type="application/pdf", size=16
        )
        await _publish(runtime, _request(outbound_id="out-broken", attachments=[ref]))
        [failed] = await eventually(lambda: listener.failed)
        assert failed.outbound_id == "out-broken" and failed.permanent is False
        assert "gave up after 3 attempts" in failed.smtp_reply
        assert "CorruptGridFile" in failed.smtp_reply
        assert relay.messages == [] and listener.sent == []
        record = await runtime.store.outbound_record("out-broken")
        assert record is not None and record["state"] == "failed"

        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.declare_queue(queues.OUTBOUND.dead, passive=True)
            assert await dead.get(fail=False, no_ack=True) is None

        # a redelivered request repeats the recorded outcome, sends nothing
        await _publish(runtime, _request(outbound_id="out-broken", attachments=[ref]))
        await eventually(lambda: len(listener.failed) == 2)
        assert relay.messages == []
