"""Outbound delivery through a relay that wants TLS and AUTH: a real aiosmtpd server with a
throwaway certificate and an authenticator, over STARTTLS (587) and implicit TLS (465)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sb_ingestion_testkit import Relay, self_signed
from testkit import eventually

from switchboard.contracts.mail import EmailOutboundRequested, OutboundAddress

USER, PASSWORD = "switchboard", "relay-secret"


@dataclass
class AuthLog:
    """What the relay saw: every AUTH try, and whether it came over TLS."""

    tries: list[tuple[str, bool, bool]] = field(default_factory=list)  # (user, ok, over TLS)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.tries.append((data.login.decode(), ok, over_tls))
        return AuthResult(success=ok, handled=False, auth_data=data.login.decode() if ok else None)


@dataclass
class TlsRelay:
    sink: Relay
    auth: AuthLog
    port: int
    cert: Path


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    return self_signed(tmp_path)


async def _start(certificate: tuple[Path, Path], *, implicit: bool) -> tuple[TlsRelay, Any]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink, auth = Relay(), AuthLog()

    def protocol() -> SMTP:
        # implicit TLS: aiosmtpd cannot tell the socket is TLS, so it warns about AUTH without
        # STARTTLS; the test checks the transport itself (AuthLog)
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        return SMTP(
            sink,
            hostname="localhost",
            tls_context=None if implicit else context,
            require_starttls=not implicit,
            authenticator=auth,
            auth_required=True,
            auth_require_tls=not implicit,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=context if implicit else None)
    return TlsRelay(sink, auth, server.sockets[0].getsockname()[1], cert), server


@pytest.fixture
async def starttls_relay(certificate: tuple[Path, Path]) -> AsyncIterator[TlsRelay]:
    relay, server = await _start(certificate, implicit=False)
    yield relay
    server.close()


@pytest.fixture
async def implicit_tls_relay(certificate: tuple[Path, Path]) -> AsyncIterator[TlsRelay]:
    relay, server = await _start(certificate, implicit=True)
    yield relay
    server.close()


def _request(outbound_id: str) -> EmailOutboundRequested:
    return EmailOutboundRequested(
        outbound_id=outbound_id,
        sender=OutboundAddress(address="support@switchboard.local"),
        to=[OutboundAddress(address="customer@example.com")],
        subject="Your parcel",
        text="It is on its way.\n",
        internet_message_id=f"<{outbound_id}@switchboard.local>",
    )


async def test_starttls_and_auth_on_the_submission_port(
    make_service: Callable[..., Any], starttls_relay: TlsRelay
) -> None:
    runtime, listener = make_service(
        relay_host="localhost",
        relay_port=starttls_relay.port,
        relay_starttls=True,
        relay_ca_file=starttls_relay.cert,
        relay_username=USER,
        relay_password=PASSWORD,
    )
    async with runtime.app:
        await runtime.bus.publish(_request("out-starttls"))
        [sent] = await eventually(lambda: listener.sent)
        assert sent.outbound_id == "out-starttls" and sent.relay_reply.startswith("250")
        [envelope] = starttls_relay.sink.messages
        assert envelope.rcpt_tos == ["customer@example.com"]
        assert b"It is on its way." in (envelope.original_content or b"")
        # authenticated once, with the right secret, only after the STARTTLS upgrade
        assert starttls_relay.auth.tries == [(USER, True, True)]


async def test_implicit_tls_and_auth(
    make_service: Callable[..., Any], implicit_tls_relay: TlsRelay
) -> None:
    runtime, listener = make_service(
        relay_host="localhost",
        relay_port=implicit_tls_relay.port,
        relay_tls=True,
        relay_ca_file=implicit_tls_relay.cert,
        relay_username=USER,
        relay_password=PASSWORD,
    )
    async with runtime.app:
        await runtime.bus.publish(_request("out-tls"))
        [sent] = await eventually(lambda: listener.sent)
        assert sent.outbound_id == "out-tls"
        assert len(implicit_tls_relay.sink.messages) == 1
        assert implicit_tls_relay.auth.tries == [(USER, True, True)]


async def test_a_wrong_relay_password_is_a_permanent_failure_and_nothing_is_sent(
    make_service: Callable[..., Any], starttls_relay: TlsRelay
) -> None:
    runtime, listener = make_service(
        relay_host="localhost",
        relay_port=starttls_relay.port,
        relay_starttls=True,
        relay_ca_file=starttls_relay.cert,
        relay_username=USER,
        relay_password="wrong",
    )
    async with runtime.app:
        await runtime.bus.publish(_request("out-badauth"))
        [failed] = await eventually(lambda: listener.failed)
        assert failed.smtp_code == 535 and failed.permanent
        assert starttls_relay.sink.messages == [] and listener.sent == []


async def test_an_untrusted_relay_certificate_is_never_sent_to(
    make_service: Callable[..., Any], starttls_relay: TlsRelay
) -> None:
    """Without the relay's CA the certificate does not verify: the mail is held back (retried,
    then a temporary failure), never sent in the clear or to an unverified server."""
    runtime, listener = make_service(
        relay_host="localhost",
        relay_port=starttls_relay.port,
        relay_starttls=True,
        relay_username=USER,
        relay_password=PASSWORD,
        outbound_max_tries=2,
    )
    async with runtime.app:
        await runtime.bus.publish(_request("out-untrusted"))
        [failed] = await eventually(lambda: listener.failed)
        assert not failed.permanent and "certificate" in failed.smtp_reply.lower()
        assert starttls_relay.sink.messages == [] and starttls_relay.auth.tries == []
