"""Typed aggregates written back with one version-guarded write.

A change loads the aggregate, applies a pure function to it and replaces the stored document
only if its ``version`` is still the one read (one ``replace_one`` filtered on ``_id`` and
``version``). Another writer in between makes the write match nothing: the change is decided
again on the fresh aggregate, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from switchboard.runtime.mongo import retry_when_busy

Document = dict[str, Any]
Key = str | int
"""An aggregate's ``_id``: a string, or a number people read (a case number)."""
MAX_ATTEMPTS = 40


class Versioned(BaseModel):
    """What :class:`VersionedCollection` needs of a stored model: the ``version`` every write is
    guarded by. A subclass declares its own ``id`` (aliased ``_id``) of type :data:`Key`."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    version: int = 0

    def document(self) -> Document:
        return self.model_dump(by_alias=True)


class Aggregate(Versioned):
    """A stored aggregate keyed by a string ``_id``."""

    id: str = Field(alias="_id")


A = TypeVar("A", bound=Versioned)
R = TypeVar("R")


class NotFound(LookupError):
    def __init__(self, key: Key) -> None:
        super().__init__(f"no document {key!r}")
        self.key = key


class TooMuchContention(Exception):
    """The version-guarded write lost too many times in a row (the message is retried)."""


@dataclass(frozen=True)
class Updated(Generic[A, R]):
    """What one change did: the aggregate as stored now, the function's result, and whether
    a write happened (the function may decide there is nothing to write)."""

    aggregate: A
    result: R
    written: bool


class VersionedCollection(Generic[A]):
    """One collection of aggregates of type ``A``, changed only through :meth:`update`."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        model: type[A],
        *,
        attempts: int = MAX_ATTEMPTS,
        on_conflict: Callable[[], None] = lambda: None,
    ) -> None:
        self.collection = collection
        self.model = model
        self.attempts = attempts
        self.on_conflict = on_conflict

    async def get(self, key: Key) -> A | None:
        doc = await self.collection.find_one({"_id": key})
        return None if doc is None else self.model.model_validate(doc)

    async def find(self, query: Mapping[str, Any]) -> AsyncIterator[A]:
        async for doc in self.collection.find(dict(query)):
            yield self.model.model_validate(doc)

    async def insert(self, aggregate: A) -> bool:
        """Store a new aggregate; False when one with its ``_id`` exists already."""
        try:
            await retry_when_busy(lambda: self.collection.insert_one(aggregate.document()))
        except DuplicateKeyError:
            return False
        return True

    async def replace(self, aggregate: A) -> A | None:
        """Write ``aggregate``, changed from the one read at its ``version``, at ``version + 1``
        if nobody wrote since: the aggregate as stored, or None when another writer came first
        (the caller decides again). :meth:`update` is this with the read and the retries; a
        handler that has read and decided already (a message retried on conflict) calls it."""
        stored = aggregate.model_copy(update={"version": aggregate.version + 1})
        document = stored.document()
        # A document stored before it had a version (none, or null) is at version 0.
        version = aggregate.version or {"$in": [0, None]}
        guard = {"_id": document["_id"], "version": version}
        done = await retry_when_busy(lambda: self.collection.replace_one(guard, document))
        return stored if done.matched_count else None

    async def update(
        self, key: Key, change: Callable[[A], tuple[A | None, R]], *, known: A | None = None
    ) -> Updated[A, R]:
        """Apply ``change`` (pure: aggregate -> (new aggregate or None, result)) and write the
        new aggregate at ``version + 1`` if nobody wrote since it was read; else decide again.

        ``known`` is the aggregate as this process last read or wrote it: the first attempt
        decides on it without reading (one write instead of a read and a write); if somebody
        wrote since, the guard matches nothing and the change is decided again on a fresh read.

        Raises :class:`NotFound` for a missing aggregate and :class:`TooMuchContention` after
        ``attempts`` lost races.
        """
        for attempt in range(self.attempts):
            current = known if attempt == 0 and known is not None else await self.get(key)
            if current is None:
                raise NotFound(key)
            new, result = change(current)
            if new is None:
                return Updated(current, result, written=False)
            stored = await self.replace(new.model_copy(update={"version": current.version}))
            if stored is not None:
                return Updated(stored, result, written=True)
            self.on_conflict()
            await backoff(attempt)
        raise TooMuchContention(f"{key}: changed by others {self.attempts} times")


async def backoff(attempt: int) -> None:
    """A short random pause before deciding again, growing with the attempts."""
    await asyncio.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
