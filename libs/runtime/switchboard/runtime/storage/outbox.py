"""Messages written with the aggregate change that causes them, published after it.

The aggregate carries its own outbox (:class:`WithOutbox`): the version-guarded write that
changes it also stores the messages it must announce, so a change is never stored without
its messages nor announced without being stored. After the write the messages are published
in order and each is then marked published (another guarded write). A process that dies in
between leaves ``unpublished`` set: :meth:`Outbox.sweep`, run periodically, publishes what
any replica left behind. Consumers drop the repeat a crash may cause by message id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Self, TypeVar

from pydantic import Field

from switchboard.runtime.storage.versioned import Aggregate, NotFound, VersionedCollection

Document = dict[str, Any]


class WithOutbox(Aggregate):
    """An aggregate with messages waiting to be published (as JSON documents)."""

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


W = TypeVar("W", bound=WithOutbox)
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

    async def ensure_indexes(self) -> None:
        await self.records.collection.create_index("unpublished")

    async def flush(self, key: str, messages: list[Document]) -> None:
        """Publish ``messages`` of aggregate ``key`` in order, marking each published.

        A failed publish raises and leaves the rest in the outbox for a retry or the sweep.
        """
        for message in messages:
            await self.publish(message)

            def mark(aggregate: W, sent: Document = message) -> tuple[W | None, None]:
                return aggregate.published(sent), None

            try:
                await self.records.update(key, mark)
            except NotFound:
                return

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
            await self.flush(aggregate.id, aggregate.unsent())
        return len(left)
