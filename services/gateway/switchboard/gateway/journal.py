"""The live journal: each agent's recent live frames, numbered, in MongoDB (shared by replicas).

A desktop whose live stream dropped reconnects with ``?since=<seq>`` (or ``Last-Event-ID``) and
gets every frame it missed. Every gateway replica receives every pushed event (its own exclusive
queue), so every replica journals every event for every agent it concerns, connected or not;
the copies meet in one chain per agent and only the first is kept.

One chain per agent. A frame's ``_id`` is ``<agent>/<seq of the frame before it>``, so two writers
that read the same tail cannot both append after it: the second insert under the same unique key
is refused, which keeps the chain linear. The loser reads the
new tail, sees whether the winner journaled the same event (by its message id) and, if not,
appends after it. Hence:

* ``seq`` grows by one along the chain; a frame is visible only after the one before it, so a
  reader that asks for ``seq > n`` in order never skips one that appears later;
* a chain that starts afresh (first frame ever, or all purged) starts at the current time in
  milliseconds, above any number handed out before, and its first frame has ``prev = 0``: a
  reader whose ``since`` is not the ``prev`` of the next frame knows frames were lost.

Bounded: frames older than ``max_age`` are deleted periodically (the kernel's
:func:`~switchboard.runtime.storage.delete_older_than`), and
an agent's chain is cut to its last ``max_frames`` as it grows.

Masking: each frame records the case it concerns; when a case is masked (``case.masked``) its
frames keep only their ids (:data:`KEPT_WHEN_MASKED`), so no subject, summary or text the agent
masked is replayed (the chain stays whole: a reconnecting desktop loses no ``seq``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from switchboard.gateway.store import case_number_of
from switchboard.runtime.storage import delete_older_than

Document = dict[str, Any]

log = structlog.get_logger("switchboard.gateway.journal")

PRUNE_EVERY = 50
ATTEMPTS = 100
KEPT_WHEN_MASKED = frozenset(
    {
        "message_id",
        "offer_id",
        "interaction_id",
        "case_number",
        "agent_id",
        "channel",
        "service",
        "expires_at",
        "occurred_at",
        "email_id",
    }
)
"""The fields of a masked case's frames that stay: ids and times, never customer text."""


def case_of(data: dict[str, Any]) -> int | None:
    """The case a frame concerns (by its number or its interaction), if any."""
    number = data.get("case_number")
    if isinstance(number, int):
        return number
    interaction = data.get("interaction_id")
    return case_number_of(interaction) if isinstance(interaction, str) else None


@dataclass(frozen=True)
class Frame:
    seq: int
    prev: int
    event: str
    data: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"event": self.event, "seq": self.seq, "data": self.data}


@dataclass(frozen=True)
class Entry:
    """One event to journal for an agent."""

    event_id: str
    event: str
    data: dict[str, Any]


