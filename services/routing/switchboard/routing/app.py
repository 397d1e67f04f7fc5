"""Wiring of the routing service: settings, consumers, timers."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from pydantic import Field

from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionQueued,
    InteractionTransferred,
    OfferCancelled,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    WaitingChanged,
)
from switchboard.routing.config import load_services
from switchboard.routing.handlers.consumers import RoutingHandlers
from switchboard.routing.router import Router
from switchboard.routing.store import RoutingStore
from switchboard.runtime.bus import ReplicaQueue
from switchboard.runtime.jobs import PeriodicJob
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


def done(run: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """A periodic job of a function whose answer (how much it did) is for tests only."""

    async def job() -> None:
        await run()

    return job


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
    async def move_timers() -> None:
        """Timers of earlier versions lived in ``timers``: arm them in ``work_timers``."""
        await store.forget_old_timers()
        await store.repair_timers()

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
    for consumer in h.consumers():
        runtime.bus.consume(consumer.queue, consumer.message, consumer.handler)

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

    runtime.on_stop(router.close)
    runtime.jobs(
        [
            PeriodicJob("routing timers", settings.timer_poll_seconds, done(router.fire_timers)),
            PeriodicJob("routing sweep", settings.sweep_seconds, done(router.sweep)),
            PeriodicJob(
                "routing queue index", settings.queue_index_seconds, router.refresh_queue_index
            ),
            PeriodicJob(
                "routing stale holds",
                settings.stale_hold_seconds / 2,
                done(router.release_stale_holds),
            ),
            PeriodicJob("routing queue gauges", settings.metrics_seconds, router.update_gauges),
            PeriodicJob(
                "routing agent reconcile",
                settings.agent_reconcile_seconds,
                done(router.reconcile_agents),
            ),
            PeriodicJob("routing timer repair", 600.0, done(store.repair_timers)),
        ]
    )
    return runtime, router


def main() -> None:
    serve(build(RoutingSettings()))
