"""Wiring of the campaign dialer: settings, consumers, timers, HTTP upload, demo seed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field

from switchboard.contracts import routing
from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.base import Message
from switchboard.contracts.campaigns import (
    AcceptRecord,
    CallNumber,
    CallProgressed,
    CallStatus,
    CampaignHistoryRequested,
    CampaignSpec,
    ChangeDoNotCall,
    CompleteRecord,
    CreateCampaign,
    DialRequested,
    GetCampaignReport,
    GetImport,
    GetRecord,
    ImportRecords,
    ListCampaigns,
    RecordClosed,
    RecordCompleted,
    RecordDispositioned,
    RecordEvent,
    RecordRescheduled,
    RecordSkipped,
    RejectRecord,
    RescheduleRecord,
    SetCallDisposition,
    SkipRecord,
    UpdateCampaign,
)
from switchboard.contracts.queues import dialer as queues
from switchboard.contracts.topology import ConsumerQueue
from switchboard.dialer.handlers import DialerHandlers
from switchboard.dialer.http import openapi_app, status_app, upload_app
from switchboard.dialer.store import GLOBAL, DialerStore
from switchboard.dialer.telephony import SimulatedTelephony, TelephonyConsumer
from switchboard.runtime.bus import Handler
from switchboard.runtime.jobs import PeriodicJob
from switchboard.runtime.service import Runtime, serve
from switchboard.runtime.settings import ServiceSettings

log = structlog.get_logger("switchboard.dialer")


class DialerSettings(ServiceSettings):
    campaigns_file: Path | None = Field(
        default=None, description="demo campaigns (JSON) seeded when there is no campaign yet"
    )
    dispatch_interval_seconds: float = Field(default=1.0, gt=0)
    timers_interval_seconds: float = Field(default=1.0, gt=0)
    route_refresh_seconds: float = Field(
        default=60.0, gt=0, description="re-send a waiting record's route request this often"
    )
    review_lease_seconds: float = Field(default=30.0, gt=0)
    hopper_size: int = Field(
        default=200, ge=1, description="ready records kept per campaign (refilled below half)"
    )
    hopper_interval_seconds: float = Field(
        default=1.0, gt=0, description="how often the hoppers are topped up"
    )
    import_batch: int = Field(default=1000, ge=1)
    sorted_picks: bool = Field(
        default=False,
        description="pick due records oldest first (MongoDB; slow on the local server)",
    )
    telephony: Literal["simulator", "external"] = Field(
        default="simulator", description="external: a PBX adapter consumes dial.requested"
    )
    simulator_default_outcome: CallStatus = "answered"
    simulator_outcomes: dict[str, CallStatus] = Field(
        default_factory=dict, description="E.164 number -> outcome (JSON in the environment)"
    )
    simulator_ring_seconds: float = Field(default=1.0, ge=0)
    simulator_talk_seconds: float = Field(default=3.0, ge=0)


def build(settings: DialerSettings) -> Runtime:
    runtime = Runtime("dialer", settings)
    store = DialerStore(runtime.db, sorted_picks=settings.sorted_picks)
    handlers = DialerHandlers(
        store,
        runtime.bus,
        route_refresh_seconds=settings.route_refresh_seconds,
        hopper_size=settings.hopper_size,
        import_batch=settings.import_batch,
        review_lease_seconds=settings.review_lease_seconds,
    )
    runtime.on_start(store.ensure_indexes)
    runtime.on_start(handlers.outbox.ensure_indexes)

    async def promote() -> None:
        promoted = await store.promote_live_copies(datetime.now(UTC))
        if promoted:
            log.info("live copies of an earlier version became the records", records=promoted)

    async def adopt() -> None:  # in the background: the one scan of records may take minutes
        adopted = await store.adopt_working_set(datetime.now(UTC))
        if adopted:
            log.info("records in routing or held moved to the live set", records=adopted)

    async def upgrade() -> None:
        places = await store.adopt_backlog_slots(datetime.now(UTC))
        if places:
            log.info("backlog places of an earlier version counted", places=places)
        armed = await store.adopt_review_timers(datetime.now(UTC))
        if armed:
            log.info("review timers of an earlier version armed", records=armed)

    runtime.on_start(promote)
    runtime.on_start(upgrade)
    if settings.campaigns_file is not None:
        path = settings.campaigns_file

        async def seed() -> None:
            await seed_campaigns(handlers, path)

        runtime.on_start(seed)

    consume = runtime.bus.consume
    for message, handler in consumers(handlers):
        consume(queue_of(message), message, handler)
    consume(queues.JOURNAL, RecordEvent, handlers.on_record_event)

    jobs = [
        PeriodicJob("dispatch due records", settings.dispatch_interval_seconds, handlers.dispatch),
        PeriodicJob("refill hoppers", settings.hopper_interval_seconds, handlers.refill_hoppers),
        PeriodicJob("review timers", settings.timers_interval_seconds, handlers.fire_reviews),
        PeriodicJob("outbox sweep", 15.0, handlers.sweep_outbox),
        PeriodicJob("adopt the working set of an earlier version", 86400.0, adopt),
    ]
    if settings.telephony == "simulator":
        simulator = SimulatedTelephony(
            runtime.db["simulated_calls"],
            outcomes=settings.simulator_outcomes,
            default=settings.simulator_default_outcome,
            ring_seconds=settings.simulator_ring_seconds,
            talk_seconds=settings.simulator_talk_seconds,
        )
        telephony = TelephonyConsumer(simulator, runtime.bus)
        consume(queues.TELEPHONY, DialRequested, telephony.on_dial_requested)
        runtime.on_stop(simulator.close)
        step = max(min(settings.simulator_ring_seconds, settings.simulator_talk_seconds) / 2, 0.05)

        async def advance_calls() -> None:
            await simulator.advance(telephony.reporter)

        jobs.append(PeriodicJob("simulated calls", min(step, 0.5), advance_calls))
    runtime.jobs(jobs)

    runtime.bus.publishes(
        routing.RouteRequested,
        routing.RouteWithdrawn,
        routing.InteractionEnded,
        routing.OfferAnswer,
        DialRequested,
        RecordCompleted,
        RecordSkipped,
        RecordRescheduled,
        RecordDispositioned,
        RecordClosed,
    )
    runtime.mount("/dialer/imports", upload_app(handlers))
    runtime.mount("/dialer/imports/status", status_app(handlers))
    runtime.mount("/dialer/openapi.json", openapi_app())
    runtime.handlers = handlers  # type: ignore[attr-defined]
    return runtime


def consumers(handlers: DialerHandlers) -> list[tuple[type[Message], Handler[Any]]]:
    """Each message the dialer consumes, declared once with its handler (its queue is
    :func:`queue_of` it). The journal's one queue of record events is wired apart."""
    return [
        (CreateCampaign, handlers.create_campaign),
        (UpdateCampaign, handlers.update_campaign),
        (ChangeDoNotCall, handlers.change_dnc),
        (ImportRecords, handlers.import_records),
        (GetImport, handlers.get_import),
        (GetCampaignReport, handlers.report),
        (ListCampaigns, handlers.list_campaigns),
        (CampaignHistoryRequested, handlers.campaign_history),
        (AcceptRecord, handlers.accept),
        (RejectRecord, handlers.reject),
        (GetRecord, handlers.get_record),
        (CompleteRecord, handlers.complete),
        (SkipRecord, handlers.skip),
        (CallNumber, handlers.call),
        (SetCallDisposition, handlers.set_disposition),
        (RescheduleRecord, handlers.reschedule),
        (routing.OfferMade, handlers.on_offer_made),
        (routing.OfferRejected, handlers.on_offer_lost),
        (routing.OfferTimedOut, handlers.on_offer_lost),
        (routing.InteractionAssigned, handlers.on_assigned),
        (AgentStateChanged, handlers.on_agent_state),
        (CallProgressed, handlers.on_call_progress),
    ]


