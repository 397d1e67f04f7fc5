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

A mail stored but never published (process killed in between) is published by a periodic sweep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from switchboard.ingestion.mailboxes import Mailbox
from switchboard.ingestion.parsing import ParsedMail, Unparseable, parse
from switchboard.ingestion.redaction import redact_card_numbers
from switchboard.ingestion.store import Document, MailStore, sha256_hex
from switchboard.runtime.bus import Bus

log = structlog.get_logger("switchboard.ingestion")

EVENT_NAMESPACE = uuid.UUID("6f1c7a52-0c1e-4c55-9d0f-3a8b61a2f0e1")
PARSE_IN_THREAD_BYTES = 256 * 1024


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


def targets_of(doc: Document) -> list[Document]:
    """The mailboxes (with their service) a stored mail is for."""
    targets = doc.get("targets")
    if targets:
        return list(targets)
    return [{"mailbox": doc["mailbox"], "service": doc["service"]}]


def published_for(doc: Document) -> set[str]:
    """The mailboxes whose event is confirmed (documents older than ``published_for`` count
    their one mailbox once done)."""
    if "published_for" in doc:
        return set(doc["published_for"])
    return {str(doc["mailbox"])} if doc.get("state") == "done" else set()


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

    async def ingest(self, raw: bytes, arrival: Arrival) -> Ingested:
        started = time.perf_counter()
        cards = 0
        if self._mask_cards:
            # before anything is stored: the same bytes mask the same way, so the id holds
            raw, cards = redact_card_numbers(raw)
        email_id = sha256_hex(raw)
        await self._store.put_raw(email_id, raw)
        wanted = [{"mailbox": m.address, "service": m.service} for m in arrival.mailboxes]
        doc = await self._store.arrive(
            email_id,
            {
                "size": len(raw),
                "channel": arrival.channel,
                "mailbox": arrival.mailbox.address,
                "service": arrival.mailbox.service,
                "targets": wanted,
                "received_at": datetime.now(UTC),
                "envelope_sender": arrival.envelope_sender,
                "recipients": list(arrival.recipients),
                "source": arrival.source,
                "cards_masked": cards,
            },
        )
        done = published_for(doc)
        missing = [t for t in wanted if t["mailbox"] not in done]
        if not missing:
            metrics.DUPLICATES.labels(arrival.channel).inc()
            await self._store.note_source(
                email_id, {"channel": arrival.channel, "source": arrival.source}
            )
            log.info("duplicate mail: already stored and published", email_id=email_id)
            return Ingested(email_id, True, str(doc.get("event", "")), doc.get("reason"))
        known = {t["mailbox"] for t in targets_of(doc)}
        if any(t["mailbox"] not in known for t in missing):
            # The same bytes, now also for another mailbox: record it durably first, so the
            # sweep publishes it should this attempt die.
            doc = await self._store.add_targets(
                email_id,
                [*targets_of(doc), *missing],
                already=sorted(done),
                grace=timedelta(seconds=120),
            )
            await self._store.note_source(
                email_id, {"channel": arrival.channel, "source": arrival.source}
            )
        result = await self._publish(raw, doc)
        for target in missing:
            metrics.RECEIVED.labels(arrival.channel, target["mailbox"]).inc()
        metrics.RECEIVED_BYTES.labels(arrival.channel).inc(len(raw))
        metrics.INGEST_SECONDS.labels(arrival.channel).observe(time.perf_counter() - started)
        return result

    async def republish_stale(self) -> int:
        """Publish mails stored by an attempt that died before its event was confirmed."""
        done = 0
        while True:
            doc = await self._store.claim_stale_pending(
                older_than=timedelta(seconds=60), lease=timedelta(seconds=120)
            )
            if doc is None:
                return done
            raw = await self._store.raw.get(doc["_id"])
            await self._publish(raw, doc)
            log.warning("stored mail published by the sweep", email_id=doc["_id"])
            done += 1

    async def _publish(self, raw: bytes, doc: Document) -> Ingested:
        email_id = str(doc["_id"])
        received_at: datetime = doc["received_at"]
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=UTC)
        if len(raw) > PARSE_IN_THREAD_BYTES:
            parsed = await asyncio.to_thread(
                parse, raw, received_at=received_at, envelope_sender=doc.get("envelope_sender")
            )
        else:
            parsed = parse(raw, received_at=received_at, envelope_sender=doc.get("envelope_sender"))
        common: dict[str, Any] = {
            "email_id": email_id,
            "channel": doc["channel"],
            "mailbox": doc["mailbox"],
            "service": doc["service"],
            "received_at": received_at,
            "size": int(doc["size"]),
        }
        cards = int(doc.get("cards_masked") or 0)
        if isinstance(parsed, Unparseable):
            quarantined = EmailQuarantined(
                message_id=event_id(email_id, "quarantined"), reason=parsed.reason, **common
            )
            # Not a mail: one event for the operators, whatever mailboxes it was sent to.
            await publish_taken(self._bus, quarantined)
            for target in targets_of(doc):
                await self._store.published_to(email_id, target["mailbox"])
            await self._store.published(
                email_id, {"event": EmailQuarantined.NAME, "reason": parsed.reason}
            )
            metrics.QUARANTINED.labels(doc["channel"]).inc()
            log.warning("mail quarantined", email_id=email_id, reason=parsed.reason)
            return Ingested(email_id, False, EmailQuarantined.NAME, parsed.reason)
        base = await self._received_event(parsed, common)
        if cards:
            base = base.model_copy(update={"cards_masked": cards})
        facts = {
            "event": EmailReceived.NAME,
            "internet_message_id": parsed.internet_message_id,
            "classification": parsed.classification,
            "defects": parsed.defects,
            "html_ref": base.html_ref,
            "text_ref": base.text_ref,
        }
        done = published_for(doc)
        first = str(doc["mailbox"])
        for target in targets_of(doc):
            if target["mailbox"] in done:
                continue
            event = base.model_copy(
                update={
                    "message_id": received_event_id(email_id, target["mailbox"], first),
                    "mailbox": target["mailbox"],
                    "service": target["service"],
                }
            )
            await publish_taken(self._bus, event)
            await self._store.published_to(email_id, target["mailbox"])
        await self._store.published(email_id, facts)
        for defect in parsed.defects:
            metrics.DEFECTS.labels(defect.split(":", 1)[0]).inc()
        log.info(
            "mail received",
            email_id=email_id,
            mailboxes=[t["mailbox"] for t in targets_of(doc)],
            classification=parsed.classification,
            defects=len(parsed.defects),
        )
        return Ingested(email_id, False, EmailReceived.NAME)

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
