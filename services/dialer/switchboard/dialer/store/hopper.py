"""The preview backlog's slots and the hopper of records ready now."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from switchboard.dialer.domain import Record
from switchboard.dialer.store.base import Document
from switchboard.dialer.store.records import RecordStore, StoredRecord
from switchboard.runtime.storage import Slots


class HopperStore(RecordStore):
    # -- the preview backlog ---------------------------------------------------------------------

    def _backlog(self, campaign_id: str) -> Slots:
        return Slots(self.backlog, campaign_id)

    async def take_backlog_slot(self, campaign_id: str, size: int) -> bool:
        """Take one of the campaign's ``size`` places in routing (one conditional ``$inc`` of
        its counter); False when all are taken, counting every replica's."""
        return await self._backlog(campaign_id).take(size)

    async def release_backlog_slot(self, campaign_id: str, count: int = 1) -> None:
        await self._backlog(campaign_id).give_back(count)

    async def backlog_used(self, campaign_id: str) -> int:
        return await self._backlog(campaign_id).used()

    async def adopt_backlog_slots(self, now: datetime) -> int:
        """Upgrade step, once per database: an earlier version kept one document per place
        (``backlog_slots``); each campaign's count of them becomes its counter, then they go.
        (A place counted twice by two replicas upgrading at once is given back by the
        dispatcher's reaping, like one a crash left.)"""
        meta = self.db["meta"]
        if await meta.find_one({"_id": "backlog-counters"}) is not None:
            return 0
        old = self.db["backlog_slots"]
        counts: dict[str, int] = {}
        async for doc in old.find({}, {"campaign_id": 1}):
            counts[str(doc["campaign_id"])] = counts.get(str(doc["campaign_id"]), 0) + 1
        for campaign_id, count in counts.items():
            backlog = self._backlog(campaign_id)
            await backlog.take(await backlog.used() + count, count)
        await meta.update_one({"_id": "backlog-counters"}, {"$set": {"at": now}}, upsert=True)
        await old.drop()
        return sum(counts.values())

    # -- the hopper ------------------------------------------------------------------------------

    async def hopper_count(self, campaign_id: str) -> int:
        return await self.hopper.count_documents({"campaign_id": campaign_id})

    async def hopper_entries(self, campaign_id: str, limit: int) -> list[str]:
        cursor = self.hopper.find({"campaign_id": campaign_id}, {"_id": 1}).limit(limit)
        return [str(doc["_id"]) async for doc in cursor]

    async def hopper_picks(
        self, campaign_id: str, limit: int
    ) -> list[tuple[str, StoredRecord | None]]:
        """Up to ``limit`` of the campaign's entries, each with the record as the refill read
        it (``None`` for an entry of an earlier version, which kept only the id): a pick claims
        it with one write guarded by that version, so a stale one is found by its claim."""
        cursor = self.hopper.find({"campaign_id": campaign_id}).limit(limit)
        return [
            (str(doc["_id"]), None if "record" not in doc else StoredRecord.load(doc["record"]))
            async for doc in cursor
        ]

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
            {
                "_id": r.id,
                "campaign_id": campaign_id,
                "version": r.version,
                "at": now,
                "record": r.dump(),
            }
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
