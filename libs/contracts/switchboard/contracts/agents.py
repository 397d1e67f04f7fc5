"""What the agent-state service tells everyone about agents.

Agent-state owns these; routing, the dialer and the gateway keep their own projections of them.
Consumers ignore a change whose ``sequence`` is not newer than the last one they applied.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.base import Event

AgentState = Literal["logged_out", "not_ready", "ready", "busy", "wrap_up", "rona"]
WorkChannel = Literal["email", "preview"]


class Skill(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    level: int = Field(ge=1, le=10)


class AgentProfileChanged(Event):
    """An agent was registered or changed: who they are and what work they can take."""

    NAME = "agent.profile_changed"

    agent_id: str
    name: str
    teams: list[str] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list)
    capacity: dict[WorkChannel, int] = Field(
        default_factory=dict, description="how many items of a channel the agent takes at once"
    )
    active: bool = True


class AgentStateChanged(Event):
    """An agent moved from one state to another."""

    NAME = "agent.state_changed"

    agent_id: str
    previous: AgentState
    state: AgentState
    reason: str = ""
    actor: str = Field(description="the agent, a supervisor id, or 'system'")
    sequence: int = Field(ge=1, description="per agent, increasing: ignore anything not newer")
    changed_at: AwareDatetime
    not_ready_pending: bool = Field(
        default=False, description="Not Ready was asked while busy; no new offers meanwhile"
    )
