"""Cases and their emails: what threading tells everyone, and what agents ask it to do.

Threading owns cases, their emails, case numbers and thread identifiers. The gateway sends the
commands below with ``Bus.request`` on behalf of a person; each is answered with an ``Outcome``
(``ok`` + ``result``, or a ``Refusal`` naming the field at fault).

Authorisation: every agent command carries ``agent_id`` (the acting person) and ``acting_role``.
An ``"agent"`` may act on a case only while routing has assigned them the case's current
interaction (``interaction.assigned`` for ``case-<number>``); a ``"supervisor"`` may act on any
case. The gateway authenticates people and sets ``acting_role``; threading trusts it.

Interaction ids of cases are ``case-<number>`` for the first routing round and
``case-<number>.<round>`` for later rounds (follow-up after the work ended, transfer).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.base import Command, Event, SingleLine
from switchboard.contracts.html import SafeHtml
from switchboard.contracts.mail import Address, AttachmentRef, OutboundAddress

ActingRole = Literal["agent", "supervisor"]
CaseStatus = Literal["open", "closed"]
Direction = Literal["inbound", "outbound"]
IntakeAction = Literal["created", "attached", "reopened", "linked", "rejected", "recorded"]


# ---------------------------------------------------------------------------------------------
# Events (threading is the producer)
# ---------------------------------------------------------------------------------------------


class CaseCreated(Event):
    """A new case was opened, by an inbound email or an agent's new outbound email."""

    NAME = "case.created"

    case_number: int
    service: str
    subject: str = ""
    contact: Address | None = None
    email_id: str | None = Field(default=None, description="Message-ID of the first email")
    origin: Literal["inbound", "outbound", "by_hand"] = "inbound"
    linked_case_number: int | None = Field(
        default=None, description="the case this one follows from (closed-case policy, References)"
    )
    status: CaseStatus = Field(
        default="open",
        description="closed at once when automatic mail (auto-reply, bounce) matching no case "
        "opened it: filed, never routed",
    )


class CaseEmailAttached(Event):
    """An email (inbound or outbound) was filed under a case."""

    NAME = "case.email_attached"

    case_number: int
    email_id: str = Field(description="the email's Message-ID, as stored")
    direction: Direction
    service: str = ""
    action: IntakeAction = "attached"
    matched_by: str = Field(default="", description="subject_tag, header, in_reply_to, ...")
    classification: str = "normal"


class CaseClosed(Event):
    NAME = "case.closed"

    case_number: int
    service: str = ""
    disposition: str = ""
    agent_id: str | None = None
    reason: str = Field(
        default="",
        description="empty when closed by a final disposition; 'unmatched_automatic_mail' when "
        "an auto-reply or bounce matching no case opened it closed",
    )


class CaseReopened(Event):
    NAME = "case.reopened"

    case_number: int
    service: str = ""
    email_id: str | None = None


class CaseDispositionSet(Event):
    NAME = "case.disposition_set"

    case_number: int
    disposition: str
    final: bool = False
    email_id: str | None = None
    agent_id: str | None = None


class CaseNoteAdded(Event):
    NAME = "case.note_added"

    case_number: int
    note_id: str
    email_id: str | None = None
    agent_id: str | None = None


class CaseTransferred(Event):
    NAME = "case.transferred"

    case_number: int
    from_service: str = ""
    to_service: str = ""
    to_agent_id: str | None = None
    agent_id: str | None = None


class CaseServiceChanged(Event):
    NAME = "case.service_changed"

    case_number: int
    from_service: str = ""
    to_service: str = ""
    agent_id: str | None = None


class CaseMasked(Event):
    """Spans of stored text were replaced irreversibly (the raw mail keeps its own policy)."""

    NAME = "case.masked"

    case_number: int
    email_ids: list[str] = Field(default_factory=list)
    spans: int = 0
    agent_id: str | None = None
    automatic: bool = False


class CaseStatusChanged(Event):
    """The case's work status (one of its service's statuses) changed. A "pending" status
    (waiting for the customer or a third party) pauses the service-level clock: reports sum the
    intervals between a change to a pending status and the next change away from one."""

    NAME = "case.status_changed"

    case_number: int
    service: str = ""
    from_status: str
    to_status: str
    pending: bool = Field(description="the new status pauses the service-level clock")
    was_pending: bool = False
    agent_id: str | None = None
    at: AwareDatetime


class CaseOutboundRequested(Event):
    """Threading asked the mail edge to send an email of this case."""

    NAME = "case.outbound_requested"

    case_number: int
    email_id: str
    kind: str = "reply"
    agent_id: str | None = None


# ---------------------------------------------------------------------------------------------
# Commands (the gateway sends them on behalf of an agent or supervisor)
# ---------------------------------------------------------------------------------------------


class CaseCommand(Command):
    """Fields every agent command carries."""

    case_number: int = Field(ge=1)
    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"


