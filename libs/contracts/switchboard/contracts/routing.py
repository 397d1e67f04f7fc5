"""Work being routed to agents: requests, offers (reservations), assignments, endings.

Routing owns offers and live assignments. Threading and the dialer ask for work to be routed;
agent-state follows offers and assignments to move agents between Ready, Busy, wrap-up and RONA.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.agents import SkillName, WorkChannel
from switchboard.contracts.base import Command, Event, SingleLine
from switchboard.contracts.cases import RecordedEvent

RouteReason = Literal["new", "follow_up", "transfer", "preview", "requeue"]


class RouteRequested(Command):
    """Please find an agent for this interaction (an email of a case, or a calling record)."""

    NAME = "interaction.route_requested"

    interaction_id: str = Field(description="stable id, e.g. 'case-14355' or 'record-<id>'")
    channel: WorkChannel
    service: str
    reason: RouteReason = "new"
    preferred_agent_id: str | None = Field(
        default=None, description="offer to this agent first, within the preferred-agent wait"
    )
    personal_agent_id: str | None = Field(
        default=None, description="work meant for this agent only (personal queue)"
    )
    priority: int | None = Field(default=None, description="overrides the service priority")
    summary: dict[str, Any] = Field(
        default_factory=dict, description="what the offer shows: subject, customer, campaign"
    )
    requested_at: AwareDatetime | None = None


class RouteWithdrawn(Command):
    """Stop routing this interaction (closed elsewhere, record finished)."""

    NAME = "interaction.route_withdrawn"

    interaction_id: str
    reason: str = ""


class OfferMade(Event):
    """An interaction was reserved for one agent, who may accept it until ``expires_at``."""

    NAME = "offer.made"

    offer_id: str
    interaction_id: str
    agent_id: str
    channel: WorkChannel
    service: str
    expires_at: AwareDatetime
    auto_accept: bool = False
    summary: dict[str, Any] = Field(default_factory=dict)


class OfferAnswer(Command):
    """The agent's answer to an offer (sent by the gateway on the agent's behalf)."""

    NAME = "offer.answer"

    offer_id: str
    agent_id: str
    accept: bool
    reason: str = ""


class OfferRejected(Event):
    NAME = "offer.rejected"

    offer_id: str
    interaction_id: str
    agent_id: str
    reason: str = ""


class OfferTimedOut(Event):
    """Nobody answered the offer in time: the agent goes RONA, the work goes back in line."""

    NAME = "offer.timed_out"

    offer_id: str
    interaction_id: str
    agent_id: str
    channel: WorkChannel


class InteractionAssigned(Event):
    """An agent now owns this interaction (accepted, auto-accepted, or pulled from a queue)."""

    NAME = "interaction.assigned"

    interaction_id: str
    agent_id: str
    channel: WorkChannel
    service: str
    offer_id: str | None = None
    how: Literal["accepted", "auto_accepted", "pulled"] = "accepted"


class InteractionQueued(Event):
    """The interaction waits in its service's queue (or an agent's personal queue)."""

    NAME = "interaction.queued"

    interaction_id: str
    channel: WorkChannel
    service: str
    personal_agent_id: str | None = None


class WaitingChanged(Event):
    """Routing's own news to its other replicas: an interaction's place in the queues changed.

    Every routing replica keeps the queues' order in memory; the replica that wrote the change
    tells the others here (each hears it on a queue of its own). ``version`` grows with every
    write of the interaction, so an older notice never undoes a newer one.
    """

    NAME = "routing.waiting.changed"

    interaction_id: str
    version: int = Field(ge=0)
    waiting: bool
    service: str = ""
    priority: int = 0
    queued_at: AwareDatetime | None = None
    personal_agent_id: str | None = None


class InteractionEnded(Event):
    """The agent finished with the interaction: routing frees the capacity, agent-state moves on.

    Sent by the service that owns the work (threading for email, the dialer for records).
    """

    NAME = "interaction.ended"

    interaction_id: str
    agent_id: str
    channel: WorkChannel
    wrap_up: bool = Field(default=False, description="the agent goes to After Call Work")
    outcome: str = Field(default="", description="completed, closed, transferred, skipped ...")


class LiveAssignmentsRequested(Command):
    """Ask routing which interactions each agent holds now (agent-state reconciles with it).

    Answered with ``result = {"assignments": {agent_id: [interaction_id, ...]}}``.
    """

    NAME = "interaction.live_assignments_requested"

    agent_ids: list[str] = Field(default_factory=list, description="empty: every agent")


class AgentServicesRequested(Command):
    """Ask routing which services an agent belongs to (the services of their teams), as its
    projection of agent profiles and its service catalog say. Owners of work use it to let an
    agent see the cases of their services (docs/security.md).

    Answered with ``result = {"services": [name, ...]}`` (empty for an agent routing does not
    know).
    """

    NAME = "routing.agent_services_requested"

    agent_id: str = Field(min_length=1)


# --- added by routing: service configuration, queues, transfers, supervisor view -------------
#
# Every command below is answered (request/reply) with an ``Outcome``; a refusal names its field.
# Agent commands carry ``agent_id``: the agent who acts. Routing refuses (code ``not_yours``) an
# action on an offer or an interaction that agent does not hold.


class ServiceDefinition(BaseModel):
    """One routing service (a queue): what work it holds and who may take it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=100)
    channel: WorkChannel
    priority: int = Field(default=0, description="higher is served first")
    required_skills: dict[SkillName, int] = Field(
        default_factory=dict, description="skill name -> minimum level (1-10)"
    )
    team: str | None = Field(default=None, description="only members of this team; none: anyone")
    offer_timeout_seconds: float = Field(default=30.0, gt=0, description="the RONA timeout")
    preferred_agent_wait_seconds: float = Field(default=0.0, ge=0)
    auto_accept: bool = False
    overflow_service: str | None = Field(
        default=None, description="where personal-queue work of this service overflows to"
    )
    personal_overflow_seconds: float | None = Field(
        default=None, gt=0, description="personal-queue work goes to the team after this; none"
    )


