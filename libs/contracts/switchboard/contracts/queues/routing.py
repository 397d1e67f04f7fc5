"""The queues the routing service consumes: one per message type (one model per consumer)."""

from __future__ import annotations

from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged
from switchboard.contracts.cases import CaseMasked
from switchboard.contracts.routing import (
    AgentServicesRequested,
    InteractionEnded,
    InteractionHistoryRequested,
    LiveAssignmentsRequested,
    OfferAnswer,
    PersonalQueueListRequested,
    PersonalQueuePull,
    QueueViewRequested,
    RouteRequested,
    RouteWithdrawn,
    ServiceConfigured,
    ServiceRemoved,
    ServicesListRequested,
    TeamQueueListRequested,
    TeamQueuePull,
    TransferRequested,
)
from switchboard.contracts.topology import ConsumerQueue

ROUTE_REQUESTS = ConsumerQueue("routing.route-requests", (RouteRequested.NAME,))
ROUTE_WITHDRAWALS = ConsumerQueue("routing.route-withdrawals", (RouteWithdrawn.NAME,))
OFFER_ANSWERS = ConsumerQueue("routing.offer-answers", (OfferAnswer.NAME,))
INTERACTIONS_ENDED = ConsumerQueue("routing.interactions-ended", (InteractionEnded.NAME,))
AGENT_PROFILES = ConsumerQueue("routing.agent-profiles", (AgentProfileChanged.NAME,))
AGENT_STATES = ConsumerQueue("routing.agent-states", (AgentStateChanged.NAME,))
LIVE_ASSIGNMENTS = ConsumerQueue("routing.live-assignments", (LiveAssignmentsRequested.NAME,))
AGENT_SERVICES = ConsumerQueue("routing.agent-services", (AgentServicesRequested.NAME,))
CASES_MASKED = ConsumerQueue("routing.cases-masked", (CaseMasked.NAME,))
SERVICE_CONFIGURE = ConsumerQueue("routing.service-configure", (ServiceConfigured.NAME,))
SERVICE_REMOVE = ConsumerQueue("routing.service-remove", (ServiceRemoved.NAME,))
SERVICE_LIST = ConsumerQueue("routing.service-list", (ServicesListRequested.NAME,))
TEAM_QUEUE_LIST = ConsumerQueue("routing.team-queue-list", (TeamQueueListRequested.NAME,))
TEAM_QUEUE_PULL = ConsumerQueue("routing.team-queue-pull", (TeamQueuePull.NAME,))
PERSONAL_QUEUE_LIST = ConsumerQueue(
    "routing.personal-queue-list", (PersonalQueueListRequested.NAME,)
)
PERSONAL_QUEUE_PULL = ConsumerQueue("routing.personal-queue-pull", (PersonalQueuePull.NAME,))
TRANSFERS = ConsumerQueue("routing.transfers", (TransferRequested.NAME,))
QUEUE_VIEW = ConsumerQueue("routing.queue-view", (QueueViewRequested.NAME,))
HISTORY = ConsumerQueue("routing.history", (InteractionHistoryRequested.NAME,))

ALL = (
    ROUTE_REQUESTS,
    ROUTE_WITHDRAWALS,
    OFFER_ANSWERS,
    INTERACTIONS_ENDED,
    AGENT_PROFILES,
    AGENT_STATES,
    LIVE_ASSIGNMENTS,
    AGENT_SERVICES,
    CASES_MASKED,
    SERVICE_CONFIGURE,
    SERVICE_REMOVE,
    SERVICE_LIST,
    TEAM_QUEUE_LIST,
    TEAM_QUEUE_PULL,
    PERSONAL_QUEUE_LIST,
    PERSONAL_QUEUE_PULL,
    TRANSFERS,
    QUEUE_VIEW,
    HISTORY,
)