def event_id_of(data: dict[str, Any], body: bytes | None = None) -> str:
    """The event's message id (the envelope's); a digest of the event when it has none."""
    message_id = data.get("message_id")
    if isinstance(message_id, str) and message_id:
        return message_id
    raw = body if body is not None else json.dumps(data, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class LiveJournal:
    def __init__(
        self, database: AsyncDatabase[Document], *, max_age: timedelta, max_frames: int
    ) -> None:
        self.frames = database["live_frames"]
        self.max_age = max_age
        self.max_frames = max_frames

    async def ensure_indexes(self) -> None:
        await self.frames.create_index([("agent_id", ASCENDING), ("seq", ASCENDING)])
        await self.frames.create_index([("agent_id", ASCENDING), ("event_id", ASCENDING)])
        await self.frames.create_index("at")
        await self.frames.create_index("case_number")

    async def append(self, agent_id: str, event_id: str, event: str, data: dict[str, Any]) -> int:
        """Journal one event for one agent (once, however many replicas ask); its ``seq``."""
        return (await self.append_many(agent_id, [Entry(event_id, event, data)]))[event_id]

    async def append_many(self, agent_id: str, entries: list[Entry]) -> dict[str, int]:
        """Journal events for one agent, in this order, each once (however many replicas ask);
        each event id's ``seq``.

        Three round trips for the lot (tail, copies already there, one ordered insert) rather
        than three per event: a burst after a broker restart is journaled as fast as it came.
        """
        seqs: dict[str, int] = {}
        unique: dict[str, Entry] = {}
        for entry in entries:
            unique.setdefault(entry.event_id, entry)
        pending = list(unique.values())
        for _ in range(ATTEMPTS):
            tail = await self._tail(agent_id)
            # read after the tail: a copy appended before this tail is found here, and one
            # appended after it collides with our first insert below
            async for found in self.frames.find(
                {"agent_id": agent_id, "event_id": {"$in": [e.event_id for e in pending]}},
                {"event_id": 1, "seq": 1},
            ):
                seqs[str(found["event_id"])] = int(found["seq"])
            pending = [entry for entry in pending if entry.event_id not in seqs]
            if not pending:
                return seqs
            frames = self._chain(agent_id, tail, pending)
            try:
                await self.frames.insert_many(frames, ordered=True)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                # another writer appended after a tail first: keep what went in, read again
                kept = int(exc.details.get("nInserted", 0))
                seqs.update({f["event_id"]: f["seq"] for f in frames[:kept]})
                pending = pending[kept:]
                continue
            seqs.update({f["event_id"]: f["seq"] for f in frames})
            first, last = int(frames[0]["n"]), int(frames[-1]["n"])
            if last // PRUNE_EVERY > (first - 1) // PRUNE_EVERY:
                await self.frames.delete_many(
                    {"agent_id": agent_id, "n": {"$lte": last - self.max_frames}}
                )
            return seqs
        names = ", ".join(entry.event for entry in pending)
        raise RuntimeError(f"could not journal {names} for {agent_id}: too much contention")

    @staticmethod
    def _chain(agent_id: str, tail: Document | None, entries: list[Entry]) -> list[Document]:
        """The frames that continue the agent's chain after ``tail``, one per entry."""
        now = datetime.now(UTC)
        if tail is None:
            prev, seq, n = 0, int(now.timestamp() * 1000), 1
        else:
            prev, seq, n = int(tail["seq"]), int(tail["seq"]) + 1, int(tail["n"]) + 1
        frames = []
        for entry in entries:
            frames.append(
                {
                    "_id": f"{agent_id}/{prev}",
                    "agent_id": agent_id,
                    "seq": seq,
                    "prev": prev,
                    "n": n,
                    "event_id": entry.event_id,
                    "event": entry.event,
                    "case_number": case_of(entry.data),
                    "body": json.dumps(entry.data, default=str),
                    "at": now,
                }
            )
            prev, seq, n = seq, seq + 1, n + 1
        return frames

    async def _tail(self, agent_id: str) -> Document | None:
        return await self.frames.find_one(
            {"agent_id": agent_id}, {"seq": 1, "n": 1}, sort=[("seq", DESCENDING)]
        )

    async def last_seq(self, agent_id: str) -> int:
        """The newest frame's number (0: none)."""
        tail = await self._tail(agent_id)
        return int(tail["seq"]) if tail else 0

    async def after(self, agent_id: str, seq: int, limit: int = 1000) -> list[Frame]:
        """The agent's frames numbered above ``seq``, oldest first."""
        cursor = self.frames.find(
            {"agent_id": agent_id, "seq": {"$gt": seq}},
            {"seq": 1, "prev": 1, "event": 1, "body": 1},
            sort=[("seq", ASCENDING)],
            limit=limit,
        )
        return [
            Frame(int(d["seq"]), int(d["prev"]), str(d["event"]), json.loads(d["body"]))
            async for d in cursor
        ]

    async def recent(self, agent_id: str, events: tuple[str, ...]) -> list[Frame]:
        """The agent's kept frames of these events, oldest first."""
        cursor = self.frames.find(
            {"agent_id": agent_id, "event": {"$in": list(events)}},
            {"seq": 1, "prev": 1, "event": 1, "body": 1},
            sort=[("seq", ASCENDING)],
        )
        return [
            Frame(int(d["seq"]), int(d["prev"]), str(d["event"]), json.loads(d["body"]))
            async for d in cursor
        ]

    async def mask_case(self, case_number: int) -> int:
        """Strip every frame of the case down to its ids; how many frames were changed."""
        changed = 0
        async for doc in self.frames.find(
            {"case_number": case_number, "event": {"$ne": "case.masked"}}, {"body": 1}
        ):
            data = json.loads(doc["body"])
            kept = {k: v for k, v in data.items() if k in KEPT_WHEN_MASKED}
            if kept == data:
                continue
            kept["masked"] = True
            await self.frames.update_one(
                {"_id": doc["_id"]}, {"$set": {"body": json.dumps(kept, default=str)}}
            )
            changed += 1
        return changed

    async def purge(self) -> None:
        """Delete frames older than ``max_age`` (a periodic hook; shielded like the sessions'
        purge, so a stop that cancels the hook does not cancel it inside a PyMongo call)."""
        work = asyncio.ensure_future(delete_older_than(self.frames, "at", self.max_age))
        work.add_done_callback(_consume_outcome)
        await asyncio.shield(work)


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("live frames purge failed", error=repr(task.exception()))