class Composition(BaseModel):
    """What an agent writes (a reply, a forward comment, a follow-up, a draft)."""

    model_config = ConfigDict(frozen=True)

    to: list[OutboundAddress] = Field(default_factory=list)
    cc: list[OutboundAddress] = Field(default_factory=list)
    bcc: list[OutboundAddress] = Field(default_factory=list)
    subject: SingleLine | None = Field(default=None, description="default: Re:/Fwd: the case's")
    text: str = ""
    html: SafeHtml | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)
    template_id: str | None = None


class ReplyToCase(CaseCommand):
    """Reply to an email of the case (default: the latest inbound one)."""

    NAME = "case.reply"

    to: list[OutboundAddress] = Field(default_factory=list, description="default: the sender")
    cc: list[OutboundAddress] = Field(default_factory=list)
    bcc: list[OutboundAddress] = Field(default_factory=list)
    subject: SingleLine | None = None
    text: str = ""
    html: SafeHtml | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)
    template_id: str | None = None
    reply_to_email_id: str | None = None
    agent_name: SingleLine | None = Field(
        default=None,
        description="the acting person's name as customers see it ({{ agent_name }} in reply "
        "templates); the gateway fills it",
    )
    draft_id: str | None = Field(default=None, description="send this draft (and discard it)")
    disposition: str | None = None
    finish: bool = Field(default=True, description="the agent is done with the email")


class ForwardEmail(CaseCommand):
    """Forward an email of the case to an outside address."""

    NAME = "case.forward"

    email_id: str | None = Field(default=None, description="default: the latest inbound email")
    to: list[OutboundAddress] = Field(min_length=1)
    cc: list[OutboundAddress] = Field(default_factory=list)
    bcc: list[OutboundAddress] = Field(default_factory=list)
    text: str = Field(default="", description="the agent's comment above the forwarded text")
    include_attachments: bool = True
    draft_id: str | None = None
    finish: bool = False


class SendFollowUp(CaseCommand):
    """Send another outbound email on the case (not answering a particular email)."""

    NAME = "case.follow_up"

    to: list[OutboundAddress] = Field(default_factory=list, description="default: the contact")
    cc: list[OutboundAddress] = Field(default_factory=list)
    bcc: list[OutboundAddress] = Field(default_factory=list)
    subject: SingleLine | None = None
    text: str = ""
    html: SafeHtml | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)
    template_id: str | None = None
    draft_id: str | None = None
    finish: bool = False
    agent_name: SingleLine | None = Field(
        default=None,
        description="the acting person's name as customers see it ({{ agent_name }} in reply "
        "templates); the gateway fills it",
    )


class SendNewOutbound(Command):
    """Write to a customer first: opens a new case in ``service``."""

    NAME = "case.new_outbound"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    service: str = Field(min_length=1)
    to: list[OutboundAddress] = Field(min_length=1)
    cc: list[OutboundAddress] = Field(default_factory=list)
    bcc: list[OutboundAddress] = Field(default_factory=list)
    subject: SingleLine = Field(min_length=1)
    text: str = ""
    html: SafeHtml | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)
    template_id: str | None = None
    linked_case_number: int | None = None
    agent_name: SingleLine | None = Field(
        default=None,
        description="the acting person's name as customers see it ({{ agent_name }} in reply "
        "templates); the gateway fills it",
    )


class SaveDraft(CaseCommand):
    """Save a new draft on the case; answered with ``draft_id``."""

    NAME = "case.draft.save"

    kind: Literal["reply", "forward", "follow_up"] = "reply"
    reply_to_email_id: str | None = None
    content: Composition = Field(default_factory=Composition)


class UpdateDraft(CaseCommand):
    """Replace a draft's content; ``expected_version`` guards against a lost update."""

    NAME = "case.draft.update"

    draft_id: str = Field(min_length=1)
    content: Composition = Field(default_factory=Composition)
    expected_version: int | None = None


class DiscardDraft(CaseCommand):
    NAME = "case.draft.discard"

    draft_id: str = Field(min_length=1)


class CloseCase(CaseCommand):
    """Close without replying, with a final disposition of the case's service."""

    NAME = "case.close"

    disposition: str = Field(min_length=1)
    email_id: str | None = None
    note: str = ""


class TransferCase(CaseCommand):
    """Hand the case to another service queue, or to a named agent's personal queue."""

    NAME = "case.transfer"

    to_service: str | None = None
    to_agent_id: str | None = None
    note: str = ""


class ChangeCaseService(CaseCommand):
    """The case was classified wrongly: it belongs to another service (the agent keeps it)."""

    NAME = "case.change_service"

    service: str = Field(min_length=1)


class MaskSpan(BaseModel):
    """Characters ``start`` (inclusive) to ``end`` (exclusive) of one email's field."""

    model_config = ConfigDict(frozen=True)

    email_id: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    field: Literal["text", "subject"] = "text"


class MaskCaseData(CaseCommand):
    """Replace the marked spans irreversibly, everywhere the case stores that text."""

    NAME = "case.mask"

    spans: list[MaskSpan] = Field(min_length=1)