def queue_of(message: type[Message]) -> ConsumerQueue:
    """The dialer's queue of one message: named after the message's ``NAME``."""
    return ConsumerQueue(f"dialer.{message.NAME}", (message.NAME,))


async def seed_campaigns(handlers: DialerHandlers, path: Path) -> None:
    """Load the demo file when no campaign exists yet (replicas racing do no harm: the
    campaign insert is keyed by id and records are upserted by external id)."""
    if await handlers.store.campaign_count() > 0:
        return
    data: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
    now = datetime.now(UTC)
    dnc = data.get("do_not_call", [])
    if dnc:
        from switchboard.dialer.domain import normalise_number

        numbers = [normalise_number(n, data.get("default_region", "US")) for n in dnc]
        await handlers.store.change_dnc(GLOBAL, numbers, [], now)
    for item in data.get("campaigns", []):
        campaign_id = item["campaign_id"]
        spec = handlers._valid_spec(CampaignSpec.model_validate(item["campaign"]))
        await handlers.store.create_campaign(campaign_id, spec, now)
        lines = "\n".join(json.dumps(r) for r in item.get("records", []))

        async def body(text: str = lines) -> Any:
            yield text.encode()

        summary = await handlers.run_import(
            campaign_id, body(), "jsonl", spec.default_region, import_id=f"seed-{campaign_id}"
        )
        log.info(
            "demo campaign seeded",
            campaign_id=campaign_id,
            imported=summary["imported"],
            bad=summary["bad"],
        )


def main() -> None:
    serve(build(DialerSettings()))
