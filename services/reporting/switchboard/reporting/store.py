"""MongoDB adapter: the journal of folded events, the buckets, and the facts folding needs.

Collections (database ``<prefix>_reporting``):

* ``journal``: every event folded, by message id (what ``rebuild`` replays);
* ``buckets``: ``{_id: "<kind>|<subject>|<hour>", kind, subject, hour, counts, seconds,
  samples, applied}``; a bump's natural key joins ``applied`` in the same conditional write
  that adds its amounts, so a key counts once per bucket;
* ``cases``, ``agents`` (the latest state of each), ``state_changes`` (each agent's changes
  by sequence: change n lasts until n + 1), ``assignments``, ``offers``, ``calls``,
  ``records``: what the next event needs to be folded;
* ``services``: every service seen (what a report may be asked about);
* ``sla_timers``: the kernel's :class:`TimerQueue` of first-response targets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.contracts import Message
from switchboard.reporting.domain import (
    AgentCursor,
    Bump,
    CaseFacts,
    EarlierRound,
)
from switchboard.reporting.figures import Bucket
from switchboard.reporting.pauses import Pause, StatusMark
from switchboard.runtime.mongo import retry_when_busy
from switchboard.runtime.storage import TimerQueue

Document = dict[str, Any]

DERIVED = (
    "buckets",
    "cases",
    "agents",
    "state_changes",
    "assignments",
    "offers",
    "calls",
    "records",
    "services",
)
"""What a rebuild empties and refills from the journal."""

CHECKPOINT = "checkpoint_"
"""The prefix of the checkpoint's collections: the read model as of the journal's horizon."""


CASE_FIELDS = ("service", "status", "round", "opened_at", "responded_at", "closed_at", "overdue")


def _bump_doc(bump: Bump) -> Document:
    return {
        "kind": bump.kind,
        "subject": bump.subject,
        "hour": bump.hour,
        "key": bump.key,
        "counts": dict(bump.counts),
        "seconds": dict(bump.seconds),
        "samples": dict(bump.samples),
    }


def _bump_of(doc: Document) -> Bump:
    return Bump(
        doc["kind"],
        doc["subject"],
        doc.get("hour"),
        doc["key"],
        doc.get("counts", {}),
        doc.get("seconds", {}),
        doc.get("samples", {}),
    )


def _pauses(docs: Iterable[Document]) -> tuple[Pause, ...]:
    return tuple(Pause(doc["start"], doc.get("end")) for doc in docs)


def _earlier(doc: Document) -> EarlierRound:
    return EarlierRound(**{**doc, "pauses": _pauses(doc.get("pauses", []))})


@dataclass(frozen=True)
class CaseRow:
    """A case as stored: its facts, version, the bumps still owed and the events folded."""

    facts: CaseFacts
    version: int
    owed: list[Bump]
    seen: frozenset[str]


def bucket_id(kind: str, subject: str, hour: datetime | None) -> str:
    return f"{kind}|{subject}|{hour.isoformat() if hour is not None else '-'}"


def _bucket(doc: Document) -> Bucket:
    return Bucket(
        subject=str(doc["subject"]),
        hour=doc.get("hour"),
        counts=doc.get("counts", {}),
        seconds=doc.get("seconds", {}),
        samples=doc.get("samples", {}),
    )


class ReportStore:
    """The read model in ``db``; ``prefix`` names another copy of it (the journal's checkpoint,
    ``checkpoint_buckets`` ...) that shares the one journal."""

    def __init__(self, db: AsyncDatabase[Document], prefix: str = "") -> None:
        self.db = db
        self.prefix = prefix
        self.journal = db["journal"]
        self.meta = db["reporting_meta"]
        self.buckets = self._of("buckets")
        self.cases = self._of("cases")
        self.agents = self._of("agents")
        self.state_changes = self._of("state_changes")
        self.assignments = self._of("assignments")
        self.offers = self._of("offers")
        self.calls = self._of("calls")
        self.records = self._of("records")
        self.services = self._of("services")
        self.timers = TimerQueue(self._of("sla_timers"))

    def _of(self, name: str) -> AsyncCollection[Document]:
        return self.db[self.prefix + name]

    async def ensure_indexes(self) -> None:
        await self.journal.create_index([("occurred_at", ASCENDING)])
        await self.buckets.create_index([("kind", ASCENDING), ("hour", ASCENDING)])
        await self.records.create_index([("campaign_id", ASCENDING)])
        await self.timers.ensure_indexes()

    # -- journal ----------------------------------------------------------------------------

    async def remember(self, event: Message) -> None:
        body = event.model_dump(mode="json")
        await retry_when_busy(
            lambda: self.journal.update_one(
                {"_id": str(event.message_id)},
                {
                    "$setOnInsert": {
                        "name": event.NAME,
                        "occurred_at": event.occurred_at,
                        "body": body,
                    }
                },
                upsert=True,
            )
        )

    async def journal_in_order(self, before: datetime | None = None) -> AsyncIterator[Document]:
        query: Document = {} if before is None else {"occurred_at": {"$lt": before}}
        found = self.journal.find(query).sort([("occurred_at", ASCENDING), ("_id", 1)])
        async for doc in found:
            yield doc

    async def forget(self, message_ids: list[str]) -> int:
        """Drop these journal entries (folded into the checkpoint first)."""
        done = await retry_when_busy(
            lambda: self.journal.delete_many({"_id": {"$in": message_ids}})
        )
        return done.deleted_count

    async def checkpoint_until(self) -> datetime | None:
        """The checkpoint's horizon: the journal before it was folded into it and dropped."""
        doc = await self.meta.find_one({"_id": "checkpoint"})
        return doc["until"] if doc is not None else None

    async def set_checkpoint_until(self, horizon: datetime) -> None:
        await retry_when_busy(
            lambda: self.meta.update_one(
                {"_id": "checkpoint"}, {"$max": {"until": horizon}}, upsert=True
            )
        )

    async def clear_derived(self) -> None:
        for name in (*DERIVED, "sla_timers"):
            await self._of(name).delete_many({})

    async def copy_from(self, other: ReportStore) -> None:
        """Fill this (emptied) read model with the documents of ``other`` (the checkpoint)."""
        for name in (*DERIVED, "sla_timers"):
            batch: list[Document] = []
            async for doc in other._of(name).find({}):
                batch.append(doc)
                if len(batch) == 1000:
                    await self._of(name).insert_many(batch)
                    batch = []
            if batch:
                await self._of(name).insert_many(batch)

    # -- buckets ----------------------------------------------------------------------------

    async def apply(self, bumps: Iterable[Bump]) -> None:
        """Add each bump's amounts to its bucket unless its key was applied there already."""
        for bump in bumps:
            await self._apply(bump)

    async def _apply(self, bump: Bump) -> None:
        _id = bucket_id(bump.kind, bump.subject, bump.hour)
        await retry_when_busy(
            lambda: self.buckets.update_one(
                {"_id": _id},
                {
                    "$setOnInsert": {
                        "kind": bump.kind,
                        "subject": bump.subject,
                        "hour": bump.hour,
                        "applied": [],
                    }
                },
                upsert=True,
            )
        )
        change: Document = {"$push": {"applied": bump.key}}
        inc: Document = {f"counts.{k}": v for k, v in bump.counts.items()}
        inc |= {f"seconds.{k}": v for k, v in bump.seconds.items()}
        if inc:
            change["$inc"] = inc
        for name, value in bump.samples.items():
            change["$push"][f"samples.{name}"] = value
        await retry_when_busy(
            lambda: self.buckets.update_one({"_id": _id, "applied": {"$ne": bump.key}}, change)
        )

    async def buckets_of(
        self,
        kind: str,
        subjects: Iterable[str] | None,
        start: datetime | None,
        end: datetime | None,
    ) -> list[Bucket]:
        query: Document = {"kind": kind}
        if subjects is not None:
            query["subject"] = {"$in": list(subjects)}
        hours: Document = {}
        if start is not None:
            hours["$gte"] = start
        if end is not None:
            hours["$lt"] = end
        if hours:
            query["hour"] = hours
        found = self.buckets.find(query, {"applied": 0})
        return [_bucket(doc) async for doc in found]

    async def subjects(self, kind: str) -> list[str]:
        return sorted({str(s) for s in await self.buckets.distinct("subject", {"kind": kind})})

    # -- services ----------------------------------------------------------------------------

    async def saw_service(self, service: str) -> None:
        if service:
            await retry_when_busy(
                lambda: self.services.update_one(
                    {"_id": service}, {"$set": {"seen": True}}, upsert=True
                )
            )

    async def known_services(self) -> list[str]:
        return sorted([str(doc["_id"]) async for doc in self.services.find({})])

    # -- cases -------------------------------------------------------------------------------

    async def case(self, number: int) -> CaseFacts | None:
        found = await self.case_with_version(number)
        return found.facts if found is not None else None

    async def case_with_version(self, number: int) -> CaseRow | None:
        """The case's facts, version and the bumps its last change still owes (if any)."""
        doc = await self.cases.find_one({"_id": number})
        if doc is None:
            return None
        owed = [_bump_of(b) for b in doc.get("owed", [])]
        facts = CaseFacts(
            case_number=number,
            earlier=tuple(_earlier(r) for r in doc.get("earlier", [])),
            marks=tuple(StatusMark(m["at"], m["pending"]) for m in doc.get("marks", [])),
            **{k: doc[k] for k in CASE_FIELDS if k in doc},
        )
        return CaseRow(facts, int(doc.get("version", 0)), owed, frozenset(doc.get("seen", [])))

    async def save_case(
        self,
        facts: CaseFacts,
        version: int,
        owed: Iterable[Bump] = (),
        seen: Iterable[str] = (),
    ) -> bool:
        """Write the facts if still at ``version``, with the bumps this change owes (applied
        next, by this handler or by the next change of the case) and the events folded."""
        fields: Document = {k: getattr(facts, k) for k in CASE_FIELDS}
        fields["earlier"] = [asdict(r) for r in facts.earlier]
        fields["marks"] = [asdict(m) for m in facts.marks]
        fields["owed"] = [_bump_doc(b) for b in owed]
        fields["seen"] = sorted(seen)
        if version == 0:
            try:
                await retry_when_busy(
                    lambda: self.cases.insert_one(
                        {"_id": facts.case_number, "version": 1, **fields}
                    )
                )
            except DuplicateKeyError:
                return False
            return True
        done = await retry_when_busy(
            lambda: self.cases.update_one(
                {"_id": facts.case_number, "version": version},
                {"$set": {**fields, "version": version + 1}},
            )
        )
        return done.modified_count == 1

    # -- agents ------------------------------------------------------------------------------

    async def save_change(self, change: AgentCursor) -> None:
        fields = {"state": change.state, "reason": change.reason, "since": change.since}
        key = f"{change.agent_id}:{change.sequence}"
        await retry_when_busy(
            lambda: self.state_changes.update_one({"_id": key}, {"$set": fields}, upsert=True)
        )

    async def change(self, agent_id: str, sequence: int) -> AgentCursor | None:
        doc = await self.state_changes.find_one({"_id": f"{agent_id}:{sequence}"})
        if doc is None:
            return None
        return AgentCursor(agent_id, doc["state"], doc["reason"], doc["since"], sequence)

    async def cursors(self, agent_ids: Iterable[str] | None) -> dict[str, AgentCursor]:
        query: Document = {} if agent_ids is None else {"_id": {"$in": list(agent_ids)}}
        found = {}
        async for doc in self.agents.find(query):
            found[doc["_id"]] = AgentCursor(
                doc["_id"], doc["state"], doc["reason"], doc["since"], doc["sequence"]
            )
        return found

    async def save_cursor(self, cursor: AgentCursor) -> None:
        """Move the agent's cursor forward only (an older change never overwrites a newer)."""
        fields = {
            "state": cursor.state,
            "reason": cursor.reason,
            "since": cursor.since,
            "sequence": cursor.sequence,
        }
        await retry_when_busy(
            lambda: self.agents.update_one(
                {"_id": cursor.agent_id}, {"$setOnInsert": fields}, upsert=True
            )
        )
        await retry_when_busy(
            lambda: self.agents.update_one(
                {"_id": cursor.agent_id, "sequence": {"$lt": cursor.sequence}}, {"$set": fields}
            )
        )

    # -- facts keyed by an id (assignments, offers, calls, records) ---------------------------

    async def put(self, collection: str, key: str, fields: Document) -> None:
        await retry_when_busy(
            lambda: self._of(collection).update_one({"_id": key}, {"$set": fields}, upsert=True)
        )

    async def get(self, collection: str, key: str) -> Document | None:
        return await self._of(collection).find_one({"_id": key})

    async def drop(self, collection: str, key: str) -> None:
        await retry_when_busy(lambda: self._of(collection).delete_one({"_id": key}))

    async def set_record_state(
        self, record_id: str, campaign_id: str, state: str, at: datetime
    ) -> None:
        """The record's latest state (an older event never overwrites a newer)."""
        fields = {"campaign_id": campaign_id, "state": state, "at": at}
        await retry_when_busy(
            lambda: self.records.update_one(
                {"_id": record_id}, {"$setOnInsert": fields}, upsert=True
            )
        )
        await retry_when_busy(
            lambda: self.records.update_one(
                {"_id": record_id, "at": {"$lte": at}}, {"$set": fields}
            )
        )

    async def records_by_status(self, campaign_id: str) -> dict[str, int]:
        found: dict[str, int] = {}
        async for doc in self.records.find({"campaign_id": campaign_id}, {"state": 1}):
            state = str(doc.get("state") or "unknown")
            found[state] = found.get(state, 0) + 1
        return found

    async def campaigns(self) -> list[str]:
        ids = set(await self.records.distinct("campaign_id")) | set(await self.subjects("campaign"))
        return sorted(str(i) for i in ids)
