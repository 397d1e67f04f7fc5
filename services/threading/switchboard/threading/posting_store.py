"""Reading and writing the search postings (``postings``), every access by ``_id``.

A part is changed by read, change in memory, write back guarded by its version (``v``): a
concurrent writer makes the guarded write match nothing and the change is made again on what
that writer left. A new part is named in its term's head before it is inserted, so a crash in
between leaves a head naming a part that is not there yet (read as empty), never a part no head
names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.threading import postings as p
from switchboard.threading.postings import Document
from switchboard.threading.store import Contention

ATTEMPTS = 50


class Postings:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.parts = db["case_postings"]
        self.heads = db["case_terms"]
        self.by_agent = db["agent_cases"]

    async def _rewrite(
        self, key: str, change: Callable[[bytes | None], bytes], before_insert: Callable[[], object]
    ) -> None:
        docs = self.parts if not key.startswith("agent|") else self.by_agent
        for _ in range(ATTEMPTS):
            current = await docs.find_one({"_id": key})
            if current is None:
                await _awaited(before_insert())
                try:
                    await docs.insert_one({"_id": key, "n": change(None), "v": 1})
                    return
                except DuplicateKeyError:
                    continue
            version = int(current.get("v", 0))
            data = change(current.get("n"))
            if data == bytes(current.get("n") or b""):
                return
            done = await docs.update_one(
                {"_id": key, "v": version}, {"$set": {"n": data, "v": version + 1}}
            )
            if done.matched_count == 1:
                return
            await asyncio.sleep(0)
        raise Contention(f"search posting {key} is changed by too many writers at once")

    async def set_term(self, term: str, service: str, number: int, present: bool) -> None:
        """Add the case to (or take it from) the term's part for its service and bucket."""
        bucket = p.bucket_of(number)

        async def name_part() -> None:
            await self.heads.update_one(
                {"_id": term}, {"$addToSet": {"parts": p.part_name(service, bucket)}}, upsert=True
            )

        await self._rewrite(
            p.part_key(term, service, bucket),
            lambda data: p.with_number(data, number, present),
            name_part if present else _nothing,
        )

    async def set_activity(self, number: int, at: int) -> None:
        """The case's last activity (0: no case), and its bucket's bounds widened to it."""
        bucket = p.bucket_of(number)
        await self._rewrite(
            p.activity_key(bucket), lambda data: p.with_activity(data, number, at), _nothing
        )
        if at:
            await self.parts.update_one(
                {"_id": p.ACTIVITY},
                {"$max": {f"hi.{bucket}": at}, "$min": {f"lo.{bucket}": at}},
                upsert=True,
            )

    async def set_mark(self, agent_id: str, number: int, at: int, is_open: bool) -> None:
        """The case in the agent's My Cases list, with its last activity and whether open."""

        def change(data: bytes | None) -> bytes:
            marks = p.unpack_marks(data)
            marks[number] = (at, is_open)
            return p.pack_marks(marks)

        await self._rewrite(f"agent|{agent_id}", change, _nothing)

    # -- reading ----------------------------------------------------------------------------

    async def parts_of(self, terms: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        """Each term's parts as (service, bucket); a term no case has has none."""
        terms = list(terms)
        found = await asyncio.gather(*(self.heads.find_one({"_id": t}) for t in terms))
        return {
            term: [p.split_part(name) for name in (head or {}).get("parts") or []]
            for term, head in zip(terms, found, strict=True)
        }

    async def numbers(self, keys: Iterable[str]) -> dict[str, list[int]]:
        keys = list(keys)
        found = await asyncio.gather(*(self.parts.find_one({"_id": k}) for k in keys))
        return {k: p.unpack((doc or {}).get("n")) for k, doc in zip(keys, found, strict=True)}

    async def activities(self, buckets: Iterable[int]) -> dict[int, bytes]:
        buckets = list(buckets)
        found = await asyncio.gather(
            *(self.parts.find_one({"_id": p.activity_key(b)}) for b in buckets)
        )
        return {
            b: bytes((doc or {}).get("n") or b"") for b, doc in zip(buckets, found, strict=True)
        }

    async def bounds(self) -> dict[int, tuple[int, int]]:
        """Each bucket's lowest and highest last activity."""
        doc = await self.parts.find_one({"_id": p.ACTIVITY}) or {}
        low, high = doc.get("lo") or {}, doc.get("hi") or {}
        return {int(b): (int(low.get(b, 0)), int(at)) for b, at in high.items()}

    async def marks(self, agent_id: str) -> dict[int, tuple[int, bool]]:
        doc = await self.by_agent.find_one({"_id": f"agent|{agent_id}"}) or {}
        return p.unpack_marks(doc.get("n"))


def _nothing() -> None:
    return None


async def _awaited(value: object) -> None:
    if asyncio.iscoroutine(value):
        await value
