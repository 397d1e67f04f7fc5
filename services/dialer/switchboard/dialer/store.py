"""The dialer's MongoDB collections (whole-document writes guarded by a version field, no
positional updates, no TTL index, ``$group`` with ``$sum`` only: what every supported server
runs the same way).

* ``campaigns``: one document per campaign, its spec.
* ``records``: every calling record with its attempts and history, the one authority on a
  record: every change is one ``replace_one`` filtered on ``_id`` and the version read
  (``next_at`` of a pending record is its timer).
* ``live``: the working set, a copy of each record that is ``ready``, ``offered`` or ``held``
  (routing and agents query these few, never the big ``records``; ``review_due`` of a held one
  is its timer). It is derived from ``records`` after each write, keyed by record id and
  guarded by version so an older copy never replaces a newer one; a copy found older than its
  record (a crash between the two writes, a re-import) is refreshed or dropped when met.
* ``backlog_slots``: ``<campaign>|<n>`` for n below the campaign's ``preview_backlog``, one per
  record in routing: a pick inserts a free slot before it routes a record (a unique insert, so
  replicas together never exceed the backlog); released when the record leaves routing.
* ``hopper``: records found ready now (due, in their window, attempts left, not DNC), one
  entry per record, refilled in batches by a background task; a pick takes entries from here
  and re-checks the record before routing it.
* ``dnc``: dynamic do-not-call entries (global or per campaign); the campaign spec's own list
  is consulted too.
* ``skips``: one document per skip (natural key record/skip number) for reports.
* ``imports`` and ``import_errors``: progress and every bad row of each import.
* ``journal``: the record events the dialer published.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from switchboard.contracts.campaigns import CampaignSpec
from switchboard.dialer.domain import (
    IN_ROUTING,
    LIVE_STATES,
    Record,
    new_record_fields,
    record_id_for,
)
from switchboard.dialer.importer import BadRow, ParsedRow
from switchboard.dialer.report import campaign_report

Document = dict[str, Any]
GLOBAL = "*"


class Conflict(Exception):
    """The record changed underneath us; the message is retried."""


class DialerStore:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        sorted_picks: bool = False,
    ) -> None:
        self.db = db
        self.sorted_picks = sorted_picks
        self.campaigns = db["campaigns"]
        self.records = db["records"]
        self.live = db["live"]
        self.hopper = db["hopper"]
        self.backlog = db["backlog_slots"]
        self.dnc = db["dnc"]
        self.skips = db["skips"]
        self.imports = db["imports"]
        self.import_errors = db["import_errors"]
        self.journal = db["journal"]

    async def ensure_indexes(self) -> None:
        await self.records.create_index(
            [("campaign_id", ASCENDING), ("state", ASCENDING), ("next_at", ASCENDING)]
        )
        await self.records.create_index("call_id")
        await self.live.create_index([("campaign_id", ASCENDING), ("state", ASCENDING)])
        await self.live.create_index([("state", ASCENDING), ("review_due", ASCENDING)])
        await self.live.create_index([("agent_id", ASCENDING), ("state", ASCENDING)])
        await self.live.create_index("call_id")
        await self.hopper.create_index("campaign_id")
        await self.backlog.create_index("campaign_id")
        await self.dnc.create_index([("number", ASCENDING), ("scope", ASCENDING)])
        await self.skips.create_index([("campaign_id", ASCENDING), ("agent_id", ASCENDING)])
        await self.import_errors.create_index([("import_id", ASCENDING), ("line", ASCENDING)])

    # -- campaigns -----------------------------------------------------------------------------

    async def create_campaign(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> bool:
        try:
            await self.campaigns.insert_one(
                {
                    "_id": campaign_id,
                    "spec": spec.model_dump(mode="json"),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def update_campaign(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> bool:
        done = await self.campaigns.update_one(
            {"_id": campaign_id},
            {"$set": {"spec": spec.model_dump(mode="json"), "updated_at": now}},
        )
        return done.matched_count == 1

    async def campaign(self, campaign_id: str) -> CampaignSpec | None:
        found = await self.campaigns.find_one({"_id": campaign_id})
        return None if found is None else CampaignSpec.model_validate(found["spec"])

    async def all_campaigns(self) -> list[tuple[str, CampaignSpec]]:
        return [
            (doc["_id"], CampaignSpec.model_validate(doc["spec"]))
            async for doc in self.campaigns.find({})
        ]

    async def campaign_count(self) -> int:
        return await self.campaigns.count_documents({})

    # -- do-not-call ---------------------------------------------------------------------------

    async def change_dnc(
        self, scope: str, add: Iterable[str], remove: Iterable[str], now: datetime
    ) -> None:
        for number in add:
            await self.dnc.update_one(
                {"_id": f"{scope}|{number}"},
                {"$set": {"number": number, "scope": scope, "at": now}},
                upsert=True,
            )
        for number in remove:
            await self.dnc.delete_one({"_id": f"{scope}|{number}"})

    async def dnc_hits(
        self, campaign_id: str, spec: CampaignSpec, numbers: Iterable[str]
    ) -> set[str]:
        """Which of ``numbers`` are on the global list or on this campaign's."""
        wanted = list(numbers)
        hits = {n for n in wanted if n in spec.do_not_call}
        async for entry in self.dnc.find(
            {"number": {"$in": wanted}, "scope": {"$in": [GLOBAL, campaign_id]}}
        ):
            hits.add(entry["number"])
        return hits

    # -- records -------------------------------------------------------------------------------

    async def upsert_records(
        self, campaign_id: str, rows: list[ParsedRow], now: datetime
    ) -> tuple[int, int]:
        """Insert new records, update known ones (same external id); (inserted, updated)."""
        if not rows:
            return 0, 0
        by_id: dict[str, ParsedRow] = {}
        for row in rows:  # a later row of one batch wins, as a later import would
            by_id[record_id_for(campaign_id, row.external_id)] = row
        fresh = [
            {
                "_id": record_id,
                **self._imported(campaign_id, row, now),
                **new_record_fields(now),
                "imported_at": now,
                "version": 1,
            }
            for record_id, row in by_id.items()
        ]
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
            "phones": [p.model_dump(mode="json") for p in row.phones],
            "time_zone": row.time_zone,
            "fields": row.fields,
            "updated_at": now,
        }

    async def record(self, record_id: str) -> Record | None:
        """The current record (``records`` is its one authority)."""
        stored = await self.records.find_one({"_id": record_id})
        return None if stored is None else Record.load(stored)

    async def save(self, record: Record) -> Record:
        """Write the whole record if nobody changed it since it was read, then derive its
        live copy.

        The claim is the one conditional write to ``records`` (filtered on the version read):
        of two replicas deciding on one version exactly one matches, whichever collection its
        change belongs in. The live copy follows (:meth:`derive_live`); a crash in between
        leaves it behind the record, which every reader of ``live`` repairs.
        """
        expected = record.version
        saved = record.model_copy(update={"version": expected + 1})
        done = await self.records.replace_one({"_id": record.id, "version": expected}, saved.dump())
        if done.matched_count != 1:
            raise Conflict(f"record {record.id} changed meanwhile (version {expected})")
        await self.derive_live(saved)
        return saved

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

    async def try_save(self, record: Record) -> Record | None:
        try:
            return await self.save(record)
        except Conflict:
            return None

    # -- the live working set -------------------------------------------------------------------

    async def _current(self, cursor: Any) -> list[Record]:
        """The records behind live copies, as stored: a copy older than its record (a crash
        between the two writes of :meth:`save`, a re-import) is refreshed, or dropped when
        the record left the working set."""
        out = []
        async for doc in cursor:
            copy = Record.load(doc)
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

    async def in_routing(self, campaign_id: str) -> list[Record]:
        return await self._current(
            self.live.find({"campaign_id": campaign_id, "state": {"$in": list(IN_ROUTING)}})
        )

    async def live_ids(self, campaign_id: str) -> list[str]:
        return [
            str(doc["_id"])
            async for doc in self.live.find({"campaign_id": campaign_id}, {"_id": 1})
        ]

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
        return [Record.load(doc) async for doc in cursor.limit(limit)]

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

    async def claim_review(self, now: datetime, lease: timedelta) -> Record | None:
        """Take one due review timer: its due time moves a lease ahead (a version-guarded
        write, so only one replica gets it); a replica that dies holding it leaves it to fire
        again when the lease is over."""
        cursor = (
            self.live.find({"state": "held", "review_due": {"$lte": now}})
            .sort("review_due", ASCENDING)
            .limit(20)
        )
        for record in await self._current(cursor):
            claimed = await self.try_save(record.model_copy(update={"review_due": now + lease}))
            if claimed is not None:
                return claimed
        return None

    async def held_by(self, agent_id: str) -> list[Record]:
        cursor = self.live.find({"agent_id": agent_id, "state": {"$in": ["offered", "held"]}})
        return await self._current(cursor)

    async def by_call(self, call_id: str) -> Record | None:
        """The record of a call: live while its agent holds it; a late report of a call whose
        record went back (rare) is looked up in ``records``."""
        found = await self.live.find_one({"call_id": call_id})
        if found is not None:
            return await self.record(str(found["_id"]))
        found = await self.records.find_one({"call_id": call_id})
        return None if found is None else Record.load(found)

    async def unanswered_dials(self, before: datetime) -> list[Record]:
        """Held records whose last dial request got no progress at all (a lost publish)."""
        cursor = self.live.find({"state": "held", "call_id": {"$ne": None}}).limit(200)
        out = []
        for record in await self._current(cursor):
            last = record.attempts[-1] if record.attempts else None
            if (
                last
                and last.call_id == record.call_id
                and last.status == "requested"
                and last.at < before
            ):
                out.append(record)
        return out

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

    async def import_progress(self, import_id: str, progress: dict[str, Any]) -> None:
        await self.imports.update_one({"_id": import_id}, {"$set": progress})

    async def add_import_errors(self, import_id: str, bad: list[BadRow]) -> None:
        if bad:
            await self.import_errors.insert_many(
                [{"import_id": import_id, "line": b.line, "reason": b.reason} for b in bad]
            )

    async def get_import(self, import_id: str, errors: int = 100) -> Document | None:
        found = await self.imports.find_one({"_id": import_id})
        if found is None:
            return None
        cursor = (
            self.import_errors.find({"import_id": import_id}, {"_id": 0, "line": 1, "reason": 1})
            .sort("line", ASCENDING)
            .limit(errors)
        )
        found["bad_rows"] = [doc async for doc in cursor]
        found["import_id"] = found.pop("_id")
        return found

    # -- reports and journal -------------------------------------------------------------------

    async def report(self, campaign_id: str) -> Document:
        return await campaign_report(self.records, self.skips, campaign_id)

    async def add_journal(self, entry: Document) -> None:
        await self.journal.update_one({"_id": entry["_id"]}, {"$set": entry}, upsert=True)
