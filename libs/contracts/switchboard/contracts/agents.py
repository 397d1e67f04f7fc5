"""What the agent-state service tells everyone about agents.

Agent-state owns these; routing, the dialer and the gateway keep their own projections of them.
Consumers ignore a change whose ``sequence`` is not newer than the last one they applied.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.base import Command, Event, SingleLine

AgentState = Literal["logged_out", "not_ready", "ready", "busy", "wrap_up", "rona"]
WorkChannel = Literal["email", "preview"]
ActorRole = Literal["agent", "supervisor"]
PendingChange = Literal["not_ready", "rona"]


SkillName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^.$\x00]+$",
        description="a skill's name: no dot, no $ (it is a key of stored documents)",
    ),
]


class Skill(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: SkillName
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
    profile_version: int = Field(
        default=0, ge=0, description="per agent, increasing with each change of the profile"
    )


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
    pending: PendingChange | None = Field(
        default=None,
        description="what the agent goes to when the live work ends (not_ready or rona)",
    )
    live: dict[str, int] = Field(
        default_factory=dict, description="live interactions per channel after this change"
    )


# --- commands (the gateway sends them on behalf of a person) --------------------------------


class AgentCommand(Command):
    """A command about one agent, carrying the person who acts.

    An agent may only act on themselves (``actor_id == agent_id``); a supervisor may act on anyone.
    """

    agent_id: SingleLine = Field(min_length=1)
    actor_id: SingleLine = Field(
        min_length=1, description="the person acting (agent or supervisor)"
    )
    actor_role: ActorRole


class RegisterAgent(AgentCommand):
    """Register an agent or replace their profile (supervisor only). Answers the profile."""

    NAME = "agent.register"

    name: SingleLine = Field(min_length=1)
    teams: list[str] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list)
    capacity: dict[WorkChannel, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=dict, description="items of a channel taken at once, e.g. email 5"
    )
    active: bool = True


class LogIn(AgentCommand):
    """Start a working session: Logged out -> Not Ready (default) or Ready."""

    NAME = "agent.log_in"

    initial_state: Literal["not_ready", "ready"] = "not_ready"
    reason: str = Field(default="", description="Not Ready reason when starting Not Ready")


class LogOut(AgentCommand):
    """End the working session (an agent with live work must finish it first)."""

    NAME = "agent.log_out"

    reason: str = ""


class SetReady(AgentCommand):
    """Make the agent Ready (from Not Ready, wrap-up or RONA); while Busy it cancels a pending
    Not Ready."""

    NAME = "agent.set_ready"


class SetNotReady(AgentCommand):
    """Make the agent Not Ready with a reason from the configured list (pending while Busy)."""

    NAME = "agent.set_not_ready"

    reason: SingleLine = Field(min_length=1)


class AgentHeartbeat(AgentCommand):
    """The agent's desktop is still there (sent periodically by the gateway)."""

    NAME = "agent.heartbeat"


class ForceAgentState(AgentCommand):
    """A supervisor forces an agent's state (Ready, Not Ready or Logged out) with a reason."""

    NAME = "agent.force_state"

    state: Literal["logged_out", "not_ready", "ready"]
    reason: SingleLine = Field(min_length=1)


class AgentStatesRequested(Command):
    """Who is in which state now. Answered with ``result = {"agents": [...]}``.

    An agent sees only themselves; a supervisor sees everyone (optionally one team or ids).
    """

    NAME = "agent.states_requested"

    actor_id: SingleLine = Field(min_length=1)
    actor_role: ActorRole
    agent_ids: list[str] = Field(default_factory=list, description="empty: every agent")
    team: str | None = None


class StateHistoryRequested(Command):
    """The state changes agent-state has recorded, by agent then sequence, one page at a time:
    what reporting rebuilds each agent's time in each state from (its read model wiped, or
    older than its journal). Supervisors only.

    Answered with ``result`` = :class:`StateHistoryPage`.
    """

    NAME = "agent.state_history_requested"

    actor_id: SingleLine = Field(min_length=1)
    actor_role: Literal["supervisor"]
    after: str = Field(
        default="",
        max_length=300,
        description="the previous page's next_after; empty: from the first change",
    )
    limit: int = Field(default=500, ge=1, le=5000)


class StateHistoryPage(BaseModel):
    """One page of recorded changes, as agent-state published them (the flags of the moment
    that the history does not keep, such as ``live``, at their defaults)."""

    changes: list[AgentStateChanged]
    next_after: str | None = Field(
        default=None, description="ask again with this as after; None: this was the last page"
    )


class StateReportRequested(Command):
    """Time spent in each state per agent per interval, for reports.

    Answered with ``result = {"rows": [{"agent_id", "interval_start", "state", "seconds"}]}``.
    """

    NAME = "agent.state_report_requested"

    actor_id: SingleLine = Field(min_length=1)
    actor_role: ActorRole
    start: AwareDatetime
    end: AwareDatetime
    interval_seconds: int = Field(default=3600, ge=60, le=31 * 86400)
    agent_ids: list[str] = Field(default_factory=list, description="empty: every agent")