class AddCaseNote(CaseCommand):
    NAME = "case.note.add"

    text: str = Field(min_length=1)
    email_id: str | None = None


class SetDisposition(CaseCommand):
    """Set a disposition on an email of the case; a final one closes the case."""

    NAME = "case.disposition.set"

    disposition: str = Field(min_length=1)
    email_id: str | None = Field(default=None, description="default: the latest inbound email")
    finish: bool = Field(default=False, description="also end the agent's work on the email")


# ---------------------------------------------------------------------------------------------
# Reply templates (threading keeps them; a reply, follow-up or new outbound names one by
# ``template_id`` and threading renders it with the case's fields)
# ---------------------------------------------------------------------------------------------


class SaveReplyTemplate(Command):
    """Create or replace a reply template (supervisors only). Answered with ``template_id`` and
    ``version``.

    ``text`` (and ``html``, ``subject``) are Jinja2 templates run in a sandbox; the variables are
    ``case_number``, ``customer_name``, ``customer_address``, ``agent_name``, ``subject``,
    ``thread_id`` and ``service``. A syntax error or an unknown variable is refused naming the
    part at fault.
    """

    NAME = "case.template.save"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    template_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    name: SingleLine = Field(min_length=1, max_length=200)
    services: list[str] = Field(
        default_factory=list, description="the services it is offered in; empty: every service"
    )
    subject: SingleLine | None = Field(default=None, description="used when the agent gives none")
    text: str = Field(min_length=1)
    html: SafeHtml | None = None
    expected_version: int | None = Field(
        default=None,
        ge=0,
        description="refuse unless the template is at this version (0: it must not exist yet)",
    )


class DeleteReplyTemplate(Command):
    """Remove a reply template (supervisors only)."""

    NAME = "case.template.delete"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    template_id: str = Field(min_length=1)
    expected_version: int | None = Field(default=None, ge=1)


# ---------------------------------------------------------------------------------------------
# Queries (answered in ``Outcome.result``; they change nothing)
# ---------------------------------------------------------------------------------------------


class RecordUpload(Command):
    """A person uploaded a file to attach to their email (the gateway tells threading once the
    mail edge stored it). Only such files, and attachments of the emails of the case being
    worked, may leave with an agent's email. Answered with ``{"attachment_id": ...}``."""

    NAME = "case.upload.record"

    agent_id: str = Field(min_length=1)
    attachment: AttachmentRef


class GetCaseThread(Command):
    """The case and its thread view: every email with From, When, To, Cc, Subject, text."""

    NAME = "case.thread.get"

    case_number: int = Field(ge=1)
    agent_id: str | None = None
    acting_role: Literal["agent", "supervisor"] = Field(
        default="agent", description="agents see the cases they hold or have worked"
    )
    include_drafts: bool = True


class LookUpCase(Command):
    """Find a case by its number (or by its thread identifier): a summary, no email bodies."""

    NAME = "case.lookup"

    case_number: int | None = Field(default=None, ge=1)
    thread_id: str | None = None
    agent_id: str | None = None
    acting_role: Literal["agent", "supervisor"] = Field(
        default="agent", description="agents find only the cases they may see"
    )


class CaseHistoryRequested(Command):
    """The case events threading's stored cases and emails imply, case by case from
    ``after_case_number``: what reporting rebuilds the service figures from (its read model
    wiped, or older than its journal). Supervisors only.

    Answered with ``result`` = :class:`CaseHistoryPage`.
    """

    NAME = "case.history_requested"

    actor_id: SingleLine = Field(min_length=1)
    actor_role: Literal["supervisor"]
    after_case_number: int = Field(default=0, ge=0, description="0: from the first case")
    limit: int = Field(default=200, ge=1, le=2000, description="cases per page")


class RecordedEvent(BaseModel):
    """One event as its contract serialises it (``name`` says which)."""

    name: str
    body: dict[str, object]


class CaseHistoryPage(BaseModel):
    events: list[RecordedEvent] = Field(description="by case, each case's in time order")
    next_after: int | None = Field(
        default=None, description="ask again with this as after_case_number; None: the last page"
    )


class CaseSummary(BaseModel):
    """The shape of a case in query answers (documentation; answers are plain dicts)."""

    model_config = ConfigDict(frozen=True)

    case_number: int
    status: CaseStatus
    service: str
    subject: str
    contact: Address | None = None
    thread_id: str | None = None
    agents: list[str] = Field(default_factory=list)
    linked_cases: list[int] = Field(default_factory=list)
    created_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None


class ListReplyTemplates(Command):
    """The reply templates an agent may use: ``result = {"templates": [{template_id, name,
    services, subject, text, html, variables, version, updated_at}], "variables": {...}}``."""

    NAME = "case.template.list"

    agent_id: str | None = None
    service: str | None = Field(default=None, description="only those offered in this service")
