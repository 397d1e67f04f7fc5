"""Preview outbound campaigns and their calling records (owned by the campaign dialer).

Operators create and change campaigns and import records; agents act on the record they hold
(accept, complete, skip, call, set a disposition, reschedule, read it). Every agent command names
the agent, and the dialer refuses it when the record is not held by that agent. The dialer asks
telephony to dial (``dial.requested``) and follows the call (``call.progressed``).

Large record files go through the dialer's HTTP upload (``POST /dialer/imports``), which streams
the body; :class:`ImportRecords` carries small inline files over the bus.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.base import Command, Event, SingleLine
from switchboard.contracts.cases import RecordedEvent

DispositionKind = Literal["success", "final_failure", "retry", "reschedule", "bad_record"]
CallStatus = Literal["dialing", "ringing", "answered", "busy", "no_answer", "failed", "ended"]
ImportFormat = Literal["csv", "jsonl"]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _clock(value: str) -> str:
    if not _CLOCK.match(value):
        raise ValueError("must be a local time HH:MM (00:00 to 24:00)")
    return value


Clock = Annotated[str, AfterValidator(_clock)]
"""A local time of day, ``HH:MM``; ``24:00`` is the end of the day."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CallingHours(_Frozen):
    """When a number may be called, in the called party's local time: [start, end)."""

    start: Clock = "08:00"
    end: Clock = "21:00"


class NumberRule(_Frozen):
    """Recommend a number of this type when the party's local time is within [start, end)."""

    number_type: str
    start: Clock = "00:00"
    end: Clock = "24:00"


class SkipPolicy(_Frozen):
    delay_seconds: int = Field(default=900, ge=0, description="before the record is offered again")
    max_skips: int = Field(default=3, ge=1, description="the record closes after this many skips")


class Disposition(_Frozen):
    name: str = Field(min_length=1)
    kind: DispositionKind
    retry_delay_seconds: int | None = Field(
        default=None, ge=0, description="retry/reschedule: wait this long (campaign default else)"
    )
    marks_number_bad: bool = Field(
        default=False, description="the number called is never recommended nor dialled again"
    )


def default_dispositions() -> list[Disposition]:
    return [
        Disposition(name="Success", kind="success"),
        Disposition(name="Not Interested", kind="final_failure"),
        Disposition(name="Busy", kind="retry", retry_delay_seconds=600),
        Disposition(name="No Answer", kind="retry", retry_delay_seconds=1800),
        Disposition(name="Answering Machine", kind="retry", retry_delay_seconds=3600),
        Disposition(
            name="Wrong Number", kind="retry", retry_delay_seconds=0, marks_number_bad=True
        ),
        Disposition(name="Call Back", kind="reschedule", retry_delay_seconds=3600),
        Disposition(name="Bad Record", kind="bad_record"),
    ]


def default_number_rules() -> list[NumberRule]:
    return [
        NumberRule(number_type="work", start="09:00", end="17:00"),
        NumberRule(number_type="mobile"),
        NumberRule(number_type="home"),
    ]


class CampaignSpec(_Frozen):
    """Everything an operator configures on a campaign."""

    name: str = Field(min_length=1)
    service: str = Field(min_length=1, description="the routing service (queue) of its previews")
    mode: Literal["preview"] = "preview"
    active: bool = True
    calling_hours: CallingHours = Field(default_factory=CallingHours)
    default_time_zone: str = Field(
        default="America/New_York", description="when neither record nor number gives a zone"
    )
    default_region: str = Field(default="US", description="for numbers written without +country")
    max_attempts: int = Field(default=6, ge=1, description="calls per record")
    max_attempts_per_number: int = Field(default=3, ge=1)
    retry_delay_seconds: int = Field(default=3600, ge=0, description="for retries without own")
    auto_accept: bool = False
    review_seconds: int | None = Field(
        default=None, ge=1, description="after this the recommended number is dialled by itself"
    )
    skip_policy: SkipPolicy = Field(default_factory=SkipPolicy)
    dispositions: list[Disposition] = Field(default_factory=default_dispositions)
    default_disposition: str = Field(
        default="Bad Record", description="the disposition of Complete without a call"
    )
    number_rules: list[NumberRule] = Field(default_factory=default_number_rules)
    do_not_call: list[str] = Field(default_factory=list, description="this campaign's DNC list")
    preview_backlog: int = Field(
        default=5, ge=1, description="records waiting in routing at once (the rest stay pending)"
    )


class PhoneInput(_Frozen):
    number: str
    type: str = "other"


class RecordInput(_Frozen):
    external_id: str | None = None
    name: str
    phones: list[PhoneInput] = Field(default_factory=list)
    time_zone: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)


# -- operator commands -------------------------------------------------------------------------


class CreateCampaign(Command):
    """Create a campaign; refused when the id is taken."""

    NAME = "campaign.create"

    campaign_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    campaign: CampaignSpec


class UpdateCampaign(Command):
    """Replace a campaign's configuration (deactivate it with ``active = false``)."""

    NAME = "campaign.update"

    campaign_id: str
    campaign: CampaignSpec


class ChangeDoNotCall(Command):
    """Add numbers to or remove them from a DNC list: the global one, or a campaign's."""

    NAME = "campaign.dnc.change"

    campaign_id: str | None = Field(default=None, description="none: the global list")
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    default_region: str = "US"


