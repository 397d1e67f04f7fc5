"""MongoDB adapter of the routing service: typed aggregates through the storage kernel.

Collections
-----------
``services``    one document per routing service (its :class:`ServiceDefinition`).
``agents``      routing's record of each agent (:class:`AgentRecord`), with its *holds*: the
                live offers and assignments charged to its capacity.
``work``        one :class:`WorkItem` per interaction: ``waiting`` -> ``offered`` ->
                ``assigned`` -> ``ended`` (or ``withdrawn``); ``due`` is its next timer (offer
                expiry, end of the preferred-agent wait, personal-queue overflow). It keeps its
                last offers and how they ended, so a late answer gets a clear refusal.
``work_timers`` the kernel's :class:`TimerQueue` of the interactions' ``due``: polling reads
                only these, not the backlog. A timer is written after its interaction, guarded
                by the interaction's version (writers finishing out of order leave the newest);
                :meth:`RoutingStore.repair_timers` arms any an interrupted write left out.
``ended_work``  interactions that ended, out of the way of live scans.

An interaction's ``history`` (kept over its rounds) holds its transfers and overflows, and what
reports count: each assignment, each end of an assigned round, each offer not answered in time;
:mod:`switchboard.routing.history` tells them again as events (``routing.history_requested``).

Every change of ``agents`` and ``work`` goes through the kernel's :class:`VersionedCollection`:
one write guarded by the version read, so two replicas never both take the last free place of
an agent, and at most one offer per interaction is ever live.

Order of a reservation: first the agent's hold (capacity), then the interaction's transition;
if the second fails the hold is given back. A crash in between leaves a hold without an offer,
which the router's stale-hold job finds and releases: capacity is only ever over-counted for a
moment, never under-counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.contracts.routing import ServiceDefinition
from switchboard.routing import metrics
from switchboard.routing.domain import (
    LIVE,
    AgentChange,
    AgentRecord,
    ProfileKey,
    WorkItem,
    interaction_of_offer,
    with_room,
)
from switchboard.routing.queue_index import Place
from switchboard.runtime.mongo import retry_when_busy
from switchboard.runtime.storage import (
    NotFound,
    Timer,
    TimerQueue,
    Updated,
    Versioned,
    VersionedCollection,
)

Document = dict[str, Any]
R = TypeVar("R")

MASKED_SUBJECT = "(masked)"
"""What a queue row shows as the subject of a case whose text was masked."""


class StoredWork(WorkItem, Versioned):
    """A :class:`WorkItem` as the kernel stores it."""


class StoredAgent(AgentRecord, Versioned):
    """An :class:`AgentRecord` as the kernel stores it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def stored_work(item: WorkItem) -> StoredWork:
    """The item as a stored aggregate (a transition of a stored one already is one)."""
    if isinstance(item, StoredWork):
        return item
    return StoredWork.model_validate(item.model_dump(by_alias=True))


def stored_agent(agent: AgentRecord) -> StoredAgent:
    if isinstance(agent, StoredAgent):
        return agent
    return StoredAgent.model_validate(agent.model_dump(by_alias=True))


def place_of(item: WorkItem) -> Place:
    return Place(
        interaction_id=item.id,
        version=item.version,
        waiting=item.status == "waiting",
        service=item.service,
        priority=item.priority,
        queued_at=item.queued_at,
        personal_agent_id=item.personal_agent_id,
    )


PLACE_FIELDS = {f: 1 for f in ("version", "status", "service", "priority", "queued_at")} | {
    "personal_agent_id": 1
}
QUEUE_ORDER = [("priority", DESCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)]


