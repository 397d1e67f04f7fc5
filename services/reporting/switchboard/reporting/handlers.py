"""Thin handlers: journal and fold each event; answer report queries; fire first-response timers.

An event is written to the journal (by message id) before it is folded, so ``rebuild`` can
replay exactly what was folded. Queries read only this service's buckets.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from switchboard.contracts import Message
from switchboard.contracts.reports import (
    MAX_HOURS_BY_DAY,
    MAX_HOURS_BY_HOUR,
    AgentReport,
    AgentReportRequested,
    CampaignReport,
    CampaignReportRequested,
    CaseFirstResponseOverdue,
    ServiceReport,
    ServiceReportRequested,
)
from switchboard.reporting import domain, figures
from switchboard.reporting.folding import Folder, fold_journal
from switchboard.reporting.metrics import FOLDED, OVERDUE
from switchboard.reporting.store import CHECKPOINT, ReportStore
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.reporting")

E = TypeVar("E", bound=Message)
TIMER_LEASE = timedelta(seconds=15)
OVERDUE_NAMESPACE = uuid.UUID("0b5f3c9e-6d2a-4f0e-9a51-3c2d7e8f1a64")


def _now() -> datetime:
    return datetime.now(UTC)


def check_period(start: datetime, end: datetime, longest_hours: int) -> None:
    """A period is whole hours, ends after it starts, and is not longer than allowed."""
    if start.minute or start.second or start.microsecond:
        raise Refused("invalid", "the period must start on a whole hour (UTC)", field="start")
    if end.minute or end.second or end.microsecond:
        raise Refused("invalid", "the period must end on a whole hour (UTC)", field="end")
    if end <= start:
        raise Refused("invalid", "the period must end after it starts", field="end")
    if end - start > timedelta(hours=longest_hours):
        raise Refused(
            "invalid", f"the period may be at most {longest_hours // 24} days", field="end"
        )


class ReportingHandlers:
    def __init__(self, store: ReportStore, bus: Bus, folder: Folder) -> None:
        self.store = store
        self.bus = bus
        self.folder = folder

    def on_event(self, model: type[E]) -> Callable[[E], Awaitable[None]]:
        async def handle(event: E) -> None:
            await self.folder.fold(event)
            await self.store.remember(event)
            FOLDED.labels(event.NAME).inc()

        return handle

    # -- queries ---------------------------------------------------------------------------

    async def on_service_report(self, query: ServiceReportRequested) -> dict[str, Any]:
        longest = MAX_HOURS_BY_HOUR if query.granularity == "hour" else MAX_HOURS_BY_DAY
        check_period(query.start, query.end, longest)
        known = await self.store.known_services()
        configured = set(self.folder.policy.targets)
        for service in query.services:
            if service not in known and service not in configured:
                raise Refused(
                    "unknown_service", f"no service {service!r} is known", field="service"
                )
        services = list(dict.fromkeys(query.services)) or sorted(set(known) | configured)
        buckets = await self.store.buckets_of("service", services, None, query.end)
        rows = figures.service_rows(services, query.start, query.end, query.granularity, buckets)
        report = ServiceReport(
            granularity=query.granularity, start=query.start, end=query.end, rows=rows
        )
        return report.model_dump(mode="json")

    async def on_agent_report(self, query: AgentReportRequested) -> dict[str, Any]:
        check_period(query.start, query.end, MAX_HOURS_BY_DAY)
        ids = list(dict.fromkeys(query.agent_ids))
        cursors = await self.store.cursors(ids or None)
        if not ids:
            ids = sorted(set(await self.store.subjects("agent")) | set(cursors))
        buckets = await self.store.buckets_of("agent", ids, query.start, query.end)
        rows = figures.agent_rows(ids, query.start, query.end, buckets, cursors, _now())
        return AgentReport(start=query.start, end=query.end, rows=rows).model_dump(mode="json")

    async def on_campaign_report(self, query: CampaignReportRequested) -> dict[str, Any]:
        ids = list(dict.fromkeys(query.campaign_ids)) or await self.store.campaigns()
        buckets = {b.subject: b for b in await self.store.buckets_of("campaign", ids, None, None)}
        rows = [
            figures.campaign_row(i, buckets.get(i), await self.store.records_by_status(i))
            for i in ids
        ]
        return CampaignReport(rows=rows).model_dump(mode="json")

    # -- first-response timers -------------------------------------------------------------

    async def fire_sla_timers(self) -> None:
        """Mark, count and announce every open case past its first-response target."""
        while (timer := await self.store.timers.claim_due(_now(), TIMER_LEASE)) is not None:
            data = timer.data
            number = int(data["case_number"])
            found = await self.store.case_with_version(number)
            facts = found.facts if found is not None else None
            step = domain.sla_passed(facts, int(data["round"]), timer.due, self.folder.policy)
            if found is not None and step.facts is not None:
                saved = await self.store.save_case(
                    step.facts, found.version, step.bumps, found.seen
                )
                if not saved:
                    continue  # the case changed meanwhile: claimed again after the lease
                await self.store.apply(step.bumps)
                key = f"{number}:{data['round']}"
                await self.bus.publish(
                    CaseFirstResponseOverdue(
                        message_id=uuid.uuid5(OVERDUE_NAMESPACE, key),
                        case_number=number,
                        service=step.facts.service,
                        opened_at=data["opened_at"],
                        due_at=timer.due,
                        target_seconds=float(data["target_seconds"]),
                        round=int(data["round"]),
                    )
                )
                OVERDUE.inc()
                log.info("first response overdue", case_number=number, service=step.facts.service)
            await self.store.timers.clear(timer.key)

    # -- rebuild ---------------------------------------------------------------------------

    async def rebuild(self, *, clear: bool = True) -> int:
        """Empty the read model, start from the journal's checkpoint (what retention folded
        before dropping it), and fold the journal again, oldest event first.
        ``clear=False`` folds it over the current figures, which must not change them."""
        if clear:
            await self.store.clear_derived()
            if await self.store.checkpoint_until() is not None:
                await self.store.copy_from(ReportStore(self.store.db, CHECKPOINT))
        return len(await fold_journal(self.folder, self.store.journal_in_order()))

    async def rebuild_with_owners(self, held: AsyncIterable[Message]) -> tuple[int, int]:
        """``rebuild()``, then fold what the owners still hold (``held``): the history older
        than the journal, or all of it when the read model was wiped. Folding is keyed, so a
        change both journalled and held counts once; each held event is journalled too, so the
        next rebuild has it without asking. The events refolded, and those the owners told."""
        journalled = await self.rebuild()
        told = 0
        async for event in held:
            await self.folder.fold(event)
            await self.store.remember(event)
            told += 1
        return journalled, told
