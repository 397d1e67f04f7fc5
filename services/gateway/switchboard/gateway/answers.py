"""The shapes of the owners' answers that the desktop reads, for the OpenAPI document.

The gateway passes each owner's ``result`` through; these models name the fields a client may
rely on, so ``web/src/gateway.d.ts`` types them. Each keeps the fields it does not name
(``extra="allow"``): an owner adding a field never breaks an answer.
"""

from __future__ import annotations

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


class CampaignReport(Answer):
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


class CampaignFigures(CampaignReport):
    active: bool = False


class CampaignList(Answer):
    campaigns: list[CampaignFigures]
