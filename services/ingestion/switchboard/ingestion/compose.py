"""Outbound request -> the RFC 5322 message we hand to the relay. Pure, no I/O.

The contract already refuses CR/LF in every header value; here we also refuse header *names*
that are not RFC 5322 field names and extra headers that would override the ones we own.

International addresses: a domain in Unicode (``bücher.example``) is written in its IDNA form
(``xn--bcher-kva.example``, IDNA 2008 via the ``idna`` package), which every relay takes. A
local part in Unicode (``jürgen@…``) has no ASCII form: such mail needs SMTPUTF8 (RFC 6531) at
the relay, and is then composed with UTF-8 headers (``utf8=True``) and sent with the SMTPUTF8
parameter; a relay without it gets nothing and the request fails, saying so.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime

import idna

from switchboard.contracts.mail import EmailOutboundRequested, OutboundAddress
from switchboard.ingestion.headers import normalize_message_id

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


def ascii_domain(domain: str) -> str:
    """The domain as the DNS knows it: IDNA A-labels for a Unicode domain."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise Unsendable(f"domain {domain!r} is not a valid international domain: {exc}") from exc


def needs_smtputf8(request: EmailOutboundRequested, envelope_from: str | None = None) -> bool:
    """True when some address has a non-ASCII local part (only SMTPUTF8 can carry it)."""
    addresses = [request.sender, *request.to, *request.cc, *request.bcc]
    every = [a.address for a in addresses] + ([envelope_from] if envelope_from else [])
    return any(not address.rpartition("@")[0].isascii() for address in every)


def envelope_address(address: str, *, utf8: bool) -> str:
    """An address for MAIL FROM / RCPT TO: as given under SMTPUTF8, else with an IDNA domain."""
    if utf8:
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise Unsendable(f"address {address!r} needs SMTPUTF8")
    return f"{local}@{ascii_domain(domain)}"


def _address(a: OutboundAddress, utf8: bool) -> HeaderAddress:
    local, _, domain = a.address.rpartition("@")
    try:
        return HeaderAddress(
            display_name=a.name, username=local, domain=domain if utf8 else ascii_domain(domain)
        )
    except Unsendable:
        raise
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
    utf8: bool = False,
) -> EmailMessage:
    """Build the message. ``attachments``: (filename, content type, bytes, content-id);
    ``utf8``: UTF-8 headers, for a relay that took SMTPUTF8."""
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    try:
        msg["From"] = _address(request.sender, utf8)
        msg["To"] = [_address(a, utf8) for a in request.to]
        if request.cc:
            msg["Cc"] = [_address(a, utf8) for a in request.cc]
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
