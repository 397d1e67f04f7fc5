"""Inbound SMTP (aiosmtpd), run on the service's own event loop.

RCPT: a recipient with no configured mailbox gets 550. DATA: the bytes go through
:class:`Ingestor`; 250 only once they are stored and the event is confirmed, otherwise 451 so the
sending MTA keeps the mail and tries again. Over the size limit: 552 (aiosmtpd, also for a MAIL
``SIZE=`` announcement). Lines longer than RFC 5321's 1,000 octets are accepted up to that
limit. STARTTLS and AUTH (PLAIN/LOGIN) are optional settings.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from switchboard.ingestion import metrics
from switchboard.ingestion.headers import guess_decode
from switchboard.ingestion.ingest import Arrival, Ingestor
from switchboard.ingestion.mailboxes import MailboxDirectory

log = structlog.get_logger("switchboard.ingestion.smtp")
# aiosmtpd logs every command (and peer) at INFO; our own log says what matters.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class _LenientSMTP(SMTP):
    """aiosmtpd refuses a DATA line longer than its ``line_length_limit`` (RFC 5321's 1,000
    octets) with "500 Line too long"; real MTAs pass such mail on (unwrapped HTML, long
    base64), so any line fits that fits the message size limit (the parser flags it)."""

    def __init__(self, handler: Any, *, data_size_limit: int, **options: Any) -> None:
        # read by SMTP.__init__ as the StreamReader's bound: set it first (+ CRLF and a dot)
        self.line_length_limit = data_size_limit + 3
        super().__init__(handler, data_size_limit=data_size_limit, **options)


class InboundHandler:
    def __init__(
        self,
        ingestor: Ingestor,
        mailboxes: MailboxDirectory,
        *,
        timeout: float = 60.0,
        max_recipients: int = 1000,
    ) -> None:
        self._ingestor = ingestor
        self._mailboxes = mailboxes
        self._timeout = timeout
        self._max_recipients = max_recipients

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._max_recipients:
            # RFC 5321 4.5.3.1.10: the client sends the rest in another transaction.
            metrics.REJECTED.labels("smtp", "452").inc()
            return "452 4.5.3 Too many recipients"
        if self._mailboxes.find(address) is None:
            metrics.REJECTED.labels("smtp", "550").inc()
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # One transaction may name several of our mailboxes: stored once, one event for each.
        mailboxes = [m for m in (self._mailboxes.find(r) for r in envelope.rcpt_tos) if m]
        if not mailboxes:  # cannot happen after RCPT, but never accept unowned mail
            return "554 5.5.1 no valid recipients"
        arrival = Arrival(
            channel="smtp",
            mailbox=mailboxes[0],
            also=tuple(mailboxes[1:]),
            envelope_sender=_envelope_text(envelope.mail_from),
            recipients=tuple(_envelope_text(r) or "" for r in envelope.rcpt_tos),
            source=f"smtp:{_peer(session)}",
        )
        try:
            done = await asyncio.wait_for(self._ingestor.ingest(raw, arrival), self._timeout)
        except Exception as exc:
            metrics.REJECTED.labels("smtp", "451").inc()
            log.warning(
                "mail deferred: not stored or not confirmed",
                error=f"{type(exc).__name__}: {exc}",
                peer=_peer(session),
            )
            return "451 4.3.0 Temporary failure storing the message, please try again"
        return f"250 2.0.0 OK {done.email_id[:20]}{' (duplicate)' if done.duplicate else ''}"


def _envelope_text(value: str | None) -> str | None:
    """aiosmtpd keeps 8-bit bytes of MAIL FROM / RCPT TO as lone surrogates (surrogateescape),
    which no database or event can store: decode them (UTF-8, else a best guess) instead."""
    if value is None:
        return None
    return guess_decode(value.encode("utf-8", "surrogateescape"))


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return str(peer)


class Authenticator:
    """PLAIN/LOGIN against configured users (constant-time comparison)."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        given = auth_data.password.decode("utf-8", "replace")
        expected = self._users.get(user)
        ok = expected is not None and hmac.compare_digest(expected.encode(), given.encode())
        if not ok:
            metrics.REJECTED.labels("smtp", "535").inc()
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


class SmtpServer:
    """The listening socket; started and stopped by the runtime's hooks."""

    def __init__(
        self,
        handler: InboundHandler,
        *,
        host: str,
        port: int,
        hostname: str,
        size_limit: int,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth_users: dict[str, str] | None = None,
        auth_required: bool = False,
        auth_require_tls: bool = True,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._hostname = hostname
        self._size_limit = size_limit
        self._tls = tls_context
        self._require_starttls = require_starttls and tls_context is not None
        self._auth_users = auth_users or {}
        self._auth_required = auth_required
        self._auth_require_tls = auth_require_tls
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    def _protocol(self) -> SMTP:
        return _LenientSMTP(
            self._handler,
            data_size_limit=self._size_limit,
            enable_SMTPUTF8=True,
            hostname=self._hostname,
            ident="Switchboard ESMTP",
            tls_context=self._tls,
            require_starttls=self._require_starttls,
            authenticator=Authenticator(self._auth_users) if self._auth_users else None,
            auth_required=self._auth_required,
            auth_require_tls=self._auth_require_tls,
            timeout=300,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SMTP listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
