"""One path for every inbound channel: store the raw bytes, parse, publish, remember.

``Ingestor.ingest`` returns only after the raw bytes are in GridFS *and* the event was confirmed
by the broker; any failure raises, and the channel answers "try again" (SMTP 451, HTTP 503, IMAP
leaves the message untouched). Every step is idempotent, keyed by the SHA-256 of the bytes:

* the raw bytes and every blob are written once (GridFS ``_id`` = hash);
* the event's message id is derived from the hash (and the mailbox), so a second publish of the
  same mail (a retry after a lost confirm, or two channels at once) is the *same* message for
  every consumer;
* one mail addressed to several of our mailboxes (one SMTP transaction, or the same bytes
  arriving for another mailbox later) is stored once and gives one ``email.received`` per
  mailbox: each mailbox belongs to a service that must see it. The mail's document lists the
  mailboxes it is for (``targets``) and those already published (``published_for``);
* once published for a mailbox, a later copy for that mailbox is only counted as a duplicate.

The mail's document (:class:`~switchboard.ingestion.mail.Mail`) is written once, after its
events were confirmed: one write per mail. A publish that fails leaves its events in the mail's
outbox (the kernel's :class:`~switchboard.runtime.storage.Outbox`) and the sender is told to
try again; the sender's retry or the periodic sweep publishes them. A process killed between
storing the raw bytes and that write has answered nothing yet: the sender still holds the mail.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from switchboard.contracts import Message
from switchboard.contracts.mail import (
    Address,
    AttachmentRef,
    EmailQuarantined,
    EmailReceived,
)
from switchboard.ingestion import metrics
from switchboard.ingestion.mail import Mail, Target, pending_event
from switchboard.ingestion.mailboxes import Mailbox
from switchboard.ingestion.parsing import ParsedMail, Unparseable, parse
from switchboard.ingestion.redaction import redact_card_numbers
from switchboard.ingestion.store import Document, MailStore, sha256_hex
from switchboard.runtime.bus import Bus

log = structlog.get_logger("switchboard.ingestion")

EVENT_NAMESPACE = uuid.UUID("6f1c7a52-0c1e-4c55-9d0f-3a8b61a2f0e1")
PARSE_IN_THREAD_BYTES = 256 * 1024
EVENTS: dict[str, type[EmailReceived] | type[EmailQuarantined]] = {
    EmailReceived.NAME: EmailReceived,
    EmailQuarantined.NAME: EmailQuarantined,
}


async def publish_taken(bus: Bus, message: Message) -> None:
    """Publish, confirmed, and fail unless some queue took the message: answering 250 for mail
    nobody will ever see would lose it, so with no consumer queue yet the sender must retry."""
    await bus.publish(message, must_be_routed=True)


def event_id(email_id: str, kind: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{kind}:{email_id}")


def received_event_id(email_id: str, mailbox: str, first_mailbox: str) -> uuid.UUID:
    """The ``email.received`` id of one mail for one mailbox: the first mailbox keeps the id
    mails always had; every further mailbox gets its own, equally deterministic."""
    if mailbox == first_mailbox:
        return event_id(email_id, "received")
    return event_id(email_id, f"received/{mailbox}")


@dataclass(frozen=True)
class Arrival:
    """How one copy of a mail reached us."""

    channel: str
    mailbox: Mailbox
    envelope_sender: str | None = None
    recipients: tuple[str, ...] = ()
    source: str = ""  # e.g. "imap:support@x/INBOX/uid 42" or the SMTP peer
    also: tuple[Mailbox, ...] = ()  # further mailboxes of ours the same copy is addressed to

    @property
    def mailboxes(self) -> list[Mailbox]:
        """Every mailbox this copy is for, first recipient first, each once."""
        seen: dict[str, Mailbox] = {}
        for mailbox in (self.mailbox, *self.also):
            seen.setdefault(mailbox.address, mailbox)
        return list(seen.values())


def _source(arrival: Arrival) -> Document:
    return {"channel": arrival.channel, "source": arrival.source}


@dataclass(frozen=True)
class Ingested:
    email_id: str
    duplicate: bool
    event: str  # "email.received" or "email.quarantined"
    reason: str | None = None


class Ingestor:
    def __init__(
        self,
        store: MailStore,
        bus: Bus,
        *,
        max_event_text_chars: int = 32_000,
        mask_card_numbers: bool = True,
    ) -> None:
        self._store = store
        self._bus = bus
        self._max_text = max_event_text_chars
        self._mask_cards = mask_card_numbers
        self.outbox = store.outbox(self._publish_pending)

    async def ingest(self, raw: bytes, arrival: Arrival) -> Ingested:
        started = time.perf_counter()
        cards = 0
        if self._mask_cards:
            # before anything is stored: the same bytes mask the same way, so the id holds
            raw, cards = redact_card_numbers(raw)
        email_id = sha256_hex(raw)
        # the raw bytes' write and the read of the mail's document do not wait for each other
        _, mail = await asyncio.gather(
            self._store.put_raw(email_id, raw), self._store.records.get(email_id)
        )
        wanted = [Target(mailbox=m.address, service=m.service) for m in arrival.mailboxes]
        if mail is None:
            mail = Mail(
                id=email_id,
                size=len(raw),
                channel=arrival.channel,
                mailbox=arrival.mailbox.address,
                service=arrival.mailbox.service,
                targets=[],
                received_at=datetime.now(UTC),
                envelope_sender=arrival.envelope_sender,
                recipients=list(arrival.recipients),
                source=arrival.source,
                cards_masked=cards,
            )
            result = await self._announce(raw, mail, wanted, first=True)
        elif not mail.missing(wanted):
            metrics.DUPLICATES.labels(arrival.channel).inc()
            await self._store.change_mail(email_id, lambda m: m.seen_again(_source(arrival)))
            log.info("duplicate mail: already stored and published", email_id=email_id)
            return Ingested(email_id, True, mail.event or "", mail.reason)
        else:
            if mail.outbox:  # a failed attempt left them: this retry publishes them now
                await self.outbox.flush(email_id, mail.unsent())
            new = mail.unannounced(wanted)
            result = await self._announce(raw, mail, new, first=False, also=_source(arrival))
            if not new:
                result = Ingested(email_id, False, mail.event or "", mail.reason)
        for target in mail.missing(wanted):
            metrics.RECEIVED.labels(arrival.channel, target.mailbox).inc()
        metrics.RECEIVED_BYTES.labels(arrival.channel).inc(len(raw))
        metrics.INGEST_SECONDS.labels(arrival.channel).observe(time.perf_counter() - started)
        return result

    async def republish_stale(self) -> int:
        """Publish the events a failed attempt left in the mails' outbox; how many mails."""
        return await self.outbox.sweep()

    async def _publish_pending(self, message: Document) -> None:
        event = EVENTS[message["name"]].model_validate(message["body"])
        await publish_taken(self._bus, event)

    async def _announce(
        self,
        raw: bytes,
        mail: Mail,
        targets: list[Target],
        *,
        first: bool,
        also: Document | None = None,
    ) -> Ingested:
        """Publish the events of ``mail`` for ``targets``, then store the mail with one write
        (the events a failed publish left in its outbox); a failed publish raises after that."""
        if not targets:
            return Ingested(mail.id, False, "")
        events, facts = await self._events(raw, mail, targets)
        sent: list[Document] = []
        failure: Exception | None = None
        for message in events:
            try:
                await self._publish_pending(message)
            except Exception as exc:  # kept in the outbox; the caller answers "try again"
                failure = exc
                break
            sent.append(message)
        unsent = events[len(sent) :]

        def settle(stored: Mail) -> Mail:
            settled = stored.model_copy(update=facts).after_publishing(targets, sent, unsent)
            return settled if also is None else settled.seen_again(also)

        if not first or not await self._store.add_mail(settle(mail)):
            # stored before (or by another arrival of the same bytes just now)
            await self._store.change_mail(mail.id, settle)
        if failure is not None:
            raise failure
        event, reason = facts["event"], facts.get("reason")
        if event == EmailQuarantined.NAME:
            metrics.QUARANTINED.labels(mail.channel).inc()
            log.warning("mail quarantined", email_id=mail.id, reason=reason)
        else:
            for defect in facts["defects"]:
                metrics.DEFECTS.labels(defect.split(":", 1)[0]).inc()
            log.info(
                "mail received",
                email_id=mail.id,
                mailboxes=[t.mailbox for t in targets],
                classification=facts["classification"],
                defects=len(facts["defects"]),
            )
        return Ingested(mail.id, False, event, reason)

    async def _events(
        self, raw: bytes, mail: Mail, targets: list[Target]
    ) -> tuple[list[Document], Document]:
        """The events announcing ``mail`` to ``targets`` (as outbox entries), and the facts the
        parse found, to keep on the mail."""
        received_at = mail.received_at
        sender = mail.envelope_sender
        if len(raw) > PARSE_IN_THREAD_BYTES:
            parsed = await asyncio.to_thread(
                parse, raw, received_at=received_at, envelope_sender=sender
            )
        else:
            parsed = parse(raw, received_at=received_at, envelope_sender=sender)
        common: dict[str, Any] = {
            "email_id": mail.id,
            "channel": mail.channel,
            "mailbox": mail.mailbox,
            "service": mail.service,
            "received_at": received_at,
            "size": mail.size,
        }
        now = datetime.now(UTC)
        if isinstance(parsed, Unparseable):
            quarantined = EmailQuarantined(
                message_id=event_id(mail.id, "quarantined"), reason=parsed.reason, **common
            )
            # Not a mail: one event for the operators, whatever mailboxes it was sent to.
            body = quarantined.model_dump(mode="json")
            entry = pending_event(EmailQuarantined.NAME, [t.mailbox for t in targets], body)
            facts = {"event": EmailQuarantined.NAME, "reason": parsed.reason, "published_at": now}
            return [entry], facts
        base = await self._received_event(parsed, common)
        if mail.cards_masked:
            base = base.model_copy(update={"cards_masked": mail.cards_masked})
        facts = {
            "event": EmailReceived.NAME,
            "internet_message_id": parsed.internet_message_id,
            "classification": parsed.classification,
            "defects": parsed.defects,
            "html_ref": base.html_ref,
            "text_ref": base.text_ref,
            "published_at": now,
        }
        entries = []
        for target in targets:
            event = base.model_copy(
                update={
                    "message_id": received_event_id(mail.id, target.mailbox, mail.mailbox),
                    "mailbox": target.mailbox,
                    "service": target.service,
                }
            )
            body = event.model_dump(mode="json")
            entries.append(pending_event(EmailReceived.NAME, [target.mailbox], body))
        return entries, facts

    async def _received_event(self, parsed: ParsedMail, common: dict[str, Any]) -> EmailReceived:
        attachments = []
        for part in parsed.attachments:
            blob_id = await self._store.put_blob(
                part.content, content_type=part.content_type, kind="attachment"
            )
            attachments.append(
                AttachmentRef(
                    attachment_id=blob_id,
                    filename=part.filename,
                    content_type=part.content_type,
                    size=len(part.content),
                    content_id=part.content_id,
                    inline=part.inline,
                )
            )
        html_ref = None
        if parsed.html:
            html_ref = await self._store.put_blob(
                parsed.html.encode("utf-8"), content_type="text/html", kind="html"
            )
        text = parsed.text
        truncated = len(text) > self._max_text
        text_ref = None
        if truncated:
            text_ref = await self._store.put_blob(
                text.encode("utf-8"), content_type="text/plain", kind="text"
            )
            text = text[: self._max_text]

        def address(a: Any) -> Address:
            return Address(name=a.name, address=a.address)

        return EmailReceived(
            message_id=event_id(common["email_id"], "received"),
            internet_message_id=parsed.internet_message_id,
            message_id_synthesized=parsed.message_id_synthesized,
            in_reply_to=parsed.in_reply_to,
            references=parsed.references,
            sender=address(parsed.sender),
            to=[address(a) for a in parsed.to],
            cc=[address(a) for a in parsed.cc],
            reply_to=[address(a) for a in parsed.reply_to],
            subject=parsed.subject,
            sent_at=parsed.sent_at,
            sent_at_flagged=parsed.sent_at_flagged,
            text=text,
            text_truncated=truncated,
            text_ref=text_ref,
            html_ref=html_ref,
            attachments=attachments,
            thread_header=parsed.thread_header,
            classification=parsed.classification,
            bounced_message_id=parsed.bounced_message_id,
            defects=parsed.defects,
            **common,
        )
