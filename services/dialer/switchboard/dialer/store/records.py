"""Records, the one authority on each, and their live copies (the working set)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from switchboard.dialer.domain import (
    IN_ROUTING,
    LIVE_STATES,
    Record,
    new_record_fields,
    record_id_for,
)
from switchboard.dialer.importer import ParsedRow
from switchboard.dialer.store.base import Conflict, Document, StoreBase
from switchboard.runtime.storage import VersionedCollection, WithOutbox

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StoredRecord(Record, WithOutbox):
    """A record as stored: the domain's :class:`Record` with the kernel's outbox (messages
    written with the change that causes them, published after it)."""

    changed_at: datetime = EPOCH  # set when messages are written (a record read is as stored)


def stored(record: Record) -> StoredRecord:
    """``record`` as an aggregate (records read here are one already; the domain's
    transitions keep the class)."""
    if isinstance(record, StoredRecord):
        return record
    return StoredRecord.model_validate(record.dump())


def _stored_instant(at: datetime) -> datetime:
    """``at`` as MongoDB stores it (milliseconds), so a record written equals itself read."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class RecordStore(StoreBase):
    def __init__(self, db: AsyncDatabase[Document], *, sorted_picks: bool = False) -> None:
        super().__init__(db, sorted_picks=sorted_picks)
        self.versioned_records = VersionedCollection(self.records, StoredRecord)

    # -- records -------------------------------------------------------------------------------

    async def upsert_records(
        self, campaign_id: str, rows: list[ParsedRow], now: datetime
    ) -> tuple[int, int]:
        """Insert new records, update known ones (same external id); (inserted, updated)."""
        if not rows:
            return 0, 0
        by_id, fresh = await asyncio.to_thread(self._fresh_documents, campaign_id, rows, now)
        # Insert first, update those that exist: an insert on _id is one fast write, while a
        # batch of upserts runs one query each.
        known: set[str] = set()
        try:
            result = await self.records.insert_many(fresh, ordered=False)
            inserted = len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            known = {fresh[e["index"]]["_id"] for e in errors}
            inserted = len(fresh) - len(known)
        if known:
            await self._update_imported(campaign_id, {k: by_id[k] for k in sorted(known)}, now)
        return inserted, len(rows) - inserted

    @classmethod
    def _fresh_documents(
        cls, campaign_id: str, rows: list[ParsedRow], now: datetime
    ) -> tuple[dict[str, ParsedRow], list[Document]]:
        """The batch's rows by record id (a later row of one batch wins, as a later import
        would) and their documents as new records: built on a worker thread, so the event
        loop meanwhile sends the writes."""
        by_id: dict[str, ParsedRow] = {}
        for row in rows:
            by_id[record_id_for(campaign_id, row.external_id)] = row
        fresh = [
            {
                "_id": record_id,
                **cls._imported(campaign_id, row, now),
                **new_record_fields(now),
                "imported_at": now,
                "version": 1,
            }
            for record_id, row in by_id.items()
        ]
        return by_id, fresh

    async def _update_imported(
        self, campaign_id: str, rows: dict[str, ParsedRow], now: datetime
    ) -> None:
        """Re-imported records get the file's data in one bulk write (state, attempts and
        history kept, version bumped); a record in the working set gets its live copy
        refreshed from the stored one."""
        await self.records.bulk_write(
            [
                UpdateOne(
                    {"_id": record_id},
                    {
                        "$set": self._imported(campaign_id, rows[record_id], now),
                        "$inc": {"version": 1},
                    },
                )
                for record_id in rows
            ],
            ordered=False,
        )
        live = [
            str(doc["_id"])
            async for doc in self.live.find({"_id": {"$in": list(rows)}}, {"_id": 1})
        ]
        for record_id in live:
            stored = await self.record(record_id)
            if stored is not None:
                await self.derive_live(stored)

    @staticmethod
    def _imported(campaign_id: str, row: ParsedRow, now: datetime) -> Document:
        return {
            "campaign_id": campaign_id,
            "external_id": row.external_id,
            "name": row.name,
            "phones": [
                {"number": p.number, "type": p.type, "zones": list(p.zones)} for p in row.phones
            ],
            "time_zone": row.time_zone,
            "fields": row.fields,
            "updated_at": now,
        }

    async def record(self, record_id: str) -> StoredRecord | None:
        """The current record (``records`` is its one authority)."""
        found = await self.records.find_one({"_id": record_id})
        return None if found is None else StoredRecord.load(found)

    async def save(
        self,
        record: Record,
        messages: list[Document] | None = None,
        *,
        now: datetime | None = None,
        live: bool = True,
    ) -> StoredRecord:
        """Write the whole record if nobody changed it since it was read (with ``messages``
        in its outbox, to publish after), then derive its live copy.

        The claim is the one version-guarded write to ``records``
        (:meth:`VersionedCollection.replace`): of two replicas deciding on one version exactly
        one matches, whichever collection its change belongs in. The live copy follows
        (:meth:`derive_live`; ``live=False``: the caller derives it, alongside its other
        writes); a crash in between leaves it behind the record, which every reader of
        ``live`` repairs.
        """
        aggregate = stored(record)
        if messages:
            waiting = aggregate.outbox if aggregate.unpublished else []
            aggregate = aggregate.model_copy(
                update={
                    "outbox": [*waiting, *messages],
                    "unpublished": True,
                    "changed_at": _stored_instant(now or datetime.now(UTC)),
                }
            )
        saved = await self.versioned_records.replace(aggregate)
        if saved is None:
            raise Conflict(f"record {record.id} changed meanwhile (version {record.version})")
        if live:
            await self.derive_live(saved)
        return saved

    async def published(self, record_id: str) -> None:
        """After its outbox was published (a write of the record): its live copy follows."""
        record = await self.record(record_id)
        if record is not None:
            await self.derive_live(record)

    async def derive_live(self, record: Record) -> None:
        """Make the live copy match ``record`` as stored: a copy while it is in routing or
        held, none otherwise. Idempotent, and never goes back: the write matches only an
        older copy (an upsert that meets a newer one hits the unique ``_id`` and is dropped)."""
        older = {"_id": record.id, "version": {"$lt": record.version}}
        if record.state in LIVE_STATES:
            with contextlib.suppress(DuplicateKeyError):
                await self.live.replace_one(older, record.dump(), upsert=True)
        else:
            await self.live.delete_one(older)

    async def try_save(self, record: Record, *, live: bool = True) -> StoredRecord | None:
        try:
            return await self.save(record, live=live)
        except Conflict:
            return None

    # -- the live working set -------------------------------------------------------------------

    async def _current(self, cursor: Any) -> list[StoredRecord]:
        """The records behind live copies, as stored: a copy older than its record (a crash
        between the two writes of :meth:`save`, a re-import) is refreshed, or dropped when
        the record left the working set."""
        out = []
        async for doc in cursor:
            copy = StoredRecord.load(doc)
            stored = await self.record(copy.id)
            if stored is None:
                continue
            if stored.version > copy.version:
                await self.derive_live(stored)
                if stored.state not in LIVE_STATES:
                    continue
            out.append(stored)
        return out

    async def adopt_working_set(self, now: datetime) -> int:
        """Upgrade step, once per database: records an earlier version left ``ready``,
        ``offered`` or ``held`` in ``records`` join the live set (a marker in ``meta`` keeps
        the scan from running again)."""
        meta = self.db["meta"]
        if await meta.find_one({"_id": "live-set"}) is not None:
            return 0
        adopted = 0
        async for doc in self.records.find({"state": {"$in": sorted(LIVE_STATES)}}):
            with contextlib.suppress(DuplicateKeyError):
                await self.live.insert_one(doc)
                adopted += 1
        await meta.update_one({"_id": "live-set"}, {"$set": {"at": now}}, upsert=True)
        return adopted

    async def promote_live_copies(self, now: datetime) -> int:
        """Upgrade step, once per database: an earlier version wrote records in the working
        set to ``live`` only; each copy newer than its stored record becomes the record."""
        meta = self.db["meta"]
        if await meta.find_one({"_id": "records-authority"}) is not None:
            return 0
        promoted = 0
        async for doc in self.live.find({}):
            newer = {"_id": doc["_id"], "version": {"$lt": doc["version"]}}
            done = await self.records.replace_one(newer, doc)
            promoted += done.modified_count
        await meta.update_one({"_id": "records-authority"}, {"$set": {"at": now}}, upsert=True)
        return promoted

    async def in_routing(self, campaign_id: str) -> list[StoredRecord]:
        return await self._current(
            self.live.find({"campaign_id": campaign_id, "state": {"$in": list(IN_ROUTING)}})
        )

    async def live_ids(self, campaign_id: str) -> list[str]:
        return [
            str(doc["_id"])
            async for doc in self.live.find({"campaign_id": campaign_id}, {"_id": 1})
        ]

    async def arm_review(self, record: Record) -> None:
        """Arm the review timer of a record about to be held (before the write that holds
        it: a timer whose record moved on is cleared when it fires)."""
        await self.review_timers.set(
            record.id, record.review_due, {"campaign_id": record.campaign_id}
        )

    async def adopt_review_timers(self, now: datetime) -> int:
        """Upgrade step, once per database: an earlier version polled ``review_due`` in
        ``live``; each held record's review gets its timer."""
        meta = self.db["meta"]
        if await meta.find_one({"_id": "review-timers"}) is not None:
            return 0
        armed = 0
        async for doc in self.live.find({"state": "held", "review_due": {"$ne": None}}):
            await self.arm_review(StoredRecord.load(doc))
            armed += 1
        await meta.update_one({"_id": "review-timers"}, {"$set": {"at": now}}, upsert=True)
        return armed

    async def claim_review(self, now: datetime, lease: timedelta) -> StoredRecord | None:
        """One due review timer, claimed for this replica alone for ``lease`` (the kernel's
        :class:`TimerQueue`: a replica that dies holding it leaves it to fire again), with its
        record still held and due; a timer its record moved past is cleared or moved on."""
        while (timer := await self.review_timers.claim_due(now, lease)) is not None:
            record = await self.record(timer.key)
            if record is None or record.state != "held" or record.review_due is None:
                await self.review_timers.clear(timer.key)
            elif record.review_due > now:
                await self.review_timers.set(timer.key, record.review_due, timer.data)
            else:
                return record
        return None

    async def held_by(self, agent_id: str) -> list[StoredRecord]:
        cursor = self.live.find({"agent_id": agent_id, "state": {"$in": ["offered", "held"]}})
        return await self._current(cursor)

    async def by_call(self, call_id: str) -> StoredRecord | None:
        """The record of a call: live while its agent holds it; a late report of a call whose
        record went back (rare) is looked up in ``records``."""
        found = await self.live.find_one({"call_id": call_id})
        if found is not None:
            return await self.record(str(found["_id"]))
        found = await self.records.find_one({"call_id": call_id})
        return None if found is None else StoredRecord.load(found)

    async def add_skip(self, record: Record, agent_id: str, at: datetime) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.skips.insert_one(
                {
                    "_id": f"{record.id}|{record.skips}",
                    "record_id": record.id,
                    "campaign_id": record.campaign_id,
                    "agent_id": agent_id,
                    "at": at,
                }
            )
