"""Due timers kept in MongoDB, each claimed by one replica at a time.

A timer row is ``{_id: key, due, lease, **data}``. A replica claims a due timer with one
conditional write that moves its lease forward; the others no longer match it until the lease
runs out, so a replica that died with a timer in hand only delays it by the lease. The owner
of the timer clears or moves it when it has acted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from switchboard.runtime.mongo import retry_when_busy

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Timer:
    key: str
    due: datetime
    data: Document


def _timer(row: Document) -> Timer:
    data = {k: v for k, v in row.items() if k not in ("_id", "due", "lease")}
    return Timer(str(row["_id"]), row["due"], data)


class TimerQueue:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("due")

    async def set(
        self,
        key: str,
        due: datetime | None,
        data: Mapping[str, Any],
        *,
        version: int | None = None,
    ) -> None:
        """Arm (or move) the timer ``key``; ``due=None`` clears it.

        ``version``: the version of what the timer belongs to, when its writers may finish out
        of order: a set (or clear) of an older version than the one stored changes nothing.
        """
        if due is None:
            await self.clear(key, version=version)
            return
        row = {**data, "due": due, "lease": EPOCH}
        query: Document = {"_id": key}
        if version is not None:
            row["version"] = version
            query["version"] = {"$lte": version}
        with contextlib.suppress(DuplicateKeyError):  # the timer of a newer version is there
            await retry_when_busy(
                lambda: self.collection.update_one(query, {"$set": row}, upsert=True)
            )

    async def clear(self, key: str, *, version: int | None = None) -> None:
        """Disarm the timer ``key`` (of ``version`` or older, see :meth:`set`)."""
        query: Document = {"_id": key}
        if version is not None:
            query["version"] = {"$lte": version}
        await retry_when_busy(lambda: self.collection.delete_one(query))

    async def claim_due(
        self, now: datetime, lease: timedelta, where: Mapping[str, Any] | None = None
    ) -> Timer | None:
        """One due timer (matching ``where``) for this replica alone, for ``lease``; or None."""
        row = await retry_when_busy(
            lambda: self.collection.find_one_and_update(
                {**(where or {}), "due": {"$lte": now}, "lease": {"$lte": now}},
                {"$set": {"lease": now + lease}},
                return_document=ReturnDocument.AFTER,
            )
        )
        return None if row is None else _timer(row)

    async def all(self) -> AsyncIterator[Timer]:
        async for row in self.collection.find({}):
            yield _timer(row)
