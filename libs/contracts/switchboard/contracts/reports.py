"""Supervisors' reports: what the reporting read model tells everyone, and what it answers.

Reporting folds the events the other services publish into hourly figures per service and per
agent and into figures per campaign (``docs/reporting.md``). The gateway asks it with the
commands below (``Bus.request``); the period is validated there and again here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from switchboard.contracts.base import Command, Event

Granularity = Literal["hour", "day"]

MAX_HOURS_BY_HOUR = 31 * 24
"""The longest period asked hour by hour (31 days)."""
MAX_HOURS_BY_DAY = 366 * 24
"""The longest period asked day by day (a year)."""


class CaseFirstResponseOverdue(Event):
    """An open case passed its service's first-response target without an answer to the contact."""

    NAME = "case.first_response_overdue"

    case_number: int
    service: str
    opened_at: AwareDatetime = Field(description="when this round of the case opened")
    due_at: AwareDatetime
    target_seconds: float
    round: int = Field(default=1, ge=1, description="1, then one more per reopening")


class ServiceReportRequested(Command):
    """Figures per service and per hour or day of ``[start, end)``; answered as ServiceReport."""

    NAME = "report.services"

    services: list[str] = Field(default_factory=list, description="empty: every known service")
    start: AwareDatetime
    end: AwareDatetime
    granularity: Granularity = "day"


class AgentReportRequested(Command):
    """Figures per agent over ``[start, end)``; answered as AgentReport."""

    NAME = "report.agents"

    agent_ids: list[str] = Field(default_factory=list, description="empty: every agent seen")
    start: AwareDatetime
    end: AwareDatetime


class CampaignReportRequested(Command):
    """Figures per campaign since it began; answered as CampaignFigures rows."""

    NAME = "report.campaigns"

    campaign_ids: list[str] = Field(default_factory=list, description="empty: every campaign")


class ServicePeriod(BaseModel):
    """One service over one hour or day."""

    service: str
    start: AwareDatetime
    end: AwareDatetime
    opened: int = Field(description="cases created in the period")
    closed: int
    reopened: int
    emails_in: int
    emails_out: int
    first_responses: int = Field(description="rounds first answered in the period")
    first_response_p50_seconds: float | None
    first_response_p90_seconds: float | None
    resolutions: int = Field(description="closings with a known opening")
    resolution_p50_seconds: float | None
    resolution_p90_seconds: float | None
    answered_within_target: int
    service_level: float | None = Field(
        description="answered_within_target / first_responses; none without responses"
    )
    overdue: int = Field(description="rounds that passed the first-response target unanswered")
    backlog_at_end: int = Field(description="cases open in this service at the period's end")
    transfers_in: int
    transfers_out: int
    rona: int = Field(description="offers of this service not answered in time")


class ServiceReport(BaseModel):
    granularity: Granularity
    start: AwareDatetime
    end: AwareDatetime
    rows: list[ServicePeriod]


class AgentFigures(BaseModel):
    """One agent over the period. Times are in seconds."""

    agent_id: str
    handled: int = Field(description="email interactions ended or transferred by the agent")
    replies: int
    average_handle_seconds: float | None = Field(
        description="accept to final disposition or transfer, averaged over handled"
    )
    ready_seconds: float
    not_ready_seconds: dict[str, float] = Field(description="by reason")
    busy_seconds: float
    wrap_up_seconds: float
    rona_seconds: float
    rona: int = Field(description="offers this agent let time out")
    occupancy: float | None = Field(description="(busy + wrap-up) / (ready + busy + wrap-up)")


class AgentReport(BaseModel):
    start: AwareDatetime
    end: AwareDatetime
    rows: list[AgentFigures]


class CampaignFigures(BaseModel):
    campaign_id: str
    records: int = Field(description="records the events have named")
    records_by_status: dict[str, int]
    attempts: int = Field(description="calls dialled")
    contacts: int = Field(description="calls answered")
    skips: int
    dispositions: dict[str, int]
    completed: int
    completion: float | None = Field(description="records completed or closed / records")


class CampaignReport(BaseModel):
    rows: list[CampaignFigures]
