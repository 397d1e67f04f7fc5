"""Operators' commands: campaigns, do-not-call lists, imports, reports; and the journal of
record events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog

from switchboard.contracts.campaigns import (
    CampaignHistoryPage,
    CampaignHistoryRequested,
    ChangeDoNotCall,
    CreateCampaign,
    GetCampaignReport,
    GetImport,
    ImportRecords,
    ListCampaigns,
    RecordEvent,
    UpdateCampaign,
)
from switchboard.contracts.cases import RecordedEvent
from switchboard.dialer import domain, metrics
from switchboard.dialer.handlers.base import (
    HandlerBase,
    _unknown_campaign,
)
from switchboard.dialer.history import record_events
from switchboard.dialer.importer import BadRow, ParsedRow, parse_stream
from switchboard.dialer.store import GLOBAL
from switchboard.dialer.store.imports import ImportProgress
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.dialer")


async def _chunks(text: str, size: int = 65536) -> AsyncIterator[bytes]:
    data = text.encode()
    for start in range(0, len(data), size):
        yield data[start : start + size]


class CampaignHandlers(HandlerBase):
    async def create_campaign(self, command: CreateCampaign) -> dict[str, Any]:
        spec = self._valid_spec(command.campaign)
        if not await self.store.create_campaign(command.campaign_id, spec, self.now()):
            existing = await self.store.campaign(command.campaign_id)
            if existing == spec:
                return {"campaign_id": command.campaign_id, "created": False}
            raise Refused(
                "campaign_exists",
                f"campaign {command.campaign_id!r} exists; update it instead",
                field="campaign_id",
            )
        log.info("campaign created", campaign_id=command.campaign_id)
        return {"campaign_id": command.campaign_id, "created": True}

    async def update_campaign(self, command: UpdateCampaign) -> dict[str, Any]:
        spec = self._valid_spec(command.campaign)
        if not await self.store.update_campaign(command.campaign_id, spec, self.now()):
            raise _unknown_campaign(command.campaign_id)
        log.info("campaign updated", campaign_id=command.campaign_id, active=spec.active)
        return {"campaign_id": command.campaign_id, "active": spec.active}

    async def change_dnc(self, command: ChangeDoNotCall) -> dict[str, Any]:
        scope = command.campaign_id or GLOBAL
        if command.campaign_id:
            await self._campaign(command.campaign_id)
        numbers: dict[str, list[str]] = {"add": [], "remove": []}
        for which in ("add", "remove"):
            for index, raw in enumerate(getattr(command, which)):
                try:
                    numbers[which].append(domain.normalise_number(raw, command.default_region))
                except ValueError as exc:
                    raise Refused("bad_number", str(exc), field=f"{which}.{index}") from None
        await self.store.change_dnc(scope, numbers["add"], numbers["remove"], self.now())
        return {"scope": scope, "added": numbers["add"], "removed": numbers["remove"]}

    async def import_records(self, command: ImportRecords) -> dict[str, Any]:
        spec = await self._campaign(command.campaign_id)
        return await self.run_import(
            command.campaign_id,
            _chunks(command.content),
            command.format,
            command.default_region or spec.default_region,
            import_id=uuid.uuid5(command.message_id, "import").hex,
        )

    async def run_import(
        self,
        campaign_id: str,
        chunks: AsyncIterator[bytes],
        file_format: str,
        region: str,
        *,
        import_id: str,
    ) -> dict[str, Any]:
        """Stream a file into the campaign: batched upserts, progress saved per batch."""
        started = time.monotonic()
        await self.store.start_import(import_id, campaign_id, file_format, self.now())
        counts = {"rows": 0, "imported": 0, "updated": 0, "bad": 0}
        good: list[ParsedRow] = []
        bad: list[BadRow] = []
        last_line = 0
        stats: dict[str, int] = {}

        async def write(good: list[ParsedRow], bad: list[BadRow], lines: int) -> None:
            inserted, updated = await self.store.upsert_records(campaign_id, good, self.now())
            await self.store.add_import_errors(import_id, bad)
            counts["imported"] += inserted
            counts["updated"] += updated
            counts["bad"] += len(bad)
            metrics.IMPORTED.labels("inserted").inc(inserted)
            metrics.IMPORTED.labels("updated").inc(updated)
            metrics.IMPORTED.labels("bad").inc(len(bad))
            await self.store.import_progress(import_id, ImportProgress(lines=lines, **counts))

        writing: asyncio.Task[None] | None = None

        async def flush() -> None:
            """Hand the batch to the writer: one batch is written while the next is parsed,
            and batches are written in order (the previous write is awaited first)."""
            nonlocal writing, good, bad
            if writing is not None:
                await writing
            writing = asyncio.create_task(write(good, bad, last_line))
            good, bad = [], []

        try:
            async for row in parse_stream(chunks, file_format, region, stats):
                last_line = max(last_line, row.line)
                counts["rows"] += 1
                (bad if isinstance(row, BadRow) else good).append(row)  # type: ignore[arg-type]
                if len(good) + len(bad) >= self.import_batch:
                    await flush()
                    if counts["rows"] % (self.import_batch * 10) == 0:
                        log.info("import progressing", import_id=import_id, **counts)
            await flush()
            assert writing is not None
            await writing
        except Exception as exc:
            if writing is not None and not writing.done():
                writing.cancel()
            await self.store.import_progress(
                import_id, ImportProgress(state="failed", error=f"{type(exc).__name__}: {exc}")
            )
            raise
        seconds = round(time.monotonic() - started, 3)
        await self.store.import_progress(
            import_id,
            ImportProgress(state="done", finished_at=self.now(), seconds=seconds, **stats),
        )
        log.info("import done", import_id=import_id, seconds=seconds, **counts)
        summary = await self.store.get_import(import_id)
        assert summary is not None
        return summary.reply()

    async def get_import(self, command: GetImport) -> dict[str, Any]:
        found = await self.store.get_import(command.import_id, errors=1000)
        if found is None:
            raise Refused("unknown_import", f"no import {command.import_id!r}", field="import_id")
        return found.reply()

    async def campaign_history(self, query: CampaignHistoryRequested) -> dict[str, Any]:
        """Stored records as the campaign events they imply, a page of records at a time
        (what reporting rebuilds the campaign figures from)."""
        page = await self.store.history_page(query.after_record_id, query.limit)
        events = [
            RecordedEvent(name=event.NAME, body=event.model_dump(mode="json"))
            for record, journal in page
            for event in record_events(record, journal)
        ]
        last = str(page[-1][0]["_id"]) if len(page) == query.limit else None
        return CampaignHistoryPage(events=events, next_after=last).model_dump(mode="json")

    async def report(self, command: GetCampaignReport) -> dict[str, Any]:
        spec = await self._campaign(command.campaign_id)
        return {"name": spec.name, **await self.store.report(command.campaign_id)}

    async def list_campaigns(self, _: ListCampaigns) -> dict[str, Any]:
        campaigns = sorted(await self.store.all_campaigns(), key=lambda found: found[0])
        return {
            "campaigns": [
                {"name": spec.name, "active": spec.active, **await self.store.report(campaign_id)}
                for campaign_id, spec in campaigns
            ]
        }

    async def on_record_event(self, event: RecordEvent) -> None:
        await self.store.add_journal(
            {
                "_id": str(event.message_id),
                "change": event.change,
                "record_id": event.record_id,
                "campaign_id": event.campaign_id,
                "agent_id": event.agent_id,
                "disposition": event.disposition,
                "state": event.state,
                "at": event.occurred_at,
            }
        )