class RoutingStore:
    def __init__(self, database: AsyncDatabase[Document], *, default_capacity: int = 1) -> None:
        self.db = database
        self.services = database["services"]
        self.archive = database["ended_work"]
        self.default_capacity = default_capacity
        self.agents = VersionedCollection(
            database["agents"],
            StoredAgent,
            on_conflict=metrics.CAS_CONFLICTS.labels("agent").inc,
        )
        self.work = VersionedCollection(
            database["work"], StoredWork, on_conflict=metrics.CAS_CONFLICTS.labels("work").inc
        )
        self.timers = TimerQueue(database["work_timers"])

    async def ensure_indexes(self) -> None:
        work = self.work.collection
        await work.create_index([("status", ASCENDING), ("service", ASCENDING)])
        await work.create_index("due")
        await work.create_index("offer_ids")
        await work.create_index("agent_id")
        await work.create_index("personal_agent_id")
        await self.agents.collection.create_index("avail")
        await self.agents.collection.create_index("room_total")
        await self.timers.ensure_indexes()

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

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        return await self.agents.get(agent_id)

    async def change_agent(
        self,
        agent_id: str,
        change: AgentChange,
        *,
        create: bool = True,
        known: AgentRecord | None = None,
    ) -> tuple[AgentRecord | None, bool]:
        """Apply ``change`` (None: nothing to write) with one version-guarded write, its room
        worked out again. ``create``: an agent not stored yet starts as a new record. ``known``:
        the agent as the caller read it a moment ago, tried first instead of a read. Returns
        the agent as it now is and whether this call changed it."""

        def decide(agent: StoredAgent) -> tuple[StoredAgent | None, bool]:
            new = change(agent)
            if new is None:
                return None, False
            return stored_agent(with_room(new, self.default_capacity)), True

        for _ in range(self.agents.attempts):
            try:
                known_agent = None if known is None else stored_agent(known)
                done = await self.agents.update(agent_id, decide, known=known_agent)
            except NotFound:
                if not create:
                    return None, False
                first, did = decide(StoredAgent.model_validate({"_id": agent_id}))
                if first is None:
                    return None, False
                first = first.model_copy(update={"version": 1})
                if await self.agents.insert(first):
                    return first, did
                known = None  # created meanwhile by another writer: change that one
                continue
            if known is not None and not done.written:
                known = None  # decided on what the caller knew: decide on what is stored
                continue
            return done.aggregate, done.written
        raise RuntimeError(f"agent {agent_id} kept changing under us")

    async def free_agents(
        self, channel: str | None = None, team: str | None = None
    ) -> list[AgentRecord]:
        query: Document = {"room_total": {"$gt": 0}}
        if channel is not None:
            query = {"avail": channel}
        if team is not None:
            query["teams"] = team
        return [a async for a in self.agents.find(query)]

    async def agents_by_id(self, agent_ids: Iterable[str]) -> dict[str, AgentRecord]:
        ids = sorted(set(agent_ids))
        if len(ids) > 16:  # one query; a server without pushdown reads every agent for it
            return {a.id: a async for a in self.agents.find({"_id": {"$in": ids}})}
        found = await asyncio.gather(*(self.agents.get(i) for i in ids))
        return {a.id: a for a in found if a is not None}

    async def agent_progress(self) -> dict[str, tuple[ProfileKey | None, int]]:
        """Per agent: the profile key and state sequence applied so far (one scan)."""
        found: dict[str, tuple[ProfileKey | None, int]] = {}
        projection = {"profile_key": 1, "state_seq": 1}
        async for doc in self.agents.collection.find({}, projection):
            agent = AgentRecord.model_validate(doc)
            found[agent.id] = (agent.profile_key, agent.state_seq)
        return found

    async def agents_with_holds(self) -> list[AgentRecord]:
        return [a async for a in self.agents.find({"holds": {"$ne": []}})]

    # --- work ------------------------------------------------------------------------------

    async def get_work(self, interaction_id: str) -> WorkItem | None:
        return await self.work.get(interaction_id)

    async def work_by_offer(self, offer_id: str) -> WorkItem | None:
        interaction_id = interaction_of_offer(offer_id)
        if interaction_id is not None:
            for read in (self.work.get, self.get_archived):  # live first, then ended
                item = await read(interaction_id)
                if item is not None and offer_id in item.offer_ids:
                    return item
            return None
        doc = await self.work.collection.find_one({"offer_ids": offer_id})
        return None if doc is None else StoredWork.model_validate(doc)

    async def get_archived(self, interaction_id: str) -> WorkItem | None:
        doc = await self.archive.find_one({"_id": interaction_id})
        return None if doc is None else StoredWork.model_validate(doc)

    async def archive_work(self, item: WorkItem) -> None:
        """Move an ended interaction out of ``work``, so live scans only see live work.

        The archive keeps its round (offer ids stay unique over rounds) and its history. A crash
        in between leaves an ended item in ``work``: harmless, it is simply not live.
        """
        doc = stored_work(item).document()
        await retry_when_busy(lambda: self.archive.replace_one({"_id": item.id}, doc, upsert=True))
        # Removing is moving on from this version too: a new round opened meanwhile stays.
        guard = {"_id": item.id, "version": item.version}
        await retry_when_busy(lambda: self.work.collection.delete_one(guard))

    async def insert_work(self, item: WorkItem) -> bool:
        """Store a new interaction (and arm its timer); False when it exists already."""
        if not await self.work.insert(stored_work(item)):
            return False
        if item.due is not None:
            await self.set_timer(item)
        return True

    async def change_work(
        self,
        interaction_id: str,
        change: Callable[[WorkItem], tuple[WorkItem | None, R]],
        *,
        known: WorkItem | None = None,
        timer_fired: bool = False,
    ) -> Updated[StoredWork, R]:
        """Apply ``change`` (pure: item -> (new item or None, result)) with one version-guarded
        write, deciding again on a fresh read after a lost race; then move its timer if its
        ``due`` changed (or it just fired). ``known``: the item as this replica last saw it,
        tried first instead of a read; a decision to write nothing is taken again on a read.
        Raises :class:`NotFound` for an interaction not in ``work``."""
        due_before: list[datetime | None] = [None]

        def decide(current: StoredWork) -> tuple[StoredWork | None, R]:
            due_before[0] = current.due
            new, result = change(current)
            return (None if new is None else stored_work(new)), result

        done = await self.work.update(
            interaction_id, decide, known=None if known is None else stored_work(known)
        )
        if known is not None and not done.written:
            done = await self.work.update(interaction_id, decide)
        if done.written and (timer_fired or done.aggregate.due != due_before[0]):
            await self.set_timer(done.aggregate)
        return done

    async def replace_work(self, before: WorkItem, after: WorkItem) -> StoredWork | None:
        """Write ``after``, decided on ``before`` as read, if nobody wrote since (then move its
        timer if its ``due`` changed): the item as stored, or None when another writer came
        first. For a handler that has read and decided already; else :meth:`change_work`."""
        stored = await self.work.replace(
            stored_work(after.model_copy(update={"version": before.version}))
        )
        if stored is not None and stored.due != before.due:
            await self.set_timer(stored)
        return stored

    async def works_by_id(self, interaction_ids: Iterable[str]) -> dict[str, WorkItem | None]:
        """Each interaction read by ``_id`` (an index lookup on every server, unlike ``$in``);
        ``None`` for one no longer live."""
        ids = list(dict.fromkeys(interaction_ids))
        found = await asyncio.gather(*(self.work.get(i) for i in ids))
        return dict(zip(ids, found, strict=True))

    async def waiting_places(self) -> list[Place]:
        """Every waiting interaction's place (a full read, for :class:`QueueIndex`)."""
        cursor = self.work.collection.find({"status": "waiting"}, PLACE_FIELDS)
        return [place_of(WorkItem.model_validate(d)) async for d in cursor]

    # --- timers ----------------------------------------------------------------------------

    async def set_timer(self, item: WorkItem) -> None:
        """Arm, move or clear the interaction's timer to its ``due`` (of its version)."""
        await self.timers.set(item.id, item.due, {}, version=item.version)

    async def clear_timer(self, interaction_id: str) -> None:
        await self.timers.clear(interaction_id)

    async def claim_due_timer(self, now: datetime, lease: timedelta) -> Timer | None:
        """One due interaction timer for this replica alone, for ``lease``."""
        return await self.timers.claim_due(now, lease)

    async def repair_timers(self) -> int:
        """Arm the timer of any interaction whose ``due`` has none (a write interrupted between
        the interaction and its timer, or data from before ``work_timers``)."""
        armed = {t.key: t.due async for t in self.timers.all()}
        repaired = 0
        cursor = self.work.collection.find({"due": {"$ne": None}}, {"due": 1, "version": 1})
        async for doc in cursor:
            item = WorkItem.model_validate(doc)
            if armed.get(item.id) != item.due:
                await self.set_timer(item)
                repaired += 1
        return repaired

    async def forget_old_timers(self) -> None:
        """Drop the ``timers`` collection of earlier versions (its entries are re-armed in
        ``work_timers`` by :meth:`repair_timers`)."""
        await self.db.drop_collection("timers")

    # --- reads for queues and views ----------------------------------------------------------

    async def waiting(
        self,
        *,
        services: Iterable[str] | None = None,
        personal_agent_id: str | None = None,
        team_only: bool = False,
        limit: int = 100,
    ) -> list[WorkItem]:
        """Waiting work in queue order (priority, then age)."""
        query: Document = {"status": "waiting"}
        if services is not None:
            query["service"] = {"$in": sorted(set(services))}
        if personal_agent_id is not None:
            query["personal_agent_id"] = personal_agent_id
        elif team_only:
            query["personal_agent_id"] = None
        cursor = self.work.collection.find(query).sort(QUEUE_ORDER).limit(limit)
        return [StoredWork.model_validate(d) async for d in cursor]

    async def waiting_for(
        self, agent_ids: Iterable[str], services: Iterable[str], *, limit: int = 100
    ) -> list[WorkItem]:
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
        query = {"status": "waiting", "$or": either}
        cursor = self.work.collection.find(query).sort(QUEUE_ORDER).limit(limit)
        return [StoredWork.model_validate(d) async for d in cursor]

    async def assigned(self, agent_ids: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(interaction, agent) of every assignment (of these agents)."""
        query: Document = {"status": "assigned"}
        if agent_ids is not None:
            query["agent_id"] = {"$in": sorted(set(agent_ids))}
        cursor = self.work.collection.find(query, {"_id": 1, "agent_id": 1}).sort("_id", ASCENDING)
        return [(d["_id"], d["agent_id"]) async for d in cursor]

    async def mask_summaries(self, case_number: int) -> int:
        """Forget the subject routing copied from a case that was masked (its queue rows then
        show it as masked); how many work items changed."""
        result = await self.work.collection.update_many(
            {"summary.case_number": case_number},
            {"$set": {"summary.subject": MASKED_SUBJECT}},
        )
        return result.modified_count

    async def history_page(self, after_interaction_id: str, limit: int) -> list[WorkItem]:
        """Up to ``limit`` interactions after ``after_interaction_id`` (by id), live or ended;
        an interaction in both (a new round of an ended one) as its newest version, whose
        history carries the older one's."""
        query = {"_id": {"$gt": after_interaction_id}}
        found: dict[str, WorkItem] = {}
        for collection in (self.work.collection, self.archive):
            cursor = collection.find(query).sort("_id", ASCENDING).limit(limit)
            async for doc in cursor:
                item = StoredWork.model_validate(doc)
                known = found.get(item.id)
                if known is None or known.version < item.version:
                    found[item.id] = item
        return [found[key] for key in sorted(found)[:limit]]

    async def live_work_summary(self) -> list[WorkItem]:
        """Service, status, age and personal owner of every live interaction (for views; the
        other fields are left at their defaults)."""
        projection = {"service": 1, "status": 1, "queued_at": 1, "personal_agent_id": 1}
        cursor = self.work.collection.find({"status": {"$in": list(LIVE)}}, projection)
        return [WorkItem.model_validate(d) async for d in cursor]
