"""MongoDB adapter: agents (profile + state + timers + outbox) and the state history.

Every agent is one :class:`AgentRecord` in a :class:`VersionedCollection`: a change reads it,
decides with the pure domain, and writes it back with one write guarded by its ``version``;
when another replica won the race the change is decided again on the fresh record. So
replicas serialise the changes to one agent: none is lost, none is applied twice.

Outbox: a state change stores the event it must announce in that same write (the record's
``outbox``). That event alone is published after the write and then marked published; an
earlier one left unsent is the relay's, and the kernel's :class:`Outbox` sweep publishes
whatever a crash left behind. History rows for reports are
written from the same outbox with natural keys, so repeating them has no second effect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, cast

from pydantic import Field
from pymongo import ASCENDING, InsertOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.agent_state import domain
from switchboard.agent_state.metrics import CONFLICTS
from switchboard.contracts import Message
from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged
from switchboard.runtime.mongo import GroupedWrites
from switchboard.runtime.storage import (
    Lease,
    NotFound,
    Outbox,
    TimerQueue,
    VersionedCollection,
    WithOutbox,
)
from switchboard.runtime.storage.outbox import Publish

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
APPLIED_MEMORY = 16
TIMER_KINDS = ("wrap_up", "presence")
RELAY_GRACE = timedelta(seconds=3)
EVENT_NAMESPACE = uuid.UUID("6f1d2c1e-57a4-4a55-9a43-2b0c1f3e9d10")


class UnknownAgent(Exception):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {agent_id!r} is registered")
        self.agent_id = agent_id


class AgentRecord(WithOutbox):
    """One agent as stored: profile, state (:class:`domain.Agent`'s fields) and outbox."""

    incarnation: str = ""
    profile: Document = Field(default_factory=dict)
    profile_version: int = 0
    profile_unpublished: bool = False
    state: str = "logged_out"
    reason: str = ""
    since: datetime | None = None
    sequence: int = 0
    pending: str | None = None
    pending_reason: str = ""
    wrap_up_owed: bool = False
    live: list[Document] = Field(default_factory=list)
    ended: list[str] = Field(default_factory=list)
    wrap_up_due: datetime | None = None
    last_seen: datetime | None = None
    presence_due: datetime | None = None
    connection_lost: bool = False
    applied: list[str] = Field(default_factory=list)
    published_sequence: int = 0

    def agent(self) -> domain.Agent:
        return domain.Agent(
            agent_id=self.id,
            state=cast(domain.State, self.state),
            reason=self.reason,
            since=_utc(self.since),
            sequence=self.sequence,
            pending=cast(domain.Pending | None, self.pending),
            pending_reason=self.pending_reason,
            wrap_up_owed=self.wrap_up_owed,
            live=tuple(
                domain.LiveWork(w["id"], w["channel"], _utc(w["since"]) or EPOCH) for w in self.live
            ),
            ended=tuple(self.ended),
            wrap_up_due=_utc(self.wrap_up_due),
            last_seen=_utc(self.last_seen),
            presence_due=_utc(self.presence_due),
            connection_lost=self.connection_lost,
        )

    def unsent(self) -> list[Document]:
        """The state events not yet marked published, oldest first."""
        return sorted(
            (e for e in self.outbox if int(e["sequence"]) > self.published_sequence),
            key=lambda e: int(e["sequence"]),
        )

    def published(self, message: Document) -> Self | None:
        """Take ``message`` out of the outbox. ``published_sequence`` is the mark below which
        every event went out: it passes an event still unsent only once that one went too."""
        sequence = int(message["sequence"])
        unsent = self.unsent()
        if all(int(e["sequence"]) != sequence for e in unsent):
            return None
        rest = [e for e in unsent if int(e["sequence"]) != sequence]
        mark = min(int(e["sequence"]) for e in rest) - 1 if rest else sequence
        return self.model_copy(
            update={
                "outbox": rest,
                "published_sequence": max(self.published_sequence, mark),
                "unpublished": bool(rest),
            }
        )


@dataclass(frozen=True)
class Applied:
    """What one change did: the decision, the stored agent, and the events to publish."""

    decision: domain.Decision
    agent: domain.Agent
    profile: Document
    outbox: list[Document]
    """What to publish now: the event this change added (earlier unsent events are the
    relay's and the sweep's, not republished by every change)."""
    repeated: bool = False
    record: AgentRecord | None = None
    """The record as this change stored it (None: nothing written), to mark without a read."""


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = cast(datetime, value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def agent_from_doc(doc: Document) -> domain.Agent:
    return AgentRecord.model_validate(doc).agent()


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


def state_event(
    record: AgentRecord, change: domain.Change, parent: Message | None
) -> AgentStateChanged:
    """The event announcing ``change``; its id is fixed by the agent's incarnation + sequence."""
    message_id = uuid.uuid5(
        EVENT_NAMESPACE, f"{record.incarnation}:{change.agent_id}:{change.sequence}"
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


def profile_event(record: AgentRecord) -> AgentProfileChanged:
    profile = record.profile
    return AgentProfileChanged(
        message_id=uuid.uuid5(
            EVENT_NAMESPACE, f"{record.incarnation}:{record.id}:profile:{record.profile_version}"
        ),
        agent_id=record.id,
        name=profile.get("name", record.id),
        teams=profile.get("teams", []),
        skills=profile.get("skills", []),
        capacity=profile.get("capacity", {}),
        active=profile.get("active", True),
        profile_version=record.profile_version,
    )


class AgentStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.agents = database["agents"]
        self.records = VersionedCollection(self.agents, AgentRecord, on_conflict=CONFLICTS.inc)
        self.history = database["state_history"]
        self._history_rows = GroupedWrites(self.history)
        """History rows of concurrent changes go to the server as one bulk write."""
        self.locks = database["locks"]
        self.timers = database["timers"]
        self.due = TimerQueue(self.timers)

    def outbox(self, publish: Publish) -> Outbox[AgentRecord]:
        """The state events' outbox, publishing through ``publish``."""
        return Outbox(self.records, publish, grace=RELAY_GRACE)

    async def ensure_indexes(self) -> None:
        await self.agents.create_index("state")
        await self.agents.create_index("unpublished")
        await self.agents.create_index("profile_unpublished")
        await self.agents.create_index("profile.teams")
        await self.history.create_index([("agent_id", ASCENDING), ("at", ASCENDING)])
        await self.history.create_index("at")
        await self.due.ensure_indexes()

    # --- registry -----------------------------------------------------------------------------

    async def is_empty(self) -> bool:
        return await self.agents.count_documents({}, limit=1) == 0

    async def save_profile(self, agent_id: str, profile: Document) -> AgentRecord:
        """Register or replace a profile; returns the stored record (profile unpublished).

        The same profile saved again is not a change (a repeated command has no new effect).
        """

        def replace(record: AgentRecord) -> tuple[AgentRecord | None, None]:
            if record.profile == profile:
                return None, None
            changed = {
                "profile": profile,
                "profile_version": record.profile_version + 1,
                "profile_unpublished": True,
            }
            return record.model_copy(update=changed), None

        while True:
            new = self._new_record(agent_id, profile)
            if await self.records.insert(new):
                return new
            with contextlib.suppress(NotFound):  # deleted between the insert and the update
                return (await self.records.update(agent_id, replace)).aggregate

    async def seed(self, agents: Iterable[tuple[str, Document]]) -> int:
        """Insert agents that do not exist yet (two replicas seeding at once is harmless)."""
        added = 0
        for agent_id, profile in agents:
            added += await self.records.insert(self._new_record(agent_id, profile))
        return added

    @staticmethod
    def _new_record(agent_id: str, profile: Document) -> AgentRecord:
        return AgentRecord.model_validate(
            {
                "_id": agent_id,
                "incarnation": uuid.uuid4().hex,
                "version": 1,
                "profile": profile,
                "profile_version": 1,
                "profile_unpublished": True,
                **agent_fields(domain.Agent(agent_id)),
                "changed_at": datetime.now(UTC),
            }
        )

    @classmethod
    def _new_doc(cls, agent_id: str, profile: Document) -> Document:
        return cls._new_record(agent_id, profile).document()

    async def profile_published(self, agent_id: str, profile_version: int) -> None:
        def mark(record: AgentRecord) -> tuple[AgentRecord | None, None]:
            if record.profile_version != profile_version or not record.profile_unpublished:
                return None, None
            return record.model_copy(update={"profile_unpublished": False}), None

        with contextlib.suppress(NotFound):
            await self.records.update(agent_id, mark)

    # --- state changes ------------------------------------------------------------------------

    async def apply(
        self,
        agent_id: str,
        decide: Callable[[domain.Agent], domain.Decision],
        *,
        parent: Message | None = None,
        command_id: str | None = None,
    ) -> Applied:
        """Decide and write one change with one version-guarded write, retrying races.

        ``command_id`` makes a repeated command (crash after the write, before the ledger)
        return what is stored without deciding again.
        """

        def change(record: AgentRecord) -> tuple[AgentRecord | None, tuple[Applied, domain.Agent]]:
            agent = record.agent()
            if command_id is not None and command_id in record.applied:
                repeated = Applied(
                    domain.Decision(agent), agent, record.profile, record.unsent(), True
                )
                return None, (repeated, agent)
            decision = decide(agent)
            if decision.agent == agent and decision.change is None:
                return None, (Applied(decision, agent, record.profile, []), agent)
            changes: Document = {**agent_fields(decision.agent), "changed_at": datetime.now(UTC)}
            added: list[Document] = []
            if decision.change is not None:
                added = [state_event(record, decision.change, parent).model_dump(mode="json")]
                changes |= {"outbox": [*record.unsent(), *added], "unpublished": True}
            if command_id is not None:
                changes["applied"] = [*record.applied, command_id][-APPLIED_MEMORY:]
            applied = Applied(decision, decision.agent, record.profile, added)
            return record.model_copy(update=changes), (applied, agent)

        try:
            done = await self.records.update(agent_id, change)
        except NotFound as exc:
            raise UnknownAgent(agent_id) from exc
        applied, before = done.result
        if not done.written:
            return applied
        await self.sync_timers(applied.agent, before=before)
        return dataclasses.replace(applied, record=done.aggregate)

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
            await self._history_rows.write(InsertOne(row))

    async def record(self, agent_id: str) -> AgentRecord | None:
        return await self.records.get(agent_id)

    async def unpublished_profiles(self, limit: int = 200) -> list[AgentRecord]:
        cursor = self.agents.find({"profile_unpublished": True}, limit=limit)
        return [AgentRecord.model_validate(doc) async for doc in cursor]

    # --- timers -------------------------------------------------------------------------------

    async def sync_timers(
        self,
        agent: domain.Agent,
        *,
        before: domain.Agent | None = None,
        kinds: tuple[str, ...] = TIMER_KINDS,
    ) -> None:
        """Mirror the agent's due times into the small ``timers`` collection that is polled.

        The agent record is the truth; a row lost by a crash is rebuilt by
        :meth:`repair_timers`, and a stale row is corrected when it fires.
        """
        for kind in kinds:
            due = _due(agent, kind)
            if before is not None and _due(before, kind) == due:
                continue
            await self.due.set(
                f"{agent.agent_id}:{kind}", due, {"agent_id": agent.agent_id, "kind": kind}
            )

    async def claim_due(self, kind: str, now: datetime, lease: timedelta) -> str | None:
        """Claim one due timer of ``kind`` for this replica (for ``lease``); its agent id."""
        timer = await self.due.claim_due(now, lease, where={"kind": kind})
        return None if timer is None else str(timer.data["agent_id"])

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
        async for timer in self.due.all():
            due = wanted.pop(timer.key, None)
            if due is None or _utc(timer.due) != due:
                agent_id, kind = timer.key.rsplit(":", 1)
                await self.due.set(timer.key, due, {"agent_id": agent_id, "kind": kind})
                fixed += 1
        for key, due in wanted.items():
            agent_id, kind = key.rsplit(":", 1)
            await self.due.set(key, due, {"agent_id": agent_id, "kind": kind})
            fixed += 1
        return fixed

    async def take_lock(self, name: str, holder: str, hold: timedelta) -> bool:
        """A named lease across replicas (e.g. one reconciliation at a time)."""
        return await Lease(self.locks, name, holder).acquire(hold) is not None

    async def release_lock(self, name: str, holder: str) -> None:
        await Lease(self.locks, name, holder).release()

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

    async def history_page(self, after: str, limit: int) -> list[Document]:
        """Recorded changes after the row ``after`` (ids are ``<agent>:<sequence, 12 digits>``,
        so the order is by agent, then sequence), at most ``limit``."""
        query: Document = {"_id": {"$gt": after}} if after else {}
        cursor = self.history.find(query).sort("_id", ASCENDING).limit(limit)
        rows = [row async for row in cursor]
        for row in rows:
            row["at"] = _utc(row["at"])
        return rows


def _due(agent: domain.Agent, kind: str) -> datetime | None:
    return agent.wrap_up_due if kind == "wrap_up" else agent.presence_due