class ImportRecords(Command):
    """Import a small file inline (large files: ``POST /dialer/imports``).

    Answered with the import summary: counts and every bad row with its line and reason.
    """

    NAME = "campaign.records.import"

    campaign_id: str
    format: ImportFormat
    content: str = Field(max_length=2_000_000)
    default_region: str | None = None


class GetImport(Command):
    """The progress and result of one import (``result`` = the import document)."""

    NAME = "campaign.import.get"

    import_id: str


class GetCampaignReport(Command):
    """Records by state and disposition, attempts, skips by agent, contact rate."""

    NAME = "campaign.report.get"

    campaign_id: str


class ListCampaigns(Command):
    """Every campaign with its live figures (the wallboard's campaign list).

    ``result = {"campaigns": [report, ...]}``: each a :class:`GetCampaignReport` answer plus
    ``active``.
    """

    NAME = "campaign.list"


class CampaignHistoryRequested(Command):
    """The campaign events the dialer's stored records imply, record by record from
    ``after_record_id``: each call's ``dial.requested`` (and ``call.progressed`` answered when
    it was), and the record events of its journal. What reporting rebuilds the campaign figures
    from (its read model wiped, or older than its journal). Supervisors only.

    Answered with ``result`` = :class:`CampaignHistoryPage`.
    """

    NAME = "campaign.history_requested"

    actor_id: SingleLine = Field(min_length=1)
    actor_role: Literal["supervisor"]
    after_record_id: str = Field(
        default="", max_length=200, description="the previous page's next_after; empty: first"
    )
    limit: int = Field(default=200, ge=1, le=2000, description="records per page")


class CampaignHistoryPage(BaseModel):
    events: list[RecordedEvent] = Field(description="by record, each record's in time order")
    next_after: str | None = Field(
        default=None, description="ask again with this as after_record_id; None: the last page"
    )


# -- agent commands ----------------------------------------------------------------------------


class RecordCommand(Command):
    agent_id: str
    record_id: str
    acting_role: Literal["agent", "supervisor"] = Field(
        default="agent",
        description="supervisors see every record; agents only one offered to or held by them",
    )


class AcceptRecord(RecordCommand):
    """Accept the preview offered to this agent."""

    NAME = "campaign.record.accept"


class RejectRecord(RecordCommand):
    """Decline the preview offered to this agent: routing offers it to someone else."""

    NAME = "campaign.record.reject"

    reason: str = ""


class GetRecord(RecordCommand):
    """The preview: campaign, customer, numbers (the recommended one marked), history."""

    NAME = "campaign.record.get"


class CompleteRecord(RecordCommand):
    """Finish the record; without a call or disposition it takes the campaign default."""

    NAME = "campaign.record.complete"

    disposition: str | None = None
    note: str = ""


class SkipRecord(RecordCommand):
    """Give the record back; it is offered again after the campaign's skip delay."""

    NAME = "campaign.record.skip"

    reason: str = ""


class CallNumber(RecordCommand):
    """Dial one of the record's numbers (``None``: the recommended one)."""

    NAME = "campaign.record.call"

    number: str | None = None


class SetCallDisposition(RecordCommand):
    """Say how the last call went (required after a call before completing or skipping)."""

    NAME = "campaign.record.disposition"

    disposition: str
    note: str = ""


class RescheduleRecord(RecordCommand):
    """Call again at ``at``, by this agent only (``personal``) or by anyone."""

    NAME = "campaign.record.reschedule"

    at: AwareDatetime
    personal: bool = False
    disposition: str | None = Field(default=None, description="a disposition of kind reschedule")
    note: str = ""


# -- telephony ---------------------------------------------------------------------------------


class DialRequested(Event):
    """Telephony: place this call for the agent (the adapter answers with call.progressed)."""

    NAME = "dial.requested"

    call_id: str
    record_id: str
    campaign_id: str
    agent_id: str
    number: str = Field(description="E.164")
    automatic: bool = Field(default=False, description="dialled by the review timer")


class CallProgressed(Event):
    """What happened to a call: ringing, answered, busy, no answer, failed, ended."""

    NAME = "call.progressed"

    call_id: str
    status: CallStatus
    detail: str = ""
    at: AwareDatetime | None = None


# -- record events -----------------------------------------------------------------------------


class RecordEvent(Event):
    """What every record event carries (the dialer's journal reads them all as this)."""

    record_id: str
    campaign_id: str
    agent_id: str | None = None
    change: str = ""
    disposition: str | None = None
    state: str = ""


class RecordCompleted(RecordEvent):
    NAME = "campaign.record_completed"

    change: str = "completed"


class RecordSkipped(RecordEvent):
    NAME = "campaign.record_skipped"

    change: str = "skipped"


class RecordRescheduled(RecordEvent):
    NAME = "campaign.record_rescheduled"

    change: str = "rescheduled"
    at: AwareDatetime | None = None
    personal: bool = False


class RecordDispositioned(RecordEvent):
    NAME = "campaign.record_dispositioned"

    change: str = "dispositioned"
    call_id: str | None = None


class RecordClosed(RecordEvent):
    """The record left the campaign without an agent: DNC, attempts used up, no number."""

    NAME = "campaign.record_closed"

    change: str = "closed"
    reason: str = ""
