"""Reading and writing the case index's documents (``postings`` shapes), every read by ``_id``.

Writes are planned by ``index_writes`` and sent here as one ordered ``update`` command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from switchboard.threading import postings as p
from switchboard.threading.postings import Document

DUPLICATE_KEY = 11000


class Postings:
    def __init__(self, db: AsyncDatabase[Document], collection: str) -> None:
        self.db = db
        self.name = collection
        self.docs = db[collection]

    async def write(self, statements: list[Document]) -> bool:
        """Send the statements as one ordered ``update`` command. False when a guarded write
        found its document changed since it was read (the command stopped there: read again
        and repeat)."""
        if not statements:
            return True
        # The command itself, not ``bulk_write``: the same one command on every server, and a
        # reply with a write error is read as sent.
        reply = await self.db.command({"update": self.name, "updates": statements, "ordered": True})
        errors = reply.get("writeErrors") or []
        if not errors:
            return True
        if all(e.get("code") == DUPLICATE_KEY for e in errors):
            return False
        raise OperationFailure(f"case index write failed: {errors}", errors[0].get("code"))

    async def documents(self, keys: Iterable[str]) -> dict[str, Document | None]:
        keys = list(dict.fromkeys(keys))
        found = await asyncio.gather(*(self.docs.find_one({"_id": k}) for k in keys))
        return dict(zip(keys, found, strict=True))

    # -- reading for searches -----------------------------------------------------------------

    async def parts_of(self, terms: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        """Each term's parts as (service, bucket); a term no case has has none."""
        terms = list(terms)
        found = await asyncio.gather(*(self.docs.find_one({"_id": t}, {"parts": 1}) for t in terms))
        return {
            term: [p.split_part(name) for name in (head or {}).get("parts") or []]
            for term, head in zip(terms, found, strict=True)
        }

    async def numbers(self, keys: Iterable[str]) -> dict[str, list[int]]:
        keys = list(keys)
        found = await asyncio.gather(*(self.docs.find_one({"_id": k}) for k in keys))
        return {k: p.unpack((doc or {}).get("n")) for k, doc in zip(keys, found, strict=True)}

    async def activities(self, buckets: Iterable[int]) -> dict[int, bytes]:
        buckets = list(buckets)
        found = await asyncio.gather(
            *(self.docs.find_one({"_id": p.activity_key(b)}) for b in buckets)
        )
        return {
            b: bytes((doc or {}).get("n") or b"") for b, doc in zip(buckets, found, strict=True)
        }

    async def bounds(self) -> dict[int, tuple[int, int]]:
        """Each bucket's lowest and highest last activity."""
        doc = await self.docs.find_one({"_id": p.ACTIVITY}) or {}
        low, high = doc.get("lo") or {}, doc.get("hi") or {}
        return {int(b): (int(low.get(b, 0)), int(at)) for b, at in high.items()}

    async def agent(self, agent_id: str) -> Document:
        """The agent's document (their marks, and the rows of their first My Cases pages)."""
        return await self.docs.find_one({"_id": p.agent_key(agent_id)}) or {}

    async def marks(self, agent_id: str) -> dict[int, tuple[int, bool]]:
        doc = await self.docs.find_one({"_id": p.agent_key(agent_id)}, {"n": 1}) or {}
        return p.unpack_marks(doc.get("n"))
