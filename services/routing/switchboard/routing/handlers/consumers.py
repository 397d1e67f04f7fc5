"""Thin message handlers: validate (done by the bus), hand to the router, answer.

:meth:`RoutingHandlers.consumers` is routing's one table of what it consumes: each message
once, with its handler; the queue is the one routing's contracts bind to that message's NAME.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from switchboard.contracts import Message
from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged
from switchboard.contracts.cases import CaseMasked, RecordedEvent
from switchboard.contracts.queues import routing as queues
from switchboard.contracts.routing import (
    AgentServicesRequested,
    InteractionEnded,
    InteractionHistoryPage,
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
    WaitingChanged,
)
from switchboard.contracts.topology import ConsumerQueue
from switchboard.routing.history import interaction_events
from switchboard.routing.router import Router
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.routing")

M = TypeVar("M", bound=Message)
_QUEUES = {queue.binds: queue for queue in queues.ALL}


def queue_of(message: type[Message]) -> ConsumerQueue:
    """Routing's queue of ``message``: the one bound to its NAME alone."""
    try:
        return _QUEUES[(message.NAME,)]
    except KeyError:
        raise LookupError(f"routing has no queue bound to {message.NAME}") from None


@dataclass(frozen=True)
class Consumer(Generic[M]):
    """One consumed message: its model and its handler; the queue follows from the model."""

    message: type[M]
    handler: Callable[[M], Awaitable[dict[str, Any] | None]]

    @property
    def queue(self) -> ConsumerQueue:
        return queue_of(self.message)


