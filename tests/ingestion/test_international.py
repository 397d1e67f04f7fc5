"""Outbound mail to international addresses (RFC 6531 SMTPUTF8, IDNA domains), through real
aiosmtpd relays: one that offers SMTPUTF8 and the default one, which does not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from email import message_from_string, policy
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from sb_ingestion_testkit import Relay
from testkit import eventually

from switchboard.contracts.mail import EmailOutboundRequested, OutboundAddress
from switchboard.ingestion.compose import Unsendable, compose, envelope_address


def _request(outbound_id: str, to: str, name: str = "") -> EmailOutboundRequested:
    return EmailOutboundRequested(
        outbound_id=outbound_id,
        sender=OutboundAddress(name="Support", address="support@switchboard.local"),
        to=[OutboundAddress(name=name, address=to)],
        subject="Ihre Anfrage",
        text="Grüße\n",
        internet_message_id=f"<{outbound_id}@switchboard.local>",
    )


@pytest.fixture
async def utf8_relay() -> AsyncIterator[Relay]:
    sink = Relay()
    loop = asyncio.get_running_loop()
    sink.server = await loop.create_server(lambda: SMTP(sink, enable_SMTPUTF8=True), "127.0.0.1", 0)
    sink.port = sink.server.sockets[0].getsockname()[1]
    yield sink
    sink.server.close()


def test_idna_domains_are_written_in_ascii_and_bad_ones_refused() -> None:
    msg = compose(_request("o", "info@bücher.example", "Bücherstube"), [])
    assert "info@xn--bcher-kva.example" in str(msg["To"])
    assert envelope_address("info@bücher.example", utf8=False) == "info@xn--bcher-kva.example"
    with pytest.raises(Unsendable, match="SMTPUTF8"):
        envelope_address("jürgen@example.de", utf8=False)
    with pytest.raises(Unsendable, match="international domain"):
        compose(_request("o", "x@bad\u200d.example"), [])


async def test_a_unicode_local_part_goes_out_with_smtputf8(
    make_service: Callable[..., Any], utf8_relay: Relay
) -> None:
    runtime, listener = make_service(relay_port=utf8_relay.port)
    async with runtime.app:
        await runtime.bus.publish(_request("out-utf8", "jürgen@müller.example", "Jürgen Müller"))
        [sent] = await eventually(lambda: listener.sent)
        assert sent.outbound_id == "out-utf8"
        [envelope] = utf8_relay.messages
        assert "SMTPUTF8" in envelope.mail_options
        assert envelope.rcpt_tos == ["jürgen@müller.example"]
        # UTF-8 in the header section itself (RFC 6532), not RFC 2047 words
        text = (envelope.original_content or b"").decode("utf-8")
        assert "To: Jürgen Müller <jürgen@müller.example>" in text
        delivered = message_from_string(text, policy=policy.default)
        [to] = delivered["To"].addresses
        assert (to.display_name, to.addr_spec) == ("Jürgen Müller", "jürgen@müller.example")


async def test_an_idn_domain_needs_no_smtputf8(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    runtime, listener = make_service()
    async with runtime.app:
        await runtime.bus.publish(_request("out-idn", "info@bücher.example"))
        await eventually(lambda: listener.sent)
        [envelope] = relay.messages
        assert envelope.rcpt_tos == ["info@xn--bcher-kva.example"]
        assert "SMTPUTF8" not in envelope.mail_options
        headers = (envelope.original_content or b"").split(b"\r\n\r\n", 1)[0]
        assert headers.isascii() and b"To: info@xn--bcher-kva.example" in headers


async def test_without_smtputf8_at_the_relay_a_unicode_local_part_fails_clearly(
    make_service: Callable[..., Any], relay: Relay
) -> None:
    runtime, listener = make_service()
    async with runtime.app:
        await runtime.bus.publish(_request("out-noutf8", "jürgen@example.de"))
        [failed] = await eventually(lambda: listener.failed)
        assert failed.permanent and "SMTPUTF8" in failed.smtp_reply
        assert relay.messages == [] and listener.sent == []
