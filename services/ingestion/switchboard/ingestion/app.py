"""The mail edge: SMTP, IMAP and HTTP upload in; SMTP out; raw mail never lost.

Wiring only; read top-down. See docs/ingestion.md for the settings.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from pydantic import Field, SecretStr

from switchboard.contracts.cases import CaseMasked
from switchboard.contracts.mail import EmailOutboundRequested, EmailQuarantined
from switchboard.contracts.queues import ingestion as queues
from switchboard.ingestion.http_api import PATHS, build_http_app
from switchboard.ingestion.imap_poller import ImapPoller
from switchboard.ingestion.ingest import Ingestor
from switchboard.ingestion.mailboxes import Mailbox, load_mailboxes
from switchboard.ingestion.masking import MaskFollower
from switchboard.ingestion.outbound import OutboundSender, RelayConfig, attempt_in_hand
from switchboard.ingestion.smtp_server import InboundHandler, SmtpServer
from switchboard.ingestion.store import MailStore
from switchboard.runtime.service import Runtime, serve
from switchboard.runtime.settings import ServiceSettings


class IngestionSettings(ServiceSettings):
    """``SB_`` environment variables of the mail edge (secrets also from ``SB_<NAME>_FILE``)."""

    mailboxes_file: Path | None = Field(
        default=None, description="JSON file of mailboxes (a list or {'mailboxes': [...]})"
    )
    mailboxes: list[Mailbox] = Field(
        default_factory=list, description="mailboxes inline, as JSON in SB_MAILBOXES"
    )
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    mask_card_numbers: bool = Field(
        default=True,
        description="mask payment card numbers in every mail before it is stored (PCI DSS)",
    )
    max_event_text_chars: int = Field(
        default=32_000, ge=1000, description="longer texts go to the store (text_ref)"
    )

    smtp_enabled: bool = True
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    smtp_hostname: str = "switchboard.local"
    smtp_tls_cert_file: Path | None = None
    smtp_tls_key_file: Path | None = None
    smtp_require_starttls: bool = False
    smtp_auth_users: dict[str, SecretStr] = Field(
        default_factory=dict, description="AUTH PLAIN/LOGIN users, JSON {user: password}"
    )
    smtp_auth_required: bool = False
    smtp_auth_require_tls: bool = True
    smtp_store_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="451 when storing + publishing one mail takes longer; a large mail on a "
        "busy store takes minutes, and senders wait 10 (RFC 5321 4.5.3.2.6)",
    )

    smtp_max_recipients: int = Field(
        default=1000, ge=1, description="RCPT TO per transaction; more are answered 452"
    )

    relay_host: str = "127.0.0.1"
    relay_port: int = Field(default=25, ge=1, le=65535)
    relay_username: str | None = None
    relay_password: SecretStr | None = None
    relay_tls: bool = Field(default=False, description="implicit TLS (port 465)")
    relay_starttls: bool | None = Field(
        default=None, description="None: STARTTLS when offered; true: required; false: never"
    )
    relay_validate_certs: bool = True
    relay_ca_file: Path | None = Field(
        default=None, description="CA bundle to verify the relay with (a private CA)"
    )
    relay_timeout_seconds: float = Field(default=60.0, gt=0)
    relay_envelope_from: str | None = Field(
        default=None, description="MAIL FROM for outbound mail (default: the From address)"
    )
    outbound_max_tries: int = Field(
        default=5, ge=1, description="4xx tries before delivery_failed (at most max_attempts)"
    )

    stale_publish_sweep_seconds: float = Field(default=30.0, gt=0)
    imap_backoff_max_seconds: float = Field(default=60.0, gt=0)
    imap_lease_seconds: float = Field(
        default=30.0, gt=0, description="one replica polls a mailbox; another takes over after"
    )


def _tls_context(settings: IngestionSettings) -> ssl.SSLContext | None:
    if settings.smtp_tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.smtp_tls_cert_file, settings.smtp_tls_key_file)
    return context


class IngestionRuntime(Runtime):
    """The runtime, plus handles on the listeners (tests and the bench read the SMTP port)."""

    smtp: SmtpServer | None = None
    imap_pollers: list[ImapPoller]
    store: MailStore


def build(settings: IngestionSettings) -> IngestionRuntime:
    runtime = IngestionRuntime("ingestion", settings)
    store = runtime.store = MailStore(runtime.db)
    runtime.on_start(store.ensure_indexes)
    mailboxes = load_mailboxes(settings.mailboxes_file, settings.mailboxes)
    ingestor = Ingestor(
        store,
        runtime.bus,
        max_event_text_chars=settings.max_event_text_chars,
        mask_card_numbers=settings.mask_card_numbers,
    )

    relay = RelayConfig(
        host=settings.relay_host,
        port=settings.relay_port,
        username=settings.relay_username,
        password=settings.relay_password.get_secret_value() if settings.relay_password else None,
        use_tls=settings.relay_tls,
        start_tls=settings.relay_starttls,
        validate_certs=settings.relay_validate_certs,
        ca_file=str(settings.relay_ca_file) if settings.relay_ca_file else None,
        timeout=settings.relay_timeout_seconds,
        envelope_from=settings.relay_envelope_from,
        max_tries=min(settings.outbound_max_tries, settings.max_attempts),
    )
    sender = OutboundSender(
        store,
        runtime.bus,
        relay,
        attempt=attempt_in_hand(runtime.broker),
        max_attempts=settings.max_attempts,
    )
    runtime.bus.consume(queues.OUTBOUND, EmailOutboundRequested, sender.on_outbound_requested)

    async def record_quarantine(event: EmailQuarantined) -> None:
        """Keep quarantined mail on the operators' list (GET /mail/quarantine)."""
        await store.record_quarantine(
            {
                "_id": event.email_id,
                "channel": event.channel,
                "mailbox": event.mailbox,
                "service": event.service,
                "received_at": event.received_at,
                "size": event.size,
                "reason": event.reason,
            }
        )

    runtime.bus.consume(queues.QUARANTINE, EmailQuarantined, record_quarantine)
    masking = MaskFollower(store)
    runtime.bus.consume(queues.MASKING, CaseMasked, masking.on_case_masked)

    @runtime.every(settings.stale_publish_sweep_seconds, "publish stored but unpublished mail")
    async def sweep_unpublished() -> None:
        await ingestor.republish_stale()

    http = build_http_app(
        ingestor,
        store,
        mailboxes,
        size_limit=settings.max_message_bytes,
    )
    for path in PATHS:
        runtime.mount(path, http)

    if settings.smtp_enabled:
        smtp = SmtpServer(
            InboundHandler(
                ingestor,
                mailboxes,
                timeout=settings.smtp_store_timeout_seconds,
                max_recipients=settings.smtp_max_recipients,
            ),
            host=settings.smtp_host,
            port=settings.smtp_port,
            hostname=settings.smtp_hostname,
            size_limit=settings.max_message_bytes,
            tls_context=_tls_context(settings),
            require_starttls=settings.smtp_require_starttls,
            auth_users={u: p.get_secret_value() for u, p in settings.smtp_auth_users.items()},
            auth_required=settings.smtp_auth_required,
            auth_require_tls=settings.smtp_auth_require_tls,
        )
        runtime.on_start(smtp.start)
        runtime.on_stop(smtp.stop)
        runtime.smtp = smtp

    pollers = [
        ImapPoller(
            m,
            ingestor,
            store,
            backoff_max=settings.imap_backoff_max_seconds,
            lease_seconds=settings.imap_lease_seconds,
        )
        for m in mailboxes
        if m.imap is not None
    ]
    tasks: list[asyncio.Task[None]] = []

    async def start_pollers() -> None:
        for poller in pollers:
            tasks.append(asyncio.create_task(poller.run(), name=f"imap {poller.mailbox.address}"))

    async def stop_pollers() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()

    runtime.on_start(start_pollers)
    runtime.on_stop(stop_pollers)
    runtime.imap_pollers = pollers
    return runtime


def main() -> None:
    serve(build(IngestionSettings()))
