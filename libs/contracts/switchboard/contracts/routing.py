"""Work being routed to agents: requests, offers (reservations), assignments, endings.

Routing owns offers and live assignments. Threading and the dialer ask for work to be routed;
agent-state follows offers and assignments to move agents between Ready, Busy, wrap-up and RONA.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

from switchboard.contracts.agents import WorkChannel
from switchboard.contracts.base import Command, Event

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