class ServiceConfigured(Command):
    """Create or replace a routing service. Answered with ``{"service": {...}}``."""

    NAME = "routing.service.configure"

    service: ServiceDefinition
    actor: str = ""


class ServiceRemoved(Command):
    """Remove a routing service; refused (``service_in_use``) while work waits in it."""

    NAME = "routing.service.remove"

    name: str
    actor: str = ""


class ServicesListRequested(Command):
    """Answered with ``{"services": [ServiceDefinition, ...]}``."""

    NAME = "routing.service.list"


class TeamQueueListRequested(Command):
    """The waiting emails of the agent's services. Answered with ``{"items": [QueueItem, ...]}``."""

    NAME = "routing.team_queue.list"

    agent_id: str
    service: str | None = Field(default=None, description="only this service")
    limit: int = Field(default=50, ge=1, le=500)


class TeamQueuePull(Command):
    """Take one waiting email from the team queue (atomic claim; two agents never get one).

    Without ``interaction_id`` the head of the queue is taken. Answered with
    ``{"interaction_id": ..., "service": ..., "channel": ...}``.
    """

    NAME = "routing.team_queue.pull"

    agent_id: str
    interaction_id: str | None = None
    service: str | None = None


class PersonalQueueListRequested(Command):
    """Work waiting for this agent only. Answered with ``{"items": [QueueItem, ...]}``."""

    NAME = "routing.personal_queue.list"

    agent_id: str
    limit: int = Field(default=50, ge=1, le=500)


class PersonalQueuePull(Command):
    """Take one item of the agent's personal queue (the oldest without ``interaction_id``)."""

    NAME = "routing.personal_queue.pull"

    agent_id: str
    interaction_id: str | None = None


class TransferRequested(Command):
    """The agent holding an interaction hands it to another service or to a named agent.

    With ``to_agent_id`` the work waits in that agent's personal queue (in ``to_service`` or
    the current service). Answered with ``{"interaction_id": ..., "service": ...}``.
    """

    NAME = "interaction.transfer_requested"

    interaction_id: str
    agent_id: str = Field(description="the agent who holds the interaction and transfers it")
    to_service: str | None = None
    to_agent_id: str | None = None
    reason: str = ""


class InteractionTransferred(Event):
    """The holder gave the interaction away: its capacity is free, the work waits again."""

    NAME = "interaction.transferred"

    interaction_id: str
    from_agent_id: str
    channel: WorkChannel
    from_service: str
    to_service: str
    to_agent_id: str | None = None
    reason: str = ""


class OfferCancelled(Event):
    """A live offer was taken back (the route was withdrawn, the agent logged out): the agent's
    desktop should close it."""

    NAME = "offer.cancelled"

    offer_id: str
    interaction_id: str
    agent_id: str
    reason: str = ""


class QueueViewRequested(Command):
    """Supervisor view. Answered with ``{"services": {name: {"depth", "oldest_wait_seconds",
    "offered", "assigned", "personal"}}}``."""

    NAME = "routing.queue_view.requested"

    services: list[str] = Field(default_factory=list, description="empty: every service")


class InteractionHistoryRequested(Command):
    """The routing events routing's stored interactions imply, interaction by interaction
    from ``after_interaction_id``: each unanswered offer (``offer.made`` then
    ``offer.timed_out``), each assignment, transfer and end. What reporting rebuilds RONA
    counts, handled interactions and handle times from (its read model wiped, or older than its
    journal). Supervisors only.

    Answered with ``result`` = :class:`InteractionHistoryPage`.
    """

    NAME = "routing.history_requested"

    actor_id: SingleLine = Field(min_length=1)
    actor_role: Literal["supervisor"]
    after_interaction_id: str = Field(
        default="", max_length=300, description="the previous page's next_after; empty: first"
    )
    limit: int = Field(default=200, ge=1, le=2000, description="interactions per page")


class InteractionHistoryPage(BaseModel):
    events: list[RecordedEvent] = Field(
        description="by interaction, each interaction's in time order"
    )
    next_after: str | None = Field(
        default=None,
        description="ask again with this as after_interaction_id; None: the last page",
    )
