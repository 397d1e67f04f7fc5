"""Mail crossing the edge: what ingestion received, and what threading asks it to send."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.base import Command, Event, SingleLine
from switchboard.contracts.html import SafeHtml

Channel = Literal["smtp", "imap", "upload"]
Classification = Literal["normal", "auto_reply", "bounce", "mailing_list"]


_NOT_IN_ADDRESS = frozenset(' ,;:<>()[]\\"\t')


def _mailbox_address(value: str) -> str:
    """One plain ``local@domain``: nothing a header or envelope parser could split or read
    another way (no comma, angle bracket, quote, second ``@``), so the header and RCPT TO
    name the same mailbox."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or "@" in local or _NOT_IN_ADDRESS.intersection(value):
        raise ValueError("must be one address of the form local@domain")
    return value


def is_sendable_address(value: str) -> bool:
    """Whether ``value`` is one plain ``local@domain`` we can send to (see OutboundAddress)."""
    try:
        _mailbox_address(value)
    except ValueError:
        return False
    return "\r" not in value and "\n" not in value


class Address(BaseModel):
    """A display name and a raw address, as the thread view shows them."""

    model_config = ConfigDict(frozen=True)

    name: SingleLine = ""
    address: SingleLine


class OutboundAddress(Address):
    """An address we send to: it must be deliverable in form."""

    address: Annotated[SingleLine, AfterValidator(_mailbox_address)]


class AttachmentRef(BaseModel):
    """An attachment stored once in the raw-mail store and referenced by id."""

    model_config = ConfigDict(frozen=True)

    attachment_id: str
    filename: SingleLine
    content_type: str
    size: int = Field(ge=0)
    content_id: str | None = None
    inline: bool = False


class EmailReceived(Event):
    """A customer's mail was stored and parsed; raw bytes live in the raw-mail store."""

    NAME = "email.received"

    email_id: str = Field(description="SHA-256 of the raw bytes: one id per distinct message")
    channel: Channel
    mailbox: str
    service: str = Field(description="the service (queue) the receiving mailbox belongs to")
    received_at: AwareDatetime
    size: int = Field(ge=0)
    internet_message_id: str
    message_id_synthesized: bool = False
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    sender: Address
    to: list[Address] = Field(default_factory=list)
    cc: list[Address] = Field(default_factory=list)
    reply_to: list[Address] = Field(default_factory=list)
    subject: str = ""
    sent_at: AwareDatetime
    sent_at_flagged: bool = False
    text: str = ""
    text_truncated: bool = False
    text_ref: str | None = Field(
        default=None, description="id of the whole text in the raw-mail store when truncated"
    )
    html_ref: str | None = Field(default=None, description="id of the nh3-sanitised HTML")
    attachments: list[AttachmentRef] = Field(default_factory=list)
    thread_header: str | None = Field(default=None, description="the hidden thread header, if any")
    classification: Classification = "normal"
    bounced_message_id: str | None = None
    defects: list[str] = Field(default_factory=list)
    cards_masked: int = Field(
        default=0,
        ge=0,
        description="payment card numbers the mail edge masked in every copy before storing it",
    )


class EmailQuarantined(Event):
    """Mail that could not be parsed at all: stored, never dropped, shown to operators."""

    NAME = "email.quarantined"

    email_id: str
    channel: Channel
    mailbox: str
    service: str
    received_at: AwareDatetime
    size: int = Field(ge=0)
    reason: str


class EmailOutboundRequested(Command):
    """Threading asks the mail edge to deliver one message; ``outbound_id`` makes it once-only."""

    NAME = "email.outbound.requested"

    outbound_id: str
    case_number: int | None = None
    sender: OutboundAddress
    to: list[OutboundAddress] = Field(min_length=1)
    cc: list[OutboundAddress] = Field(default_factory=list)
    bcc: list[OutboundAddress] = Field(default_factory=list)
    subject: SingleLine
    text: str
    html: SafeHtml | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)
    internet_message_id: SingleLine
    in_reply_to: SingleLine | None = None
    references: list[SingleLine] = Field(default_factory=list)
    automatic: bool = Field(default=False, description="auto-answers carry Auto-Submitted")
    extra_headers: dict[SingleLine, SingleLine] = Field(default_factory=dict)


class EmailSent(Event):
    """The relay accepted an outbound message."""

    NAME = "email.sent"

    outbound_id: str
    internet_message_id: str
    case_number: int | None = None
    relay_reply: str = ""


class EmailDeliveryFailed(Event):
    """The relay refused an outbound message for good (5xx) or retries ran out."""

    NAME = "email.delivery_failed"

    outbound_id: str
    internet_message_id: str
    case_number: int | None = None
    smtp_code: int | None = None
    smtp_reply: str
    permanent: bool = True
