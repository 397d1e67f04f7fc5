"""Raw RFC 822 bytes -> the facts of ``email.received``. Pure functions, no I/O.

The stdlib ``email`` package (``policy.default``) does the MIME work; this module and its parts
(``headers``, ``addresses``, ``bodies``, ``defects``) decide what to do with what it finds:
which part is the body, what is an attachment, how to decode text whose charset is wrong, which
header wins when there are two. :func:`parse` never raises: it returns a :class:`ParsedMail` or,
for bytes that are not a mail at all, an :class:`Unparseable` with the reason. Everything odd
but survivable is recorded in ``defects`` (short ``code: detail`` strings).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

from switchboard.contracts.mail import Classification
from switchboard.ingestion.addresses import ParsedAddress, addresses_in, capped
from switchboard.ingestion.bodies import MAX_PARTS, Body, ParsedAttachment
from switchboard.ingestion.classify import classify
from switchboard.ingestion.defects import SURROGATES, Defects, clean_line
from switchboard.ingestion.headers import (
    first_msgid,
    header_text,
    header_texts,
    msgids,
    raw_values,
    sent_date,
    synthesize_message_id,
)

__all__ = ["ParsedAddress", "ParsedAttachment", "ParsedMail", "Unparseable", "parse"]

MAX_SUBJECT_CHARS = 1000
MAX_REFERENCES = 50
THREAD_HEADER = "X-Switchboard-Thread"
_LONG_LINE = re.compile(rb"[^\r\n]{999}")  # RFC 5322 2.1.1: at most 998 characters a line


@dataclass
class ParsedMail:
    internet_message_id: str
    message_id_synthesized: bool
    in_reply_to: str | None
    references: list[str]
    sender: ParsedAddress
    to: list[ParsedAddress]
    cc: list[ParsedAddress]
    reply_to: list[ParsedAddress]
    subject: str
    sent_at: datetime
    sent_at_flagged: bool
    text: str
    html: str | None
    attachments: list[ParsedAttachment]
    thread_header: str | None
    classification: Classification
    bounced_message_id: str | None
    defects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Unparseable:
    reason: str


def parse(
    raw: bytes, *, received_at: datetime, envelope_sender: str | None = None
) -> ParsedMail | Unparseable:
    """Parse one raw message; never raises."""
    try:
        return _parse(raw, received_at, envelope_sender)
    except RecursionError:
        return Unparseable("MIME structure nested too deeply")
    except Exception as exc:  # a parser bug must not lose the mail: quarantine it
        return Unparseable(f"parser error: {type(exc).__name__}: {exc}"[:500])


# --------------------------------------------------------------------------- the message


def _parse(
    raw: bytes, received_at: datetime, envelope_sender: str | None
) -> ParsedMail | Unparseable:
    if not raw.strip():
        return Unparseable("empty message")
    msg = message_from_bytes(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage) or not list(msg.keys()):
        return Unparseable("no header section: the bytes do not start with mail headers")
    defects = Defects()
    if b"\x00" in raw:
        defects.add("nul_bytes", "NUL bytes removed")
    if _LONG_LINE.search(raw):
        defects.add("line_too_long", "a line longer than 998 characters (RFC 5322 2.1.1)")
    _record_duplicates(msg, defects)

    senders = addresses_in(msg, "From", defects) or addresses_in(msg, "Sender", defects)
    reply_to = addresses_in(msg, "Reply-To", defects)
    if not senders and reply_to:
        senders = reply_to[:1]
        defects.add("from_missing", "sender taken from Reply-To")
    if not senders and envelope_sender and "@" in envelope_sender:
        senders = [ParsedAddress("", clean_line(envelope_sender))]
        defects.add("from_missing", "sender taken from the SMTP envelope")
    if not senders:
        return Unparseable("no sender address (no usable From, Sender, Reply-To or envelope)")
    if len(raw_values(msg, "From")) > 1 or len(senders) > 1:
        defects.add("from_multiple", f"{len(senders)} senders; the first is used")

    subject = header_text(msg, "Subject", defects)
    if len(subject) > MAX_SUBJECT_CHARS:
        defects.add("subject_truncated", f"{len(subject)} characters")
        subject = subject[:MAX_SUBJECT_CHARS]

    message_id = first_msgid(msg, "Message-ID", defects)
    synthesized = message_id is None
    if message_id is None:
        message_id = synthesize_message_id(msg, raw)
        defects.add("message_id_missing", "a stable id was derived from the content")
    in_reply_to = first_msgid(msg, "In-Reply-To", defects)
    references = msgids(" ".join(header_texts(msg, "References", defects)))
    if len(references) > MAX_REFERENCES:
        defects.add("references_truncated", f"{len(references)} ids")
        references = references[:1] + references[-(MAX_REFERENCES - 1) :]

    sent_at, date_flagged = sent_date(msg, received_at, defects)
    body = Body(defects)
    body.collect(msg)
    text = body.text()
    html = body.html()
    thread = header_text(msg, THREAD_HEADER, defects) or None
    try:
        kind, bounced = classify(msg, senders[0].address, subject, text)
    except Exception as exc:
        defects.add("classification_failed", type(exc).__name__)
        kind, bounced = "normal", None

    for where, part in _walk(msg):
        for defect in part.defects:
            detail = str(defect).strip()
            defects.add(type(defect).__name__, f"{where}: {detail}" if detail else where)
    parsed = ParsedMail(
        internet_message_id=message_id,
        message_id_synthesized=synthesized,
        in_reply_to=in_reply_to,
        references=references,
        sender=senders[0],
        to=capped(addresses_in(msg, "To", defects), "to", defects),
        cc=capped(addresses_in(msg, "Cc", defects), "cc", defects),
        reply_to=capped(reply_to, "reply_to", defects),
        subject=subject,
        sent_at=sent_at,
        sent_at_flagged=date_flagged,
        text=text,
        html=html,
        attachments=body.attachments,
        thread_header=thread[:200] if thread else None,
        classification=kind,
        bounced_message_id=bounced,
    )
    parsed = _without_surrogates(parsed, "mail", defects)
    assert isinstance(parsed, ParsedMail)
    parsed.defects = defects.items
    return parsed


def _without_surrogates(value: Any, where: str, defects: Defects) -> Any:
    """Every text of the parsed mail with lone surrogates replaced by U+FFFD (flagged): the
    last net under the decoders, so no byte sequence can make the event unserialisable."""
    if isinstance(value, str):
        if SURROGATES.search(value) is None:
            return value
        defects.add("undecodable_text", where)
        return SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v, f"{where}[{i}]", defects) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _without_surrogates(getattr(value, f.name), f"{where}.{f.name}", defects)
            for f in dataclasses.fields(value)
            if f.name != "defects"
        }
        return dataclasses.replace(value, **changes)
    return value


def _walk(msg: Message, where: str = "message", depth: int = 0) -> list[tuple[str, Message]]:
    """Every part, nested messages included, with a short location."""
    found = [(where, msg)]
    if depth > 20 or not msg.is_multipart():
        return found
    payload = msg.get_payload()
    if isinstance(payload, list):
        for i, sub in enumerate(payload, 1):
            if isinstance(sub, Message) and len(found) < MAX_PARTS:
                found.extend(_walk(sub, f"{where}/{i}", depth + 1))
    return found


def _record_duplicates(msg: Message, defects: Defects) -> None:
    counts: dict[str, int] = {}
    for name in msg:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    for name in ("subject", "date", "message-id", "in-reply-to", "to", "cc", "reply-to"):
        if counts.get(name, 0) > 1:
            defects.add("duplicate_header", f"{name} x{counts[name]}; the first is used")


# --------------------------------------------------------------------------- headers
