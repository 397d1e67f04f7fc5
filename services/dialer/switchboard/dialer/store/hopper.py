"""The preview backlog's slots and the hopper of records ready now."""

from __future__ import annotations

import random
from datetime import datetime

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from switchboard.dialer.domain import Record
from switchboard.dialer.store.base import Document
from switchboard.dialer.store.records import RecordStore, StoredRecord


class HopperStore(RecordStore):
    # -- the preview backlog ---------------------------------------------------------------------

    async def take_backlog_slot(
        self, campaign_id: str, size: int, record_id: str, now: datetime
    ) -> str | None:
        """Insert one of the campaign's ``size`` slots for ``record_id``; ``None`` when all are
        taken (the backlog is full across every replica)."""
        taken = {
            str(doc["_id"])
            async for doc in self.backlog.find({"campaign_id": campaign_id}, {"_id": 1})
        }
        free = [f"{campaign_id}|{n}" for n in range(size) if f"{campaign_id}|{n}" not in taken]
        random.shuffle(free)  # replicas racing for slots mostly try different ones
        for slot in free:
            try:
                await self.backlog.insert_one(
                    {"_id": slot, "campaign_id": campaign_id, "record_id": record_id, "at": now}
                )
            except DuplicateKeyError:
                continue
            return slot
        return None

    async def release_backlog_slot(self, slot: str) -> None:
        await self.backlog.delete_one({"_id": slot})

    async def release_backlog_of(self, record_id: str) -> None:
        await self.backlog.delete_many({"record_id": record_id})

    async def backlog_used(self, campaign_id: str) -> int:
        return await self.backlog.count_documents({"campaign_id": campaign_id})

    async def reap_backlog(self, campaign_id: str, in_routing: set[str], before: datetime) -> int:
        """Free the slots of records no longer in routing (a release lost to a crash); a slot
        younger than ``before`` may belong to a pick in progress and is kept."""
        done = await self.backlog.delete_many(
            {
                "campaign_id": campaign_id,
                "record_id": {"$nin": sorted(in_routing)},
                "at": {"$lt": before},
            }
        )
        return done.deleted_count

    # -- the hopper ------------------------------------------------------------------------------

    async def hopper_count(self, campaign_id: str) -> int:
        return await self.hopper.count_documents({"campaign_id": campaign_id})

    async def hopper_entries(self, campaign_id: str, limit: int) -> list[str]:
        cursor = self.hopper.find({"campaign_id": campaign_id}, {"_id": 1}).limit(limit)
        return [str(doc["_id"]) async for doc in cursor]

    async def hopper_candidates(self, campaign_id: str, now: datetime, limit: int) -> list[Record]:
        """Due pending records that are neither live nor in the hopper yet.

        Unsorted, the query stops at the first ``limit`` matches; oldest first only with
        ``sorted_picks`` (a server whose query planner uses the ``campaign_id/state/next_at``
        index for the sort: the local server would sort every match)."""
        exclude = [*await self.live_ids(campaign_id), *await self.hopper_entries(campaign_id, 0)]
        query: Document = {"campaign_id": campaign_id, "state": "pending", "next_at": {"$lte": now}}
        if exclude:
            query["_id"] = {"$nin": exclude}
        cursor = self.records.find(query)
        if self.sorted_picks:
            cursor = cursor.sort("next_at", ASCENDING)
        return [StoredRecord.load(doc) async for doc in cursor.limit(limit)]

    async def add_to_hopper(self, campaign_id: str, records: list[Record], now: datetime) -> int:
        if not records:
            return 0
        docs = [
            {"_id": r.id, "campaign_id": campaign_id, "version": r.version, "at": now}
            for r in records
        ]
        try:
            result = await self.hopper.insert_many(docs, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:  # another replica filled some of them: fine
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            return len(docs) - len(errors)

    async def drop_from_hopper(self, record_id: str) -> None:
        await self.hopper.delete_one({"_id": record_id})
