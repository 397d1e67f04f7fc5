"""MongoDB adapter of the routing service: its own collections, portable atomic operations only.

Collections
-----------
``services``  one document per routing service (its :class:`ServiceDefinition`).
``agents``    routing's projection of each agent, and the agent's *holds*: the live offers and
              assignments charged to its capacity. Every write is a compare-and-set on
              ``version`` (read, decide in Python, write if still at that version),
              so two replicas can never both take the last free place of an agent.
``work``      one document per interaction: ``waiting`` -> ``offered`` -> ``assigned`` ->
              ``ended`` (or ``withdrawn``). Every transition is a compare-and-set on ``version``,
              so at most one offer per interaction is ever live. ``due`` is its timer (offer expiry,
              end of the preferred-agent wait, personal-queue overflow).
              It keeps its last offers and how they ended (``past_offers``), so a late answer
              gets a clear refusal.
``timers``    one small insert-only entry per due time written to ``work`` (``<id>|<due>``, with
              the version being written), so polling for due timers reads only these, not the
              whole backlog. An entry is written before its interaction; one found due while
              its interaction is still at an older version is kept (the write is on the way).
``ended_work`` interactions that ended, out of the way of live scans.

Compare-and-set
---------------
Every transition of ``agents`` and ``work`` is one conditional write: the whole document is
replaced only if its ``version`` is still the one read (a filter on ``_id`` and ``version``).
The server applies a single-document write atomically (``switchboard.runtime.storage``), so of
writers that read the same version exactly one wins; the others re-read and decide again.

Order of a reservation: first the agent's hold (capacity), then the interaction's transition;
if the second fails the hold is given back. A crash in between leaves a hold without an offer,
which :meth:`RoutingStore.stale_holds` finds and the router releases: capacity is only ever
over-counted for a moment, never under-counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.contracts.routing import ServiceDefinition
from switchboard.routing.domain import (
    Work,
    derive_agent_fields,
    interaction_of_offer,
    new_agent_document,
)
from switchboard.routing.queue_index import Place
from switchboard.runtime.mongo import retry_when_busy

Document = dict[str, Any]
TIMER_WRITE_GRACE = timedelta(minutes=1)  # a write not landed by then has failed
LIVE = ("waiting", "offered", "assigned")


MASKED_SUBJECT = "(masked)"
"""What a queue row shows as the subject of a case whose text was masked."""


class Conflict(RuntimeError):
    """A compare-and-set kept losing: the message is retried later."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def work_from(doc: Document) -> Work:
    return Work(
        interaction_id=doc["_id"],
        channel=doc["channel"],
        service=doc["service"],
        priority=int(doc.get("priority", 0)),
        queued_at=doc["queued_at"],
        preferred_agent_id=doc.get("preferred_agent_id"),
        preferred_until=doc.get("preferred_until"),
        personal_agent_id=doc.get("personal_agent_id"),
        declined={d["a"]: d["until"] for d in doc.get("declined", [])},
        version=int(doc.get("version", 0)),
    )


def place_of(doc: Document) -> Place:
    return Place(
        interaction_id=doc["_id"],
        version=int(doc.get("version", 0)),
        waiting=doc.get("status") == "waiting",
        service=doc.get("service", ""),
        priority=int(doc.get("priority", 0)),
        queued_at=doc.get("queued_at"),
        personal_agent_id=doc.get("personal_agent_id"),
    )


PLACE_FIELDS = {f: 1 for f in ("version", "status", "service", "priority", "queued_at")} | {
    "personal_agent_id": 1
}


def _timer_key(doc: Document) -> str:
    """``<interaction>|<due>`` at the millisecond, the precision MongoDB keeps."""
    due: datetime = doc["due"]
    return f"{doc['_id']}|{due.replace(microsecond=due.microsecond // 1000 * 1000).isoformat()}"


