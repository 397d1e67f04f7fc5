"""Helpers shared by the ingestion tests (imported by name: tests are not a package)."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from switchboard.contracts import ConsumerQueue, Message
from switchboard.contracts.mail import (
    EmailDeliveryFailed,
    EmailQuarantined,
    EmailReceived,
    EmailSent,
)
from switchboard.ingestion.app import IngestionRuntime

CORPUS = Path(__file__).parent / "corpus"
MAILBOXES = [
    {"address": "support@switchboard.local", "service": "support"},
    {"address": "sales@switchboard.local", "service": "sales"},
]


@dataclass
class Listener:
    """What threading would see: every event the mail edge publishes, in order."""

    received: list[EmailReceived] = field(default_factory=list)
    quarantined: list[EmailQuarantined] = field(default_factory=list)
    sent: list[EmailSent] = field(default_factory=list)
    failed: list[EmailDeliveryFailed] = field(default_factory=list)

    def attach(self, runtime: IngestionRuntime, *, received: bool = True) -> None:
        pairs: list[tuple[type[Message], list[Any]]] = [
            (EmailQuarantined, self.quarantined),
            (EmailSent, self.sent),
            (EmailDeliveryFailed, self.failed),
        ]
        if received:
            pairs.append((EmailReceived, self.received))
        for model, sink in pairs:
            queue = ConsumerQueue(f"test.listener.{model.NAME}", (model.NAME,))

            async def handle(message: Message, sink: list[Any] = sink) -> None:
                sink.append(message)

            runtime.bus.consume(queue, model, handle)


@dataclass
class Relay:
    """A real SMTP server as the outbound relay; can be told to answer 4xx or 5xx."""

    messages: list[Envelope] = field(default_factory=list)
    tempfail_next: int = 0
    reject_with: str | None = None
    port: int = 0
    server: asyncio.Server | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.tempfail_next > 0:
            self.tempfail_next -= 1
            return "451 4.3.0 Try again later (greylisted)"
        if self.reject_with:
            return self.reject_with
        self.messages.append(envelope)
        return "250 2.0.0 Ok: queued as RELAY1"


def self_signed(where: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A throwaway certificate (and key) for ``name`` and 127.0.0.1, made with openssl; the
    certificate is its own CA, so a client can verify it fully with it as the bundle."""
    cert, key = where / f"{name}.crt", where / f"{name}.key"
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
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name},IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
