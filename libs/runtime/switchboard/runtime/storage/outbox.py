"""Messages written with the aggregate change that causes them, published after it.

The aggregate carries its own outbox (:class:`WithOutbox`): the version-guarded write that
changes it also stores the messages it must announce, so a change is never stored without
its messages nor announced without being stored. After the write the messages are published
in order and then marked published together (one more guarded write, without a read when the
writer still knows the aggregate; the marks of concurrent flushes go as one bulk write). A
process that dies in between leaves ``unpublished`` set: :meth:`Outbox.sweep`, run
periodically, publishes what any replica left behind. Consumers drop the repeat a crash may
cause by message id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Self, TypeVar

from pydantic import Field
from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from switchboard.runtime.storage.versioned import (
    Aggregate,
    Key,
    NotFound,
    Versioned,
    VersionedCollection,
)

Document = dict[str, Any]


class HoldsOutbox(Versioned):
    """Messages waiting to be published (as JSON documents), kept in a versioned aggregate of
    any key type (a subclass declares its ``id``); :class:`WithOutbox` is the string-keyed one.
    """

    outbox: list[Document] = Field(default_factory=list)
    unpublished: bool = False
    changed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def unsent(self) -> list[Document]:
        """The messages not yet published, in the order they must go out."""
        return list(self.outbox)

    def published(self, message: Document) -> Self | None:
        """The aggregate once ``message`` is published (None: it was marked already)."""
        if message not in self.outbox:
            return None
        rest = [m for m in self.outbox if m != message]
        return self.model_copy(update={"outbox": rest, "unpublished": bool(rest)})

    def key(self) -> Key:
        """The aggregate's ``_id``."""
        key: Key = self.model_dump(by_alias=True, include={"id"})["_id"]
        return key


class WithOutbox(Aggregate, HoldsOutbox):
    """An aggregate keyed by a string, with messages waiting to be published."""


W = TypeVar("W", bound=HoldsOutbox)
Publish = Callable[[Document], Awaitable[None]]


class Outbox(Generic[W]):
    """Publishes what aggregates of one collection hold in their outbox."""

    def __init__(
        self,
        records: VersionedCollection[W],
        publish: Publish,
        *,
        grace: timedelta = timedelta(seconds=3),
    ) -> None:
        self.records = records
        self.publish = publish
        self.grace = grace
        self._marks = _MarkGroup(records.collection)

    async def ensure_indexes(self) -> None:
        await self.records.collection.create_index("unpublished")

    async def flush(self, key: Key, messages: list[Document], *, written: W | None = None) -> None:
        """Publish ``messages`` of aggregate ``key`` in order, then mark them published in one
        write.

        Each confirm is awaited before the next publish: consumers (routing's agent view, the
        desktops' live stream) rely on an aggregate's messages arriving in the order they were
        decided. ``written`` is the aggregate as this process just stored or read it: the mark
        is then one guarded write without a read. A failed publish raises after the ones before
        it are marked, and leaves it and the rest in the outbox for a retry or the sweep.
        """
        sent: list[Document] = []
        failure: BaseException | None = None
        for message in messages:
            try:
                await self.publish(message)
            except Exception as exc:
                failure = exc
                break
            sent.append(message)

        def mark(aggregate: W) -> tuple[W | None, None]:
            marked: W | None = None
            for message in sent:
                marked = (marked or aggregate).published(message) or marked
            return marked, None

        if sent:
            with contextlib.suppress(NotFound):
                if written is None or not await self._marks.mark(written, mark):
                    await self.records.update(key, mark)  # decided on a fresh read
        if failure is not None:
            raise failure

    async def left(self, limit: int = 200) -> list[W]:
        """Aggregates changed more than ``grace`` ago that still hold unpublished messages."""
        older_than = datetime.now(UTC) - self.grace
        query = {"unpublished": True, "changed_at": {"$lt": older_than}}
        cursor = self.records.collection.find(query, limit=limit)
        return [self.records.model.model_validate(doc) async for doc in cursor]

    async def sweep(self, limit: int = 200) -> int:
        """Publish what :meth:`left` finds (a crash, a broker outage); how many aggregates."""
        left = await self.left(limit)
        for aggregate in left:
            await self.flush(aggregate.key(), aggregate.unsent())
        return len(left)


class _MarkGroup:
    """The marks of concurrent flushes, each decided on the aggregate its writer knows, sent
    together as one unordered bulk of guarded replaces (a group commit: while one bulk is on
    its way the next gathers; no timer). A bulk tells only how many guards matched: when that
    is fewer than it sent, every mark of it answers False and is decided again on a fresh read
    (one that went through finds nothing left to mark)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._waiting: list[tuple[ReplaceOne[Document], asyncio.Future[bool]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def mark(self, known: W, mark: Callable[[W], tuple[W | None, None]]) -> bool:
        """True when ``known`` is marked as stored (or had nothing to mark)."""
        marked, _ = mark(known)
        if marked is None:
            return True
        stored = marked.model_copy(update={"version": known.version + 1})
        guard = {"_id": stored.document()["_id"], "version": known.version}
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((ReplaceOne(guard, stored.document()), done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="outbox marks")
        return await done

    async def _send_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:500], self._waiting[500:]
            try:
                result = await self._collection.bulk_write([op for op, _ in batch], ordered=False)
                matched = result.matched_count == len(batch)
            except PyMongoError:  # busy, or a write refused: each is decided again
                matched = False
            except BaseException:
                for _, done in batch:
                    if not done.done():
                        done.cancel()
                raise
            for _, done in batch:
                if not done.done():
                    done.set_result(matched)
