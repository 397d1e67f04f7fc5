"""Wiring of the routing service: settings, consumers, timers."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import structlog
from pydantic import Field

from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged
from switchboard.contracts.cases import CaseMasked
from switchboard.contracts.queues import routing as queues
from switchboard.contracts.routing import (
    AgentServicesRequested,
    InteractionAssigned,
    InteractionEnded,
    InteractionQueued,
    InteractionTransferred,
    LiveAssignmentsRequested,
    OfferAnswer,
    OfferCancelled,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
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
from switchboard.routing.config import load_services
from switchboard.routing.handlers.consumers import RoutingHandlers
from switchboard.routing.router import Router
from switchboard.routing.store import RoutingStore
from switchboard.runtime.bus import ReplicaQueue
from switchboard.runtime.service import Runtime, serve
from switchboard.runtime.settings import ServiceSettings

log = structlog.get_logger("switchboard.routing")


class RoutingSettings(ServiceSettings):
    """Routing's own settings (environment ``SB_<FIELD>``)."""

    routing_config_file: Path | None = Field(
        default=None, description="services JSON seeded into MongoDB when none is configured"
    )
    default_capacity: int = Field(
        default=1, ge=0, description="capacity of a channel an agent profile does not name"
    )
    decline_cooldown_seconds: float = Field(
        default=60.0, ge=0, description="an agent who rejected or missed an item is skipped"
    )
    rona_hold_off_seconds: float = Field(
        default=30.0, ge=0, description="no new offers after a timeout until agent-state speaks"
    )
    timer_poll_seconds: float = Field(default=0.5, gt=0)
    sweep_seconds: float = Field(default=1.0, gt=0, description="full matching backstop")
    sweep_batch: int = Field(default=2000, ge=1)
    queue_index_seconds: float = Field(
        default=30.0, gt=0, description="how often the queue index is rebuilt from a full read"
    )
    stale_hold_seconds: float = Field(default=30.0, gt=0)
    metrics_seconds: float = Field(default=5.0, gt=0)
    agent_reconcile_seconds: float = Field(
        default=60.0, gt=0, description="how often profiles and states are checked with agent-state"
    )
    agent_reconcile_timeout_seconds: float = Field(default=5.0, gt=0)


def build(settings: RoutingSettings) -> Runtime:
    return wire(settings)[0]


def wire(settings: RoutingSettings) -> tuple[Runtime, Router]:
    """The runtime and its router (tests and the bench reach into the router)."""
    runtime = Runtime("routing", settings)
    store = RoutingStore(runtime.db, default_capacity=settings.default_capacity)
    router = Router(
        store,
        runtime.bus,
        decline_cooldown_seconds=settings.decline_cooldown_seconds,
        rona_hold_off_seconds=settings.rona_hold_off_seconds,
        sweep_batch=settings.sweep_batch,
        sweep_grace_seconds=2 * settings.sweep_seconds,
        stale_hold_seconds=settings.stale_hold_seconds,
        reconcile_timeout_seconds=settings.agent_reconcile_timeout_seconds,
    )
    runtime.on_start(store.ensure_indexes)

    @runtime.on_start
    async def seed_services() -> None:
        if settings.routing_config_file is None:
            return
        added = await store.seed_services(load_services(settings.routing_config_file))
        if added:
            log.info("services seeded", count=added, file=str(settings.routing_config_file))

    runtime.bus.publishes(
        WaitingChanged,
        OfferMade,
        OfferRejected,
        OfferTimedOut,
        OfferCancelled,
        InteractionAssigned,
        InteractionQueued,
        InteractionTransferred,
    )
    h = RoutingHandlers(router)
    consume = runtime.bus.consume
    consume(queues.ROUTE_REQUESTS, RouteRequested, h.on_route_requested)
    consume(queues.ROUTE_WITHDRAWALS, RouteWithdrawn, h.on_route_withdrawn)
    consume(queues.OFFER_ANSWERS, OfferAnswer, h.on_offer_answer)
    consume(queues.INTERACTIONS_ENDED, InteractionEnded, h.on_interaction_ended)
    consume(queues.AGENT_PROFILES, AgentProfileChanged, h.on_agent_profile)
    consume(queues.AGENT_STATES, AgentStateChanged, h.on_agent_state)
    consume(queues.LIVE_ASSIGNMENTS, LiveAssignmentsRequested, h.on_live_assignments)
    consume(queues.AGENT_SERVICES, AgentServicesRequested, h.on_agent_services)
    consume(queues.CASES_MASKED, CaseMasked, h.on_case_masked)
    consume(queues.SERVICE_CONFIGURE, ServiceConfigured, h.on_service_configure)
    consume(queues.SERVICE_REMOVE, ServiceRemoved, h.on_service_remove)
    consume(queues.SERVICE_LIST, ServicesListRequested, h.on_services_list)
    consume(queues.TEAM_QUEUE_LIST, TeamQueueListRequested, h.on_team_queue_list)
    consume(queues.TEAM_QUEUE_PULL, TeamQueuePull, h.on_team_queue_pull)
    consume(queues.PERSONAL_QUEUE_LIST, PersonalQueueListRequested, h.on_personal_queue_list)
    consume(queues.PERSONAL_QUEUE_PULL, PersonalQueuePull, h.on_personal_queue_pull)
    consume(queues.TRANSFERS, TransferRequested, h.on_transfer)
    consume(queues.QUEUE_VIEW, QueueViewRequested, h.on_queue_view)

    heard: list[ReplicaQueue] = []

    @runtime.on_start
    async def hear_other_replicas() -> None:
        name = f"routing.waiting.{socket.gethostname()}.{uuid.uuid4().hex[:8]}"
        keys = (WaitingChanged.NAME,)
        heard.append(await runtime.bus.replica_queue(name, keys, h.on_waiting_changed))

    @runtime.on_stop
    async def stop_hearing() -> None:
        while heard:
            await heard.pop().close()

    async def fire_timers() -> None:
        await router.fire_timers()

    async def sweep() -> None:
        await router.sweep()

    async def stale_holds() -> None:
        await router.release_stale_holds()

    runtime.every(settings.timer_poll_seconds, "routing timers")(fire_timers)
    runtime.every(settings.sweep_seconds, "routing sweep")(sweep)
    runtime.every(settings.queue_index_seconds, "routing queue index")(router.refresh_queue_index)
    runtime.every(settings.stale_hold_seconds / 2, "routing stale holds")(stale_holds)
    runtime.every(settings.metrics_seconds, "routing queue gauges")(router.update_gauges)
    runtime.on_stop(router.close)

    async def reconcile_agents() -> None:
        await router.reconcile_agents()

    runtime.every(settings.agent_reconcile_seconds, "routing agent reconcile")(reconcile_agents)

    async def repair_timers() -> None:
        await store.repair_timers()

    runtime.every(600.0, "routing timer repair")(repair_timers)
    return runtime, router


def main() -> None:
    serve(build(RoutingSettings()))
