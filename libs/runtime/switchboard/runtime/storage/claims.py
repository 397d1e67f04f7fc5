"""Claims across replicas, each one conditional write (``$inc`` for counters).

- :class:`Sequence`: numbers handed out once each (case numbers).
- :class:`Lease`: one holder of a name at a time, until a deadline (IMAP, singletons).
- :class:`Slots`: a counter kept under a capacity (quotas, backlog).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from switchboard.runtime.mongo import retry_when_busy

Document = dict[str, Any]


class Sequence:
    """Consecutive numbers from 1, each given to exactly one caller."""

    def __init__(self, collection: AsyncCollection[Document], name: str) -> None:
        self.collection = collection
        self.name = name

    async def next(self) -> int:
        for _ in range(2):  # two first upserts at once: the loser's insert is refused, once
            try:
                doc = await retry_when_busy(
                    lambda: self.collection.find_one_and_update(
                        {"_id": self.name},
                        {"$inc": {"value": 1}},
                        upsert=True,
                        return_document=ReturnDocument.AFTER,
                    )
                )
            except DuplicateKeyError:
                continue
            assert doc is not None  # an upsert returning the document after always finds it
            return int(doc["value"])
        raise RuntimeError(f"sequence {self.name!r}: could not be created")


class Lease:
    """A named lease: taken when free or expired, renewed by its holder, given back.

    Each change of holder raises the lease's ``epoch`` (a fencing token): a holder that
    paused can tell whether the lease it holds is still the one it took.
    """

    def __init__(self, collection: AsyncCollection[Document], name: str, holder: str) -> None:
        self.collection = collection
        self.name = name
        self.holder = holder

    async def acquire(self, hold: timedelta) -> int | None:
        """Take or renew the lease for ``hold``; its epoch, or None when another holds it."""
        now = datetime.now(UTC)
        renewed = await retry_when_busy(
            lambda: self.collection.find_one_and_update(
                {"_id": self.name, "holder": self.holder, "until": {"$gt": now}},
                {"$set": {"until": now + hold}},
                return_document=ReturnDocument.AFTER,
            )
        )
        if renewed is not None:
            return int(renewed["epoch"])
        try:
            taken = await retry_when_busy(
                lambda: self.collection.find_one_and_update(
                    {"_id": self.name, "until": {"$lte": now}},
                    {"$set": {"holder": self.holder, "until": now + hold}, "$inc": {"epoch": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            )
        except DuplicateKeyError:  # held by another: the upsert's insert met the live lease
            return None
        assert taken is not None  # an upsert returning the document after always finds it
        return int(taken["epoch"])

    async def release(self) -> None:
        await retry_when_busy(
            lambda: self.collection.delete_one({"_id": self.name, "holder": self.holder})
        )


class Slots:
    """A counter that never goes over a capacity nor under zero (quotas, backlog places).

    The counter's document remembers when it was made (``created_at``), so counters of
    passing windows (``"<who>|<window>"``) can be dropped with :func:`delete_older_than`.
    """

    def __init__(self, collection: AsyncCollection[Document], name: str) -> None:
        self.collection = collection
        self.name = name

    async def take(self, capacity: int, count: int = 1) -> bool:
        """Take ``count`` places if that stays within ``capacity``."""
        if count > capacity:
            return False
        try:
            done = await retry_when_busy(
                lambda: self.collection.update_one(
                    {"_id": self.name, "used": {"$lte": capacity - count}},
                    {"$inc": {"used": count}, "$setOnInsert": {"created_at": datetime.now(UTC)}},
                    upsert=True,
                )
            )
        except DuplicateKeyError:  # the counter exists and is full
            return False
        return done.modified_count == 1 or done.upserted_id is not None

    async def give_back(self, count: int = 1) -> bool:
        done = await retry_when_busy(
            lambda: self.collection.update_one(
                {"_id": self.name, "used": {"$gte": count}}, {"$inc": {"used": -count}}
            )
        )
        return done.modified_count == 1

    async def used(self) -> int:
        doc = await self.collection.find_one({"_id": self.name})
        return 0 if doc is None else int(doc["used"])
