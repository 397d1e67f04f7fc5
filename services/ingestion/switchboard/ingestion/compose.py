"""Outbound request -> the RFC 5322 message we hand to the relay. Pure, no I/O.

The contract already refuses CR/LF in every header value; here we also refuse header *names*
that are not RFC 5322 field names and extra headers that would override the ones we own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from switchboard.contracts.mail import EmailOutboundRequested, OutboundAddress
from switchboard.ingestion.parsing import normalize_message_id

_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII except ':' (RFC 5322 3.6.8)
OWNED_HEADERS = {
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "return-path",
    "received",
}


class Unsendable(ValueError):
    """A request that can never be delivered as given (answered as a permanent failure)."""


def _address(a: OutboundAddress) -> HeaderAddress:
    local, _, domain = a.address.rpartition("@")
    try:
        return HeaderAddress(display_name=a.name, username=local, domain=domain)
    except Exception as exc:
        raise Unsendable(f"address {a.address!r} cannot be written: {exc}") from exc


def _msgid(value: str) -> str:
    found = normalize_message_id(value)
    if found is None:
        raise Unsendable(f"{value!r} is not a Message-ID")
    return found


def compose(
    request: EmailOutboundRequested,
    attachments: list[tuple[str, str, bytes, str | None]],
    *,
    now: datetime | None = None,
) -> EmailMessage:
    """Build the message. ``attachments``: (filename, content type, bytes, content-id)."""
    msg = EmailMessage(policy=SMTP)
    try:
        msg["From"] = _address(request.sender)
        msg["To"] = [_address(a) for a in request.to]
        if request.cc:
            msg["Cc"] = [_address(a) for a in request.cc]
        msg["Subject"] = request.subject
        msg["Date"] = format_datetime(now or datetime.now(UTC))
        msg["Message-ID"] = _msgid(request.internet_message_id)
        if request.in_reply_to:
            msg["In-Reply-To"] = _msgid(request.in_reply_to)
        if request.references:
            msg["References"] = " ".join(_msgid(r) for r in request.references)
        if request.automatic:
            msg["Auto-Submitted"] = "auto-replied"
            msg["X-Auto-Response-Suppress"] = "All"
        for name, value in request.extra_headers.items():
            if not _FIELD_NAME.match(name):
                raise Unsendable(f"extra header name {name!r} is not a header field name")
            if name.lower() in OWNED_HEADERS:
                raise Unsendable(f"extra header {name!r} would override one we set")
            if request.automatic and name.lower() in {"auto-submitted", "x-auto-response-suppress"}:
                continue
            msg[name] = value
    except ValueError as exc:  # the policy refuses CR/LF and malformed values too
        if isinstance(exc, Unsendable):
            raise
        raise Unsendable(str(exc)) from exc
    msg.set_content(request.text or "")
    if request.html:
        msg.add_alternative(request.html, subtype="html")
    for filename, content_type, data, content_id in attachments:
        maintype, _, subtype = content_type.partition("/")
        if not subtype or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        if maintype == "text":
            msg.add_attachment(
                data.decode("utf-8", "replace"), subtype=subtype, filename=filename or None
            )
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename or None)
        if content_id:
            payload = msg.get_payload()
            if isinstance(payload, list) and isinstance(payload[-1], EmailMessage):
                payload[-1]["Content-ID"] = f"<{content_id.strip('<>')}>"
    return msg


def recipients(request: EmailOutboundRequested) -> list[str]:
    """Envelope recipients: To, Cc and Bcc, each once (Bcc never appears in a header)."""
    seen: dict[str, None] = {}
    for a in [*request.to, *request.cc, *request.bcc]:
        seen.setdefault(a.address, None)
    return list(seen)
