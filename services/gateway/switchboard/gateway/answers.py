"""The shapes of the owners' answers that the desktop reads, for the OpenAPI document.

The gateway passes each owner's ``result`` through; these models name the fields a client may
rely on, so ``web/src/gateway.d.ts`` types them. Each keeps the fields it does not name
(``extra="allow"``): an owner adding a field never breaks an answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from switchboard.contracts.agents import Skill
from switchboard.contracts.routing import ServiceDefinition


class Answer(BaseModel):
    # a field with a default is always in the answer: required in the document's answers
    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)


class AgentView(Answer):
    """An agent as agent-state describes it: profile, state and time in it."""

    agent_id: str
    name: str = ""
    teams: list[str] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list)
    capacity: dict[str, int] = Field(default_factory=dict)
    active: bool = True
    state: str
    reason: str = ""
    since: str | None = None
    sequence: int = 0
    not_ready_pending: bool = False
    pending_reason: str | None = None
    live: dict[str, int] = Field(default_factory=dict)
    wrap_up_due: str | None = None
    connection_lost: bool = False


class AgentStates(Answer):
    agents: list[AgentView]
    not_ready_reasons: list[str] = Field(default_factory=list)


class QueueFigures(Answer):
    """One service's queue: waiting (team and personal), offered, assigned."""

    depth: int = 0
    oldest_wait_seconds: float = 0.0
    offered: int = 0
    assigned: int = 0
    personal: int = 0


class QueueView(Answer):
    services: dict[str, QueueFigures]


class Assignments(Answer):
    assignments: dict[str, list[str]] = Field(description="agent id -> interaction ids held")


class ServiceList(Answer):
    services: list[ServiceDefinition]


class WaitingItem(Answer):
    interaction_id: str
    service: str
    channel: str
    priority: int = 0
    queued_at: str
    waited_seconds: float = 0.0
    reason: str = "new"
    summary: dict[str, object] = Field(default_factory=dict)


class WaitingList(Answer):
    items: list[WaitingItem]


class TemplateView(Answer):
    template_id: str
    name: str
    text: str


class TemplateList(Answer):
    templates: list[TemplateView]


class CampaignProgress(Answer):
    """A campaign's figures: records by state, attempts, contacts, skips."""

    campaign_id: str
    name: str = ""
    records: int = 0
    by_state: dict[str, int] = Field(default_factory=dict)
    by_disposition: dict[str, int] = Field(default_factory=dict)
    by_result: dict[str, int] = Field(default_factory=dict)
    attempts: int = 0
    contacts: int = 0
    contact_rate: float = 0.0
    skips: int = 0
    skips_by_agent: dict[str, int] = Field(default_factory=dict)


class CampaignListed(CampaignProgress):
    active: bool = False


class CampaignList(Answer):
    campaigns: list[CampaignListed]


# -- a case and its thread (threading's case.thread.get) --------------------------------------


class AddressView(Answer):
    """An address as filed (not checked again: a customer's may be odd)."""

    name: str | None = ""
    address: str


class AttachmentView(Answer):
    attachment_id: str
    filename: str
    content_type: str = "application/octet-stream"
    size: int = 0


class Delivery(Answer):
    status: str
    detail: str | None = None
    at: str | None = None


class EmailView(Answer):
    email_id: str
    direction: Literal["inbound", "outbound"]
    kind: str | None = None
    sender: AddressView | None = Field(default=None, alias="from")
    when: str | None = None
    to: list[AddressView] = Field(default_factory=list)
    cc: list[AddressView] = Field(default_factory=list)
    bcc: list[AddressView] = Field(default_factory=list)
    subject: str = ""
    text: str = ""
    html_ref: str | None = None
    html: str | None = None
    html_withheld: bool = False
    attachments: list[AttachmentView] = Field(default_factory=list)
    masked: bool = False
    delivery: Delivery | None = None
    agent_id: str | None = None


class NoteView(Answer):
    text: str
    agent_id: str | None = None
    at: str | None = None
    created_at: str | None = None


class DispositionMark(Answer):
    name: str
    agent_id: str | None = None
    at: str | None = None
    final: bool = False


class CaseSummary(Answer):
    case_number: int
    status: str
    service: str
    subject: str = ""
    contact: AddressView | None = None
    thread_id: str | None = None
    agents: list[str] = Field(default_factory=list)
    assigned_agent_id: str | None = None
    dispositions: list[DispositionMark] = Field(default_factory=list)
    final_disposition: str | None = None
    notes: list[NoteView] = Field(default_factory=list)
    linked_cases: list[int] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    closed_at: str | None = None


class DraftContent(Answer):
    to: list[AddressView] = Field(default_factory=list)
    cc: list[AddressView] = Field(default_factory=list)
    bcc: list[AddressView] = Field(default_factory=list)
    subject: str | None = None
    text: str = ""
    attachments: list[AttachmentView] = Field(default_factory=list)
    template_id: str | None = None


class DraftView(Answer):
    draft_id: str
    kind: Literal["reply", "forward", "follow_up"]
    reply_to_email_id: str | None = None
    content: DraftContent = Field(default_factory=DraftContent)
    version: int = 0


class DraftSaved(Answer):
    draft_id: str
    version: int = 1


class DispositionChoice(Answer):
    name: str
    final: bool = False


class CaseThread(Answer):
    case: CaseSummary
    emails: list[EmailView]
    drafts: list[DraftView] = Field(default_factory=list)
    service_dispositions: list[DispositionChoice] = Field(default_factory=list)


# -- My Cases, search, contact history (threading's case.mine / case.search / case.contact_history)


class CaseRow(Answer):
    """One case in a page (``switchboard.contracts.casebook.CaseRow``)."""

    case_number: int
    subject: str = ""
    contact: AddressView | None = None
    service: str
    status: str
    work_status: str = ""
    last_activity: str | None = None
    new_mail_waiting: bool = False
    thread_id: str | None = None
    final_disposition: str | None = None
    preview: str = ""


class CasePage(Answer):
    """A page of cases, newest activity first; ``has_more`` when a next page exists."""

    cases: list[CaseRow]
    page: int
    page_size: int
    has_more: bool = False


# -- a preview record (the dialer's campaign.record.get) --------------------------------------


class NumberView(Answer):
    number: str
    type: str = ""
    recommended: bool = False
    callable_now: bool = False
    why_not: str | None = None
    local_time: str = ""
    attempts: int = 0


class AttemptView(Answer):
    """One call of the record: its number, when, how it went, its disposition."""

    call_id: str = ""
    at: str | None = None
    number: str = ""
    agent_id: str | None = None
    status: str = "requested"
    answered: bool = False
    ended_at: str | None = None
    disposition: str | None = None
    note: str = ""


class RecordDisposition(Answer):
    name: str
    kind: str = ""


class RecordPreview(Answer):
    record_id: str
    campaign_id: str
    campaign: str = ""
    customer: str | None = None
    state: str
    fields: dict[str, object] = Field(default_factory=dict)
    numbers: list[NumberView] = Field(default_factory=list)
    recommended: str | None = None
    attempts: list[AttemptView] = Field(default_factory=list)
    skips: int = 0
    review_due: str | None = None
    needs_disposition: bool = False
    active_call: AttemptView | None = None
    dispositions: list[RecordDisposition] = Field(default_factory=list)
