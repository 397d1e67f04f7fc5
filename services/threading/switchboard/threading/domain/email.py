"""The email aggregate, typed: one stored email (``emails``, ``_id`` = its Message-ID key).

Inbound mail is built here from the received message (:func:`inbound_email`), not as a dict
literal in a handler. Fields not modelled (older documents' extras) are kept through a load and
a dump (``extra="allow"``); a dump holds exactly the fields that were set, so an email stored
through the model has the same shape as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchboard.contracts.mail import EmailReceived
from switchboard.threading.domain.cases import Intake
from switchboard.threading.domain.common import Document
from switchboard.threading.domain.common import addr as _addr
from switchboard.threading.domain.common import now as _now

Direction = Literal["inbound", "outbound"]


class IntakeRecord(BaseModel):
    """How an inbound email was filed, kept with it: a retry files it the same way."""

    model_config = ConfigDict(extra="allow")

    action: str
    matched_by: str = ""
    linked_to: int | None = None
    auto_answer: str | None = None
    auto_answer_skipped: str | None = None
    new_participant: bool = False


class Email(BaseModel):
    """An email as stored (inbound or outbound)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: str = Field(alias="_id")
    message_id: str
    case_number: int
    direction: Direction
    kind: str
    source: str
    service: str
    sender: dict[str, str] = Field(alias="from")
    to: list[dict[str, str]] = Field(default_factory=list)
    cc: list[dict[str, str]] = Field(default_factory=list)
    reply_to: list[dict[str, str]] = Field(default_factory=list)
    subject: str = ""
    text: str = ""
    html_ref: str | None = None
    html_withheld: bool = False
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    when: datetime | None = None
    classification: str = "normal"
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    masked: list[dict[str, Any]] = Field(default_factory=list)
    intake: IntakeRecord | None = None

    @classmethod
    def load(cls, document: Document) -> Email:
        return cls.model_validate(document)

    def document(self) -> Document:
        """The document to store: the fields set (and extras kept), by their stored names."""
        return self.model_dump(by_alias=True, exclude_unset=True)


def inbound_email(
    event: EmailReceived,
    *,
    key: str,
    header: str,
    content_key: str,
    reused: bool,
    case_number: int,
    subject: str,
    text: str,
    withhold_html: bool,
    cards_masked: int,
    defects: list[str],
    intake: Intake,
    auto_answer: str | None,
    auto_answer_skipped: str | None,
) -> Email:
    """A received mail as filed under case ``case_number`` (``subject``/``text`` as masked)."""
    masked = (
        [{"by": "system", "what": "card_numbers", "count": cards_masked, "at": _now()}]
        if cards_masked
        else []
    )
    return Email.model_validate(
        {
            "_id": key,
            "message_id": header,
            "content_key": content_key,
            "message_id_reused": reused,
            "case_number": case_number,
            "direction": "inbound",
            "kind": "inbound",
            "source": str(event.message_id),
            "raw_email_ids": [event.email_id],
            "mailboxes": [event.mailbox],
            "channel": event.channel,
            "service": event.service,
            "from": _addr(event.sender),
            "to": [_addr(a) for a in event.to],
            "cc": [_addr(a) for a in event.cc],
            "reply_to": [_addr(a) for a in event.reply_to],
            "subject": subject,
            "text": text,
            "text_truncated": event.text_truncated,
            "text_ref": getattr(event, "text_ref", None),
            "html_ref": event.html_ref,
            "html_withheld": withhold_html,
            "attachments": [a.model_dump() for a in event.attachments],
            "when": event.sent_at,
            "sent_at_flagged": event.sent_at_flagged,
            "received_at": event.received_at,
            "classification": event.classification,
            "in_reply_to": event.in_reply_to,
            "references": list(event.references),
            "thread_header": event.thread_header,
            "bounced_message_id": event.bounced_message_id,
            "defects": defects,
            "masked": masked,
            "intake": {
                "action": intake.action,
                "matched_by": intake.matched_by,
                "linked_to": intake.linked_to,
                "auto_answer": auto_answer,
                "auto_answer_skipped": auto_answer_skipped,
                "new_participant": intake.new_participant,
            },
            "new_participant": intake.new_participant,
            "stored_at": _now(),
        }
    )
