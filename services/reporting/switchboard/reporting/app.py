"""Reporting service: settings, wiring, entry point; ``rebuild`` refolds the journal
(``--from-services``: and what the owning services still hold)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import structlog
from pydantic import Field

from switchboard.contracts.queues import reporting as queues
from switchboard.contracts.reports import (
    AgentReportRequested,
    CampaignReportRequested,
    CaseFirstResponseOverdue,
    ServiceReportRequested,
)
from switchboard.reporting.domain import Policy
from switchboard.reporting.folding import Folder
from switchboard.reporting.handlers import ReportingHandlers
from switchboard.reporting.owners import everything_held
from switchboard.reporting.retention import JournalKeeper
from switchboard.reporting.store import ReportStore
from switchboard.runtime.jobs import PeriodicJob
from switchboard.runtime.service import Runtime, serve
from switchboard.runtime.settings import ServiceSettings

log = structlog.get_logger("switchboard.reporting")


class ReportingSettings(ServiceSettings):
    max_attempts: int = Field(
        default=12,
        ge=1,
        description="tries before a message is dead; an event that overtook the one it follows "
        "(case.closed before case.created: different queues) is tried again until it came",
    )
    first_response_targets: dict[str, float] = Field(
        default_factory=dict,
        description='first-response target per service in seconds (JSON, e.g. {"support": 3600})',
    )
    default_first_response_seconds: float | None = Field(
        default=14400.0,
        gt=0,
        description="the target of a service not listed; unset: no target (no SLA timer)",
    )
    reporting_config_file: Path | None = Field(
        default=None,
        description="JSON with first_response_targets (seconds per service), added to the "
        "targets set here (the demo's file)",
    )
    sla_poll_seconds: float = Field(default=5.0, gt=0, description="how often due targets fire")
    journal_retention_days: float = Field(
        default=90.0,
        gt=0,
        description="journal entries older than this are folded into the checkpoint (where a "
        "rebuild starts) and dropped",
    )
    journal_retention_poll_seconds: float = Field(
        default=3600.0, gt=0, description="how often the journal is trimmed"
    )


def policy_of(settings: ReportingSettings) -> Policy:
    targets: dict[str, float] = {}
    if settings.reporting_config_file is not None:
        data = json.loads(settings.reporting_config_file.read_text(encoding="utf-8"))
        targets = {str(k): float(v) for k, v in data.get("first_response_targets", {}).items()}
    targets |= settings.first_response_targets
    return Policy(targets, settings.default_first_response_seconds)


def build(settings: ReportingSettings) -> Runtime:
    runtime = Runtime("reporting", settings)
    store = ReportStore(runtime.db)
    folder = Folder(store, policy_of(settings))
    handlers = ReportingHandlers(store, runtime.bus, folder)
    keeper = journal_keeper(store, settings)
    runtime.on_start(store.ensure_indexes)

    bus = runtime.bus
    bus.publishes(CaseFirstResponseOverdue)
    for model, queue in queues.EVENT_QUEUES.items():
        bus.consume(queue, model, handlers.on_event(model))
    bus.consume(queues.SERVICE_REPORT, ServiceReportRequested, handlers.on_service_report)
    bus.consume(queues.AGENT_REPORT, AgentReportRequested, handlers.on_agent_report)
    bus.consume(queues.CAMPAIGN_REPORT, CampaignReportRequested, handlers.on_campaign_report)
    runtime.jobs(
        [
            PeriodicJob(
                "first-response timers", settings.sla_poll_seconds, handlers.fire_sla_timers
            ),
            PeriodicJob("journal retention", settings.journal_retention_poll_seconds, keeper.run),
        ]
    )
    return runtime


def journal_keeper(store: ReportStore, settings: ReportingSettings) -> JournalKeeper:
    keep = timedelta(days=settings.journal_retention_days)
    return JournalKeeper(store, policy_of(settings), keep, f"reporting-{uuid.uuid4()}")


async def rebuild(settings: ReportingSettings) -> int:
    """Refold every journalled event (run with the service stopped: events wait in queues)."""
    runtime = Runtime("reporting", settings)
    store = ReportStore(runtime.db)
    await store.ensure_indexes()
    handlers = ReportingHandlers(store, runtime.bus, Folder(store, policy_of(settings)))
    try:
        return await handlers.rebuild()
    finally:
        await runtime.mongo.close()


async def rebuild_from_services(settings: ReportingSettings) -> tuple[int, int]:
    """Refold the journal, then what the owners still hold, asked over the bus (agent-state's
    state history, threading's cases, routing's interactions, the dialer's records); the
    owners must be running. Run with the service stopped."""
    runtime = Runtime("reporting", settings)
    store = ReportStore(runtime.db)
    handlers = ReportingHandlers(store, runtime.bus, Folder(store, policy_of(settings)))
    async with runtime.app:
        await store.ensure_indexes()
        return await handlers.rebuild_with_owners(everything_held(runtime.bus))


def main() -> None:
    if sys.argv[1:] == ["rebuild"]:
        folded = asyncio.run(rebuild(ReportingSettings()))
        print(f"reporting rebuilt from {folded} journalled events")
        return
    if sys.argv[1:] == ["rebuild", "--from-services"]:
        folded, told = asyncio.run(rebuild_from_services(ReportingSettings()))
        print(f"reporting rebuilt from {folded} journalled events and {told} the services hold")
        return
    serve(build(ReportingSettings()))