class RoutingHandlers:
    def __init__(self, router: Router) -> None:
        self.router = router

    def consumers(self) -> list[Consumer[Any]]:
        """Every message routing consumes, each once, with its handler."""
        return [
            Consumer(RouteRequested, self.on_route_requested),
            Consumer(RouteWithdrawn, self.on_route_withdrawn),
            Consumer(OfferAnswer, self.on_offer_answer),
            Consumer(InteractionEnded, self.on_interaction_ended),
            Consumer(AgentProfileChanged, self.on_agent_profile),
            Consumer(AgentStateChanged, self.on_agent_state),
            Consumer(LiveAssignmentsRequested, self.on_live_assignments),
            Consumer(AgentServicesRequested, self.on_agent_services),
            Consumer(CaseMasked, self.on_case_masked),
            Consumer(ServiceConfigured, self.on_service_configure),
            Consumer(ServiceRemoved, self.on_service_remove),
            Consumer(ServicesListRequested, self.on_services_list),
            Consumer(TeamQueueListRequested, self.on_team_queue_list),
            Consumer(TeamQueuePull, self.on_team_queue_pull),
            Consumer(PersonalQueueListRequested, self.on_personal_queue_list),
            Consumer(PersonalQueuePull, self.on_personal_queue_pull),
            Consumer(TransferRequested, self.on_transfer),
            Consumer(QueueViewRequested, self.on_queue_view),
            Consumer(InteractionHistoryRequested, self.on_history),
        ]

    async def on_waiting_changed(self, message: AbstractIncomingMessage) -> None:
        """A replica wrote an interaction: keep this replica's queue index in step."""
        try:
            self.router.heard(WaitingChanged.model_validate_json(message.body))
        except ValidationError as error:
            log.warning("unreadable queue change ignored", error=str(error))

    async def on_route_requested(self, msg: RouteRequested) -> dict[str, Any]:
        """Queue an interaction and offer it at once if an eligible agent is free."""
        return await self.router.request(msg)

    async def on_route_withdrawn(self, msg: RouteWithdrawn) -> dict[str, Any]:
        """Stop routing an interaction; a live offer is cancelled."""
        return await self.router.withdraw(msg)

    async def on_offer_answer(self, msg: OfferAnswer) -> dict[str, Any]:
        """Accept (assign) or reject (next agent) a live offer of the acting agent."""
        return await self.router.answer(msg)

    async def on_interaction_ended(self, msg: InteractionEnded) -> None:
        """Free the agent's capacity and offer them waiting work."""
        await self.router.ended(msg)

    async def on_agent_profile(self, msg: AgentProfileChanged) -> None:
        """Keep routing's projection of teams, skills and capacity."""
        await self.router.profile_changed(msg)

    async def on_agent_state(self, msg: AgentStateChanged) -> None:
        """Keep routing's projection of agent states (stale sequences ignored)."""
        await self.router.state_changed(msg)

    async def on_history(self, msg: InteractionHistoryRequested) -> dict[str, Any]:
        """Stored interactions as the routing events they imply, a page at a time (what
        reporting rebuilds RONA, handled interactions and handle times from)."""
        items = await self.router.store.history_page(msg.after_interaction_id, msg.limit)
        events = [
            RecordedEvent(name=event.NAME, body=event.model_dump(mode="json"))
            for item in items
            for event in interaction_events(item)
        ]
        last = items[-1].id if len(items) == msg.limit else None
        return InteractionHistoryPage(events=events, next_after=last).model_dump(mode="json")

    async def on_live_assignments(self, msg: LiveAssignmentsRequested) -> dict[str, Any]:
        """Which interactions each agent holds now."""
        return await self.router.live_assignments(list(msg.agent_ids))

    async def on_case_masked(self, msg: CaseMasked) -> None:
        """A masked case's subject must not stay in routing's copy (queues, offers)."""
        await self.router.store.mask_summaries(msg.case_number)

    async def on_agent_services(self, msg: AgentServicesRequested) -> dict[str, Any]:
        """The services of the agent's teams (owners of work let them see those cases)."""
        return {"services": await self.router.agent_services(msg.agent_id)}

    async def on_service_configure(self, msg: ServiceConfigured) -> dict[str, Any]:
        """Create or replace a routing service."""
        service = msg.service
        if service.overflow_service == service.name:
            raise Refused(
                "invalid", "a service cannot overflow into itself", field="service.overflow_service"
            )
        await self.router.store.put_service(service)
        self.router.catalog.invalidate()
        await self.router.sweep()
        return {"service": service.model_dump(mode="json")}

    async def on_service_remove(self, msg: ServiceRemoved) -> dict[str, Any]:
        """Remove a routing service that holds no live work."""
        view = await self.router.queue_view([msg.name])
        row = view.get(msg.name)
        if row and any(row[k] for k in ("depth", "personal", "offered", "assigned")):
            raise Refused(
                "service_in_use",
                f"{msg.name} still has live work: transfer or finish it first",
                field="name",
            )
        if not await self.router.store.remove_service(msg.name):
            raise Refused("unknown_service", f"no service {msg.name}", field="name")
        self.router.catalog.invalidate()
        return {"removed": msg.name}

    async def on_services_list(self, msg: ServicesListRequested) -> dict[str, Any]:
        """The configured services."""
        services = await self.router.store.list_services()
        return {"services": [s.model_dump(mode="json") for s in services]}

    async def on_team_queue_list(self, msg: TeamQueueListRequested) -> dict[str, Any]:
        """Waiting emails of the acting agent's services, in queue order."""
        return await self.router.team_queue(msg.agent_id, msg.service, msg.limit)

    async def on_team_queue_pull(self, msg: TeamQueuePull) -> dict[str, Any]:
        """Claim one waiting email of the team queue for the acting agent."""
        return await self.router.pull(
            msg.agent_id, msg.interaction_id, personal=False, service=msg.service
        )

    async def on_personal_queue_list(self, msg: PersonalQueueListRequested) -> dict[str, Any]:
        """Work waiting for the acting agent only."""
        return await self.router.personal_queue(msg.agent_id, msg.limit)

    async def on_personal_queue_pull(self, msg: PersonalQueuePull) -> dict[str, Any]:
        """Claim one item of the acting agent's personal queue."""
        return await self.router.pull(msg.agent_id, msg.interaction_id, personal=True)

    async def on_transfer(self, msg: TransferRequested) -> dict[str, Any]:
        """Hand an assigned interaction to another service or a named agent."""
        return await self.router.transfer(msg)

    async def on_queue_view(self, msg: QueueViewRequested) -> dict[str, Any]:
        """Supervisor view: depth and oldest wait per service."""
        return {"services": await self.router.queue_view(msg.services)}
