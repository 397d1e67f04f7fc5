"""MongoDB adapter: agents (profile + state + timers + outbox) and the state history.

Concurrency: every agent document has a ``version``. A change reads the document, decides with
the pure domain, and writes with a compare-and-set on the version it read; when another replica
won the race the change is decided again on the fresh document (bounded retries with jitter).
So replicas serialise the changes to one agent: none is lost, none is applied twice.

Outbox: a state change stores the event it must announce in the same atomic write
(``outbox`` + ``unpublished``). The event is published after that write and then marked
published; a periodic relay publishes whatever a crash left behind. History rows for reports
are written from the same outbox with natural keys, so repeating them has no second effect.

Only portable operations are used (FerretDB): whole-field ``$set``, equality/range filters,
sorting in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.agent_state import domain
from switchboard.agent_state.metrics import CONFLICTS
from switchboard.contracts import Message
from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged
from switchboard.runtime.mongo import retry_when_busy

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
APPLIED_MEMORY = 16
MAX_ATTEMPTS = 40
TIMER_KINDS = ("wrap_up", "presence")
CLAIM_STALE = timedelta(seconds=5)
CLAIM_KEEP = timedelta(seconds=60)
EVENT_NAMESPACE = uuid.UUID("6f1d2c1e-57a4-4a55-9a43-2b0c1f3e9d10")


class UnknownAgent(Exception):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {agent_id!r} is registered")
        self.agent_id = agent_id


class TooMuchContention(Exception):
    """The compare-and-set lost too many times in a row (retried by the bus)."""


@dataclass(frozen=True)
class Applied:
    """What one change did: the decision, the stored agent, and the events to publish."""

    decision: domain.Decision
    agent: domain.Agent
    profile: Document
    outbox: list[Document]
    repeated: bool = False


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = cast(datetime, value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def agent_from_doc(doc: Document) -> domain.Agent:
    return domain.Agent(
        agent_id=doc["_id"],
        state=doc.get("state", "logged_out"),
        reason=doc.get("reason", ""),
        since=_utc(doc.get("since")),
        sequence=int(doc.get("sequence", 0)),
        pending=doc.get("pending"),
        pending_reason=doc.get("pending_reason", ""),
        wrap_up_owed=bool(doc.get("wrap_up_owed", False)),
        live=tuple(
            domain.LiveWork(w["id"], w["channel"], _utc(w["since"]) or EPOCH)
            for w in doc.get("live", [])
        ),
        ended=tuple(doc.get("ended", [])),
        wrap_up_due=_utc(doc.get("wrap_up_due")),
        last_seen=_utc(doc.get("last_seen")),
        presence_due=_utc(doc.get("presence_due")),
        connection_lost=bool(doc.get("connection_lost", False)),
    )


def agent_fields(agent: domain.Agent) -> Document:
    return {
        "state": agent.state,
        "reason": agent.reason,
        "since": agent.since,
        "sequence": agent.sequence,
        "pending": agent.pending,
        "pending_reason": agent.pending_reason,
        "wrap_up_owed": agent.wrap_up_owed,
        "live": [
            {"id": w.interaction_id, "channel": w.channel, "since": w.since} for w in agent.live
        ],
        "ended": list(agent.ended),
        "wrap_up_due": agent.wrap_up_due,
        "last_seen": agent.last_seen,
        "presence_due": agent.presence_due,
        "connection_lost": agent.connection_lost,
    }


def state_event(doc: Document, change: domain.Change, parent: Message | None) -> AgentStateChanged:
    """The event announcing ``change``; its id is fixed by the agent's incarnation + sequence."""
    message_id = uuid.uuid5(
        EVENT_NAMESPACE, f"{doc.get('incarnation', '')}:{change.agent_id}:{change.sequence}"
    )
    envelope: Document = {"message_id": message_id}
    if parent is not None:
        envelope |= {"correlation_id": parent.correlation_id, "causation_id": parent.message_id}
    return AgentStateChanged(
        **envelope,
        agent_id=change.agent_id,
        previous=change.previous,
        state=change.state,
        reason=change.reason,
        actor=change.actor,
        sequence=change.sequence,
        changed_at=change.at,
        not_ready_pending=change.pending is not None,
        pending=change.pending,
        live=change.live,
    )


def profile_event(doc: Document) -> AgentProfileChanged:
    profile = doc.get("profile", {})
    return AgentProfileChanged(
        message_id=uuid.uuid5(
            EVENT_NAMESPACE,
            f"{doc.get('incarnation', '')}:{doc['_id']}:profile:{doc.get('profile_version', 0)}",
        ),
        agent_id=doc["_id"],
        name=profile.get("name", doc["_id"]),
        teams=profile.get("teams", []),
        skills=profile.get("skills", []),
        capacity=profile.get("capacity", {}),
        active=profile.get("active", True),
        profile_version=int(doc.get("profile_version", 0)),
    )


class AgentStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.agents = database["agents"]
        self.history = database["state_history"]
        self.locks = database["locks"]
        self.timers = database["timers"]
        self.claims = database["version_claims"]

    async def ensure_indexes(self) -> None:
        await self.agents.create_index("state")
        await self.agents.create_index("unpublished")
        await self.agents.create_index("profile_unpublished")
        await self.agents.create_index("profile.teams")
        await self.history.create_index([("agent_id", ASCENDING), ("at", ASCENDING)])
        await self.history.create_index("at")
        await self.timers.create_index("due")
        await self.claims.create_index("at")

    # --- registry -----------------------------------------------------------------------------

    async def is_empty(self) -> bool:
        return await self.agents.count_documents({}, limit=1) == 0

    async def save_profile(self, agent_id: str, profile: Document) -> Document:
        """Register or replace a profile; returns the stored document (profile unpublished).

        The same profile saved again is not a change (a repeated command has no new effect).
        """
        for _ in range(MAX_ATTEMPTS):
            doc = await self.agents.find_one({"_id": agent_id})
            if doc is None:
                doc = self._new_doc(agent_id, profile)
                try:
                    await self.agents.insert_one(doc)
                except DuplicateKeyError:
                    continue
                return doc
            if doc.get("profile") == profile:
                return doc
            changes = {
                "profile": profile,
                "profile_version": int(doc.get("profile_version", 0)) + 1,
                "profile_unpublished": True,
                "version": int(doc["version"]) + 1,
            }
            if await self._compare_and_set(agent_id, int(doc["version"]), changes):
                return {**doc, **changes, "version": int(doc["version"]) + 1}
            CONFLICTS.inc()
            await _backoff(_)
        raise TooMuchContention(f"agent {agent_id}: profile kept changing under us")

    async def seed(self, agents: Iterable[tuple[str, Document]]) -> int:
        """Insert agents that do not exist yet (two replicas seeding at once is harmless)."""
        added = 0
        for agent_id, profile in agents:
            try:
                await self.agents.insert_one(self._new_doc(agent_id, profile))
                added += 1
            except DuplicateKeyError:
                pass
        return added

    @staticmethod
    def _new_doc(agent_id: str, profile: Document) -> Document:
        return {
            "_id": agent_id,
            "incarnation": uuid.uuid4().hex,
            "version": 1,
            "profile": profile,
            "profile_version": 1,
            "profile_unpublished": True,
            **agent_fields(domain.Agent(agent_id)),
            "timer_lease": EPOCH,
            "applied": [],
            "outbox": [],
            "unpublished": False,
            "published_sequence": 0,
            "changed_at": datetime.now(UTC),
        }

    async def _compare_and_set(self, agent_id: str, version: int, changes: Document) -> bool:
        """Write ``changes`` (with ``version + 1``) only if the agent is still at ``version``.

        A filtered ``update_one`` is not enough on FerretDB 1.24/SQLite: concurrent updates
        with the same version filter can *all* match (measured), and concurrent updates of
        different fields can overwrite each other. So the writer of version ``v + 1`` first
        claims it with an insert into ``version_claims`` (the unique ``_id`` is atomic there);
        only the one claimer writes. A claim whose writer died is given up after a few seconds.
        """
        key = f"{agent_id}:{version + 1}"
        now = datetime.now(UTC)
        try:
            await retry_when_busy(lambda: self.claims.insert_one({"_id": key, "at": now}))
        except DuplicateKeyError:
            await self.claims.delete_one({"_id": key, "at": {"$lt": now - CLAIM_STALE}})
            return False
        done = await retry_when_busy(
            lambda: self.agents.update_one(
                {"_id": agent_id, "version": version},
                {"$set": {**changes, "version": version + 1}},
            )
        )
        return bool(done.matched_count)

    async def purge_claims(self) -> None:
        cutoff = datetime.now(UTC) - CLAIM_KEEP
        await retry_when_busy(lambda: self.claims.delete_many({"at": {"$lt": cutoff}}))

    async def _update_fields(
        self, agent_id: str, fields: Callable[[Document], Document | None]
    ) -> None:
        """A versioned read-modify-write of bookkeeping fields (serialised like state changes)."""
        for attempt in range(MAX_ATTEMPTS):
            doc = await self.agents.find_one({"_id": agent_id})
            if doc is None:
                return
            changes = fields(doc)
            if not changes:
                return
            if await self._compare_and_set(agent_id, int(doc["version"]), changes):
                return
            CONFLICTS.inc()
            await _backoff(attempt)
        raise TooMuchContention(f"agent {agent_id}: bookkeeping kept conflicting")

    async def profile_published(self, agent_id: str, profile_version: int) -> None:
        def fields(doc: Document) -> Document | None:
            if doc.get("profile_version") != profile_version or not doc.get("profile_unpublished"):
                return None
            return {"profile_unpublished": False}

        await self._update_fields(agent_id, fields)

    # --- state changes ------------------------------------------------------------------------

    async def apply(
        self,
        agent_id: str,
        decide: Callable[[domain.Agent], domain.Decision],
        *,
        parent: Message | None = None,
        command_id: str | None = None,
    ) -> Applied:
        """Decide and write one change with compare-and-set on ``version``, retrying races.

        ``command_id`` makes a repeated command (crash after the write, before the ledger)
        return what is stored without deciding again.
        """
        for attempt in range(MAX_ATTEMPTS):
            doc = await self.agents.find_one({"_id": agent_id})
            if doc is None:
                raise UnknownAgent(agent_id)
            agent = agent_from_doc(doc)
            if command_id is not None and command_id in doc.get("applied", []):
                return Applied(
                    domain.Decision(agent), agent, doc["profile"], _unpublished(doc), True
                )
            decision = decide(agent)
            if decision.agent == agent and decision.change is None:
                return Applied(decision, agent, doc["profile"], [])
            changes: Document = {
                **agent_fields(decision.agent),
                "version": int(doc["version"]) + 1,
                "changed_at": datetime.now(UTC),
            }
            outbox = _unpublished(doc)
            if decision.change is not None:
                event = state_event(doc, decision.change, parent)
                outbox.append(event.model_dump(mode="json"))
                changes |= {"outbox": outbox, "unpublished": True}
            if command_id is not None:
                changes["applied"] = [*doc.get("applied", []), command_id][-APPLIED_MEMORY:]
            if await self._compare_and_set(agent_id, int(doc["version"]), changes):
                await self.sync_timers(decision.agent, before=agent)
                return Applied(decision, decision.agent, doc["profile"], outbox)
            CONFLICTS.inc()
            await _backoff(attempt)
        raise TooMuchContention(f"agent {agent_id}: changed by others {MAX_ATTEMPTS} times")

    async def mark_published(self, agent_id: str, sequence: int) -> None:
        def fields(doc: Document) -> Document | None:
            if int(doc.get("published_sequence", 0)) >= sequence:
                return None
            changes: Document = {"published_sequence": sequence}
            if int(doc.get("sequence", 0)) == sequence:
                changes["unpublished"] = False
            return changes

        await self._update_fields(agent_id, fields)

    async def record_history(self, event: AgentStateChanged) -> None:
        row = {
            "_id": f"{event.agent_id}:{event.sequence:012d}",
            "agent_id": event.agent_id,
            "sequence": event.sequence,
            "previous": event.previous,
            "state": event.state,
            "reason": event.reason,
            "actor": event.actor,
            "at": event.changed_at,
        }
        with contextlib.suppress(DuplicateKeyError):
            await retry_when_busy(lambda: self.history.insert_one(row))

    async def unpublished(self, older_than: datetime, limit: int = 200) -> list[Document]:
        cursor = self.agents.find(
            {"unpublished": True, "changed_at": {"$lt": older_than}},
            {"outbox": 1, "published_sequence": 1},
            limit=limit,
        )
        return [doc async for doc in cursor]

    async def unpublished_profiles(self, limit: int = 200) -> list[Document]:
        cursor = self.agents.find({"profile_unpublished": True}, limit=limit)
        return [doc async for doc in cursor]

    # --- timers -------------------------------------------------------------------------------

    async def sync_timers(
        self,
        agent: domain.Agent,
        *,
        before: domain.Agent | None = None,
        kinds: tuple[str, ...] = TIMER_KINDS,
    ) -> None:
        """Mirror the agent's due times into the small ``timers`` collection that is polled.

        The agent document is the truth; a row lost by a crash is rebuilt by
        :meth:`repair_timers`, and a stale row is corrected when it fires.
        """
        for kind in kinds:
            due = _due(agent, kind)
            if before is not None and _due(before, kind) == due:
                continue
            await self._set_timer(f"{agent.agent_id}:{kind}", agent.agent_id, kind, due)

    async def _set_timer(self, key: str, agent_id: str, kind: str, due: datetime | None) -> None:
        if due is None:
            await retry_when_busy(lambda: self.timers.delete_one({"_id": key}))
            return
        row = {"agent_id": agent_id, "kind": kind, "due": due, "lease": EPOCH}
        await retry_when_busy(
            lambda: self.timers.update_one({"_id": key}, {"$set": row}, upsert=True)
        )

    async def claim_due(self, kind: str, now: datetime, lease: timedelta) -> str | None:
        """Claim one due timer of ``kind`` (atomically, with a lease); its agent id or None."""
        row = await retry_when_busy(
            lambda: self.timers.find_one_and_update(
                {"kind": kind, "due": {"$lte": now}, "lease": {"$lte": now}},
                {"$set": {"lease": now + lease}},
                return_document=ReturnDocument.AFTER,
            )
        )
        return None if row is None else str(row["agent_id"])

    async def repair_timers(self) -> int:
        """Rebuild timer rows from the agents (after a crash between a write and its timer)."""
        wanted: dict[str, datetime] = {}
        fields = {"wrap_up_due": 1, "presence_due": 1}
        async for doc in self.agents.find({}, fields):
            for kind in TIMER_KINDS:
                due = _utc(doc.get(f"{kind}_due"))
                if due is not None:
                    wanted[f"{doc['_id']}:{kind}"] = due
        fixed = 0
        async for row in self.timers.find({}):
            due = wanted.pop(str(row["_id"]), None)
            if due is None:
                await self.timers.delete_one({"_id": row["_id"]})
                fixed += 1
            elif _utc(row.get("due")) != due:
                await self.timers.update_one({"_id": row["_id"]}, {"$set": {"due": due}})
                fixed += 1
        for key, due in wanted.items():
            agent_id, kind = key.rsplit(":", 1)
            row = {"agent_id": agent_id, "kind": kind, "due": due, "lease": EPOCH}
            await self.timers.update_one({"_id": key}, {"$set": row}, upsert=True)
            fixed += 1
        return fixed

    async def take_lock(self, name: str, holder: str, hold: timedelta) -> bool:
        """A named lease across replicas (e.g. one reconciliation at a time)."""
        now = datetime.now(UTC)
        try:
            await self.locks.insert_one({"_id": name, "holder": holder, "until": now + hold})
            return True
        except DuplicateKeyError:
            pass
        taken = await self.locks.find_one_and_update(
            {"_id": name, "until": {"$lte": now}},
            {"$set": {"holder": holder, "until": now + hold}},
        )
        return taken is not None

    async def release_lock(self, name: str, holder: str) -> None:
        await self.locks.delete_one({"_id": name, "holder": holder})

    # --- reads --------------------------------------------------------------------------------

    async def get(self, agent_id: str) -> Document | None:
        return await self.agents.find_one({"_id": agent_id})

    async def find(
        self, agent_ids: list[str] | None = None, team: str | None = None
    ) -> list[Document]:
        query: Document = {}
        if agent_ids:
            query["_id"] = {"$in": agent_ids}
        if team:
            query["profile.teams"] = team
        cursor = self.agents.find(query)
        docs = [doc async for doc in cursor]
        return sorted(docs, key=lambda d: str(d["_id"]))

    async def with_live_work(self) -> list[Document]:
        cursor = self.agents.find({"state": "busy"}, {"_id": 1})
        return [doc async for doc in cursor]

    async def count_by_state(self) -> dict[str, int]:
        counts, _ = await self.states_summary()
        return counts

    async def states_summary(self) -> tuple[dict[str, int], dict[str, datetime]]:
        """Agents per state, and per state the earliest ``since`` (the longest in it)."""
        counts: dict[str, int] = {state: 0 for state in domain.STATES}
        earliest: dict[str, datetime] = {}
        async for doc in self.agents.find({}, {"state": 1, "since": 1}):
            state = doc.get("state", "logged_out")
            counts[state] = counts.get(state, 0) + 1
            since = doc.get("since")
            if isinstance(since, datetime) and (state not in earliest or since < earliest[state]):
                earliest[state] = since
        return counts, earliest

    async def history_rows(
        self, agent_ids: list[str], start: datetime, end: datetime
    ) -> list[Document]:
        """Rows in [start, end) plus, per agent, the last row before ``start`` (its state then)."""
        if not agent_ids:
            agent_ids = [str(d["_id"]) async for d in self.agents.find({}, {"_id": 1})]
        rows: list[Document] = []
        query = {"agent_id": {"$in": agent_ids}, "at": {"$gte": start, "$lt": end}}
        async for row in self.history.find(query):
            rows.append(row)
        for agent_id in agent_ids:
            last = await self.history.find_one(
                {"agent_id": agent_id, "at": {"$lt": start}}, sort=[("sequence", -1)]
            )
            if last is not None:
                rows.append(last)
        for row in rows:
            row["at"] = _utc(row["at"])
        return sorted(rows, key=lambda r: (r["agent_id"], r["sequence"]))


def _due(agent: domain.Agent, kind: str) -> datetime | None:
    return agent.wrap_up_due if kind == "wrap_up" else agent.presence_due


def unpublished_events(doc: Document) -> list[Document]:
    """The state events of an agent document not yet marked published, oldest first."""
    return sorted(_unpublished(doc), key=lambda e: int(e["sequence"]))


def _unpublished(doc: Document) -> list[Document]:
    published = int(doc.get("published_sequence", 0))
    return [e for e in doc.get("outbox", []) if int(e["sequence"]) > published]


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