class RoutingStore:
    def __init__(self, database: AsyncDatabase[Document], *, default_capacity: int = 1) -> None:
        self.db = database
        self.services = database["services"]
        self.agents = database["agents"]
        self.work = database["work"]
        self.archive = database["ended_work"]
        self.timers = database["timers"]
        self.default_capacity = default_capacity

    async def ensure_indexes(self) -> None:
        await self.work.create_index([("status", ASCENDING), ("service", ASCENDING)])
        await self.work.create_index("due")
        await self.work.create_index("offer_ids")
        await self.work.create_index("agent_id")
        await self.work.create_index("personal_agent_id")
        await self.agents.create_index("avail")
        await self.agents.create_index("room_total")
        await self.timers.create_index("due")

    # --- compare-and-set ---------------------------------------------------------------------

    async def _cas_replace(self, collection: str, expected_version: int, doc: Document) -> bool:
        """Replace ``doc`` if the stored one is still at ``expected_version`` (one write)."""
        guard = {"_id": doc["_id"], "version": expected_version}
        result = await retry_when_busy(lambda: self.db[collection].replace_one(guard, doc))
        return result.matched_count == 1

    # --- services --------------------------------------------------------------------------

    async def list_services(self) -> list[ServiceDefinition]:
        found = [
            ServiceDefinition.model_validate(d["definition"]) async for d in self.services.find()
        ]
        return sorted(found, key=lambda s: s.name)

    async def put_service(self, service: ServiceDefinition) -> None:
        await self.services.replace_one(
            {"_id": service.name},
            {"_id": service.name, "definition": service.model_dump(mode="json"), "at": utcnow()},
            upsert=True,
        )

    async def seed_services(self, services: Iterable[ServiceDefinition]) -> int:
        """Insert the given services only when none is configured yet (several replicas: safe)."""
        if await self.services.count_documents({}, limit=1):
            return 0
        added = 0
        for service in services:
            try:
                await self.services.insert_one(
                    {
                        "_id": service.name,
                        "definition": service.model_dump(mode="json"),
                        "at": utcnow(),
                    }
                )
                added += 1
            except DuplicateKeyError:
                pass
        return added

    async def remove_service(self, name: str) -> bool:
        result = await self.services.delete_one({"_id": name})
        return result.deleted_count == 1

    # --- agents ----------------------------------------------------------------------------

    async def get_agent(self, agent_id: str) -> Document | None:
        return await self.agents.find_one({"_id": agent_id})

    async def update_agent(
        self,
        agent_id: str,
        change: Callable[[Document], bool],
        *,
        create: bool = True,
        tries: int = 100,
        known: Document | None = None,
    ) -> tuple[Document | None, bool]:
        """Compare-and-set loop: ``change`` edits a copy and says whether to write it.

        ``known``: the agent as the caller read it a moment ago, tried first instead of a read
        (if it is stale the write matches nothing and the loop reads it). Returns the document
        as it now is and whether this call changed it.
        """
        for attempt in range(tries):
            if attempt == 0 and known is not None:
                current: Document | None = known
            else:
                current = await self.agents.find_one({"_id": agent_id})
            if current is None and not create:
                return None, False
            base = current if current is not None else new_agent_document(agent_id)
            updated = copy.deepcopy(base)
            if not change(updated):
                return current, False
            derive_agent_fields(updated, self.default_capacity)
            updated["version"] = int(base.get("version", 0)) + 1
            if current is None:
                try:
                    await retry_when_busy(functools.partial(self.agents.insert_one, updated))
                except DuplicateKeyError:
                    continue
                return updated, True
            if await self._cas_replace("agents", int(base["version"]), updated):
                return updated, True
        raise Conflict(f"agent {agent_id} kept changing under us")

    async def free_agents(
        self, channel: str | None = None, team: str | None = None
    ) -> list[Document]:
        query: Document = {"room_total": {"$gt": 0}}
        if channel is not None:
            query = {"avail": channel}
        if team is not None:
            query["teams"] = team
        return [d async for d in self.agents.find(query)]

    async def agents_by_id(self, agent_ids: Iterable[str]) -> dict[str, Document]:
        ids = sorted(set(agent_ids))
        if len(ids) > 16:  # one query; a server without pushdown reads every agent for it
            return {d["_id"]: d async for d in self.agents.find({"_id": {"$in": ids}})}
        found = await asyncio.gather(*(self.agents.find_one({"_id": i}) for i in ids))
        return {d["_id"]: d for d in found if d is not None}

    async def agent_progress(self) -> dict[str, tuple[list[Any] | None, int]]:
        """Per agent: the profile key and state sequence applied so far (one scan)."""
        found: dict[str, tuple[list[Any] | None, int]] = {}
        async for doc in self.agents.find({}, {"profile_key": 1, "state_seq": 1}):
            found[doc["_id"]] = (doc.get("profile_key"), int(doc.get("state_seq", 0)))
        return found

    async def agents_with_holds(self) -> list[Document]:
        return [d async for d in self.agents.find({"holds": {"$ne": []}})]

    # --- work ------------------------------------------------------------------------------

    async def get_work(self, interaction_id: str) -> Document | None:
        return await self.work.find_one({"_id": interaction_id})

    async def work_by_offer(self, offer_id: str) -> Document | None:
        interaction_id = interaction_of_offer(offer_id)
        if interaction_id is not None:
            for collection in (self.work, self.archive):  # live first, then ended
                doc = await collection.find_one({"_id": interaction_id})
                if doc is not None and offer_id in doc.get("offer_ids", []):
                    return doc
            return None
        return await self.work.find_one({"offer_ids": offer_id})

    async def get_archived(self, interaction_id: str) -> Document | None:
        return await self.archive.find_one({"_id": interaction_id})

    async def archive_work(self, doc: Document) -> None:
        """Move an ended interaction out of ``work``, so live scans only see live work.

        The archive keeps its round (offer ids stay unique over rounds) and its history. A crash
        in between leaves an ended document in ``work``: harmless, it is simply not live.
        """
        await retry_when_busy(
            lambda: self.archive.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        )
        # Removing is moving on from this version too: a new round opened meanwhile stays.
        guard = {"_id": doc["_id"], "version": doc["version"]}
        await retry_when_busy(lambda: self.work.delete_one(guard))

    async def insert_work(self, doc: Document) -> bool:
        await self._note_timer(doc)
        try:
            await retry_when_busy(lambda: self.work.insert_one(doc))
        except DuplicateKeyError:
            return False
        return True

    async def replace_work(self, expected_version: int, doc: Document) -> bool:
        """Write ``doc`` if the stored version is still ``expected_version`` (the CAS)."""
        await self._note_timer(doc)
        return await self._cas_replace("work", expected_version, doc)

    async def works_by_id(self, interaction_ids: Iterable[str]) -> dict[str, Document | None]:
        """Each interaction read by ``_id`` (an index lookup on every server, unlike ``$in``);
        ``None`` for one no longer live."""
        ids = list(dict.fromkeys(interaction_ids))
        found = await asyncio.gather(*(self.work.find_one({"_id": i}) for i in ids))
        return dict(zip(ids, found, strict=True))

    async def waiting_places(self) -> list[Place]:
        """Every waiting interaction's place (a full read, for :class:`QueueIndex`)."""
        return [place_of(d) async for d in self.work.find({"status": "waiting"}, PLACE_FIELDS)]

    # --- timers ----------------------------------------------------------------------------
    # Every replica polls for due timers twice a second. A query on ``work.due`` would scan the
    # whole backlog each time on a server without index pushdown (the local one), so each due
    # time is also written, before the work itself, as a small insert-only entry in ``timers``;
    # entries whose work has moved on are dropped when found. Writing it first means a crash can
    # leave an entry without its timer (dropped later) but never a timer without its entry.

    async def _note_timer(self, doc: Document) -> None:
        due = doc.get("due")
        if due is None:
            return
        with contextlib.suppress(DuplicateKeyError):
            entry = {
                "_id": _timer_key(doc),
                "i": doc["_id"],
                "due": due,
                "v": doc.get("version", 0),
            }
            await retry_when_busy(lambda: self.timers.insert_one(entry))

    async def due_work(self, now: datetime, limit: int = 200) -> list[Document]:
        """Live work whose timer is due, earliest first."""
        found: dict[str, Document] = {}
        async for entry in (
            self.timers.find({"due": {"$lte": now}}).sort("due", ASCENDING).limit(limit)
        ):
            doc = await self.work.find_one({"_id": entry["i"]})
            if doc is not None and doc.get("due") == entry["due"]:
                found[doc["_id"]] = doc
                continue
            if (
                doc is not None
                and int(doc.get("version", 0)) < int(entry.get("v", 0))
                and entry["due"] > now - TIMER_WRITE_GRACE
            ):
                continue  # its write is still on the way (a slow database): look again later
            await self.timers.delete_one({"_id": entry["_id"]})  # the work moved on
        return list(found.values())

    async def repair_timers(self) -> int:
        """Write the entry of any timer that lacks one (data from before ``timers`` existed)."""
        repaired = 0
        async for doc in self.work.find({"due": {"$ne": None}}, {"due": 1, "version": 1}):
            if await self.timers.find_one({"_id": _timer_key(doc)}, {"_id": 1}) is None:
                await self._note_timer(doc)
                repaired += 1
        return repaired

    async def waiting(
        self,
        *,
        services: Iterable[str] | None = None,
        personal_agent_id: str | None = None,
        team_only: bool = False,
        limit: int = 100,
    ) -> list[Document]:
        """Waiting work in queue order (priority, then age)."""
        query: Document = {"status": "waiting"}
        if services is not None:
            query["service"] = {"$in": sorted(set(services))}
        if personal_agent_id is not None:
            query["personal_agent_id"] = personal_agent_id
        elif team_only:
            query["personal_agent_id"] = None
        cursor = (
            self.work.find(query)
            .sort([("priority", DESCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [d async for d in cursor]

    async def waiting_for(
        self, agent_ids: Iterable[str], services: Iterable[str], *, limit: int = 100
    ) -> list[Document]:
        """These agents' personal work and the team work of these services, in queue order
        (for several agents, all personal work: the plan gives each only their own)."""
        either: list[Document] = []
        agents = sorted(set(agent_ids))
        if len(agents) == 1:
            either.append({"personal_agent_id": agents[0]})
        elif agents:  # many agents (the sweep): a plain test per document, the plan picks
            either.append({"personal_agent_id": {"$ne": None}})
        names = sorted(set(services))
        if names:
            either.append({"service": {"$in": names}, "personal_agent_id": None})
        if not either:
            return []
        cursor = (
            self.work.find({"status": "waiting", "$or": either})
            .sort([("priority", DESCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [d async for d in cursor]

    async def assigned(self, agent_ids: Iterable[str] | None = None) -> list[Document]:
        query: Document = {"status": "assigned"}
        if agent_ids is not None:
            query["agent_id"] = {"$in": sorted(set(agent_ids))}
        return [
            d async for d in self.work.find(query, {"_id": 1, "agent_id": 1}).sort("_id", ASCENDING)
        ]

    async def mask_summaries(self, case_number: int) -> int:
        """Forget the subject routing copied from a case that was masked (its queue rows then
        show it as masked); how many work items changed."""
        result = await self.work.update_many(
            {"summary.case_number": case_number},
            {"$set": {"summary.subject": MASKED_SUBJECT}},
        )
        return result.modified_count

    async def live_work_summary(self) -> list[Document]:
        """Service, status, age and personal owner of every live interaction (for views)."""
        projection = {"service": 1, "status": 1, "queued_at": 1, "personal_agent_id": 1}
        return [d async for d in self.work.find({"status": {"$in": list(LIVE)}}, projection)]
