"""Outbound mail: the request to the mail edge and the stored email, both deterministic (a
retried command builds the same ones), automatic answers, recipients and forwarded text.

No I/O: the handlers store and publish what these build.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from switchboard.contracts import Message
from switchboard.contracts.mail import (
    AttachmentRef,
    EmailOutboundRequested,
    EmailReceived,
    OutboundAddress,
)
from switchboard.threading import rules
from switchboard.threading.config import ServiceConfig
from switchboard.threading.domain.common import NS as _NS
from switchboard.threading.domain.common import Document
from switchboard.threading.domain.common import addr as _addr
from switchboard.threading.domain.common import iso as _iso
from switchboard.threading.domain.common import now as _now
from switchboard.threading.domain.email import Email
from switchboard.threading.subjects import outbound_subject

THREAD_HEADER = "X-Switchboard-Thread"


def automatic_answer(
    event: EmailReceived,
    email: Document,
    case: Document,
    cfg: ServiceConfig,
    kind: str,
    thread_id: str,
) -> tuple[EmailOutboundRequested, Document]:
    recipient = event.reply_to[0] if event.reply_to else event.sender
    values = {"case_number": case["_id"], "subject": case.get("subject", "")}
    if kind == "auto_ack":
        subject, text = cfg.auto_ack.subject, cfg.auto_ack.text
    else:
        subject, text = cfg.closed_case.reject_subject, cfg.closed_case.reject_text
    return outbound_email(
        cause=event,
        key=kind,
        case=case,
        cfg=cfg,
        kind=kind,
        to=[OutboundAddress(name=recipient.name, address=recipient.address)],
        subject=outbound_subject(
            rules.fill(subject, **values),
            prefix="",
            thread_id=thread_id,
            tag_format=cfg.subject_tag_format,
            with_tag=cfg.tag_in_subject,
        ),
        text=rules.fill(text, **values),
        parent=email,
        thread_id=thread_id,
        automatic=True,
    )


def outbound_email(
    *,
    cause: Message,
    key: str,
    case: Document,
    cfg: ServiceConfig,
    kind: str,
    to: Sequence[OutboundAddress],
    subject: str,
    text: str,
    thread_id: str | None,
    parent: Document | None = None,
    cc: Sequence[OutboundAddress] = (),
    bcc: Sequence[OutboundAddress] = (),
    html: str | None = None,
    attachments: Sequence[AttachmentRef] = (),
    automatic: bool = False,
    agent_id: str | None = None,
    template_id: str | None = None,
    is_reply: bool = True,
) -> tuple[EmailOutboundRequested, Document]:
    """The request to the mail edge and the stored outbound email (a typed :class:`Email`,
    as its document), both deterministic."""
    number = case["_id"]
    domain = cfg.sender.address.rpartition("@")[2]
    token = uuid.uuid5(_NS, f"{cause.message_id}:{key}").hex
    msg_key = f"{token}.{number}@{domain}"
    in_reply_to = parent["message_id"] if parent is not None and is_reply else None
    references = (
        rules.references_for_reply(parent.get("references", []), parent["_id"])
        if parent is not None
        else []
    )
    headers = {THREAD_HEADER: thread_id} if thread_id and cfg.tag_in_header else {}
    request = EmailOutboundRequested.caused_by(
        cause,
        key=f"send:{key}",
        outbound_id=f"{number}-{token[:20]}",
        case_number=number,
        sender=cfg.sender,
        to=list(to),
        cc=list(cc),
        bcc=list(bcc),
        subject=subject,
        text=text,
        html=html,
        attachments=list(attachments),
        internet_message_id=rules.message_id_header(msg_key),
        in_reply_to=in_reply_to,
        references=references,
        automatic=automatic,
        extra_headers=headers,
    )
    email = Email.model_validate(
        {
            "_id": msg_key,
            "message_id": request.internet_message_id,
            "case_number": number,
            "direction": "outbound",
            "kind": kind,
            "source": str(cause.message_id),
            "outbound_id": request.outbound_id,
            "agent_id": agent_id,
            "template_id": template_id,
            "service": case["service"],
            "from": _addr(cfg.sender),
            "to": [_addr(a) for a in to],
            "cc": [_addr(a) for a in cc],
            "bcc": [_addr(a) for a in bcc],
            "reply_to": [],
            "subject": subject,
            "text": text,
            "html": html,
            "html_ref": None,
            "html_withheld": False,
            "attachments": [a.model_dump() for a in attachments],
            "when": _now(),
            "classification": "normal",
            "automatic": automatic,
            "in_reply_to": in_reply_to,
            "references": references,
            "thread_id": thread_id,
            "masked": [],
            "delivery": {"status": "requested", "at": _now(), "detail": ""},
            "stored_at": _now(),
        }
    )
    return request, email.document()


def default_recipients(case: Document, parent: Document | None) -> list[OutboundAddress]:
    if parent is not None and parent.get("direction") == "inbound":
        source = parent.get("reply_to") or [parent["from"]]
    else:
        source = [case.get("contact") or {}]
    out = []
    for person in source:
        try:
            out.append(OutboundAddress(name=person.get("name", ""), address=person["address"]))
        except (KeyError, ValueError):
            continue
    return out


def forward_text(comment: str, parent: Document) -> str:
    sender = parent.get("from") or {}
    who = f"{sender.get('name', '')} <{sender.get('address', '')}>".strip()
    to = ", ".join(a.get("address", "") for a in parent.get("to", []))
    when = _iso(parent.get("when"))
    header = (
        "---------- Forwarded message ----------\n"
        f"From: {who}\nDate: {when}\nSubject: {parent.get('subject', '')}\nTo: {to}\n\n"
    )
    intro = comment.rstrip() + "\n\n" if comment.strip() else ""
    return intro + header + str(parent.get("text", ""))
