"""Imports' progress and bad rows, campaign reports, the journal of record events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING

from switchboard.dialer.importer import BadRow
from switchboard.dialer.report import campaign_report
from switchboard.dialer.store.base import Document, StoreBase


class ImportProgress(BaseModel):
    """What one write of an import's progress changes (``None``: left as it is)."""

    state: Literal["running", "done", "failed"] | None = None
    lines: int | None = None
    rows: int | None = None
    imported: int | None = None
    updated: int | None = None
    bad: int | None = None
    blank_lines: int | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    error: str | None = None


class ImportBadRow(BaseModel):
    line: int
    reason: str


class Import(ImportProgress):
    """An import as stored: its progress while it runs, its result after, its first bad rows."""

    model_config = ConfigDict(populate_by_name=True)

    import_id: str = Field(alias="_id")
    campaign_id: str
    format: str
    started_at: datetime
    bad_rows: list[ImportBadRow] = Field(default_factory=list)

    def reply(self) -> dict[str, Any]:
        """As the status endpoint and ``campaign.import.get`` answer (JSON; unset left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class ImportStore(StoreBase):
    # -- imports -------------------------------------------------------------------------------

    async def start_import(
        self, import_id: str, campaign_id: str, file_format: str, now: datetime
    ) -> None:
        await self.imports.update_one(
            {"_id": import_id},
            {
                "$set": {
                    "campaign_id": campaign_id,
                    "format": file_format,
                    "state": "running",
                    "started_at": now,
                    "lines": 0,
                    "imported": 0,
                    "updated": 0,
                    "bad": 0,
                }
            },
            upsert=True,
        )

    async def import_progress(self, import_id: str, progress: ImportProgress) -> None:
        await self.imports.update_one(
            {"_id": import_id}, {"$set": progress.model_dump(exclude_none=True)}
        )

    async def add_import_errors(self, import_id: str, bad: list[BadRow]) -> None:
        if bad:
            await self.import_errors.insert_many(
                [{"import_id": import_id, "line": b.line, "reason": b.reason} for b in bad]
            )

    async def get_import(self, import_id: str, errors: int = 100) -> Import | None:
        found = await self.imports.find_one({"_id": import_id})
        if found is None:
            return None
        cursor = (
            self.import_errors.find({"import_id": import_id}, {"_id": 0, "line": 1, "reason": 1})
            .sort("line", ASCENDING)
            .limit(errors)
        )
        found["bad_rows"] = [doc async for doc in cursor]
        return Import.model_validate(found)

    # -- reports and journal -------------------------------------------------------------------

    async def report(self, campaign_id: str) -> Document:
        return await campaign_report(self.records, self.skips, campaign_id)

    async def add_journal(self, entry: Document) -> None:
        await self.journal.update_one({"_id": entry["_id"]}, {"$set": entry}, upsert=True)

    async def history_page(
        self, after_record_id: str, limit: int
    ) -> list[tuple[Document, list[Document]]]:
        """Up to ``limit`` records after ``after_record_id`` (by id), each with its journal
        entries: what the campaign history query answers from."""
        cursor = self.records.find({"_id": {"$gt": after_record_id}}).sort("_id", ASCENDING)
        records = [doc async for doc in cursor.limit(limit)]
        journal: dict[str, list[Document]] = {str(r["_id"]): [] for r in records}
        if records:
            query = {"record_id": {"$in": list(journal)}}
            async for entry in self.journal.find(query):
                journal[str(entry["record_id"])].append(entry)
        return [(record, journal[str(record["_id"])]) for record in records]
