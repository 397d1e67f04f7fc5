"""One MongoDB factory (PyMongo's native async API) and the idempotency ledger.

Only portable operations are used here, so the same code runs on MongoDB and on FerretDB (which
lacks TTL and partial indexes): old ledger entries are purged by a periodic delete instead of a
TTL index.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, DeleteOne, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from switchboard.runtime.settings import ServiceSettings

Document = dict[str, Any]
T = TypeVar("T")
BUSY_ATTEMPTS = 8
Write = InsertOne[Document] | UpdateOne | DeleteOne


def make_mongo_client(settings: ServiceSettings, *, app_name: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        tz_aware=True,
        appname=app_name,
        serverSelectionTimeoutMS=5000,
    )


async def retry_when_busy(operation: Callable[[], Awaitable[T]]) -> T:
    """Repeat a write the server refused as momentarily busy (FerretDB/SQLite: SQLITE_BUSY).

    Left to the message retry, such a refusal costs the message its retry delay (seconds);
    repeated here after a few milliseconds it costs almost nothing. Other errors pass through.
    """
    for attempt in range(BUSY_ATTEMPTS):
        try:
            return await operation()
        except OperationFailure as exc:
            if not _busy(str(exc)) or attempt == BUSY_ATTEMPTS - 1:
                raise
            await _pause(attempt)
    raise AssertionError("unreachable")


def _busy(text: str) -> bool:
    return "SQLITE_BUSY" in text


async def _pause(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))


class GroupedWrites:
    """Single-document writes of many concurrent handlers to one collection, sent together.

    While one bulk write is on its way, the writes that come meanwhile wait and then go as the
    next one (a group commit: no timer, so an idle server sees each write at once). One bulk
    write of a dozen costs the server about what one write costs, FerretDB's single writer
    most of all. Each caller gets its own write's outcome: :class:`DuplicateKeyError` for an
    insert of a key that exists, the server's error otherwise; a write the server found busy
    is sent again, like :func:`retry_when_busy` does.
    """

    def __init__(self, collection: AsyncCollection[Document], *, most: int = 500) -> None:
        self._collection = collection
        self._most = most
        self._waiting: list[tuple[Write, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def write(self, operation: Write) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((operation, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="grouped writes")
        await done

    async def _send_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                for _, done in batch:
                    done.cancel()
                raise
            except Exception as exc:  # not left waiting, whatever happened
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)

    async def _send(self, batch: list[tuple[Write, asyncio.Future[None]]]) -> None:
        for attempt in range(BUSY_ATTEMPTS):
            last = attempt == BUSY_ATTEMPTS - 1
            errors: dict[int, Document] = {}
            try:
                await self._collection.bulk_write([op for op, _ in batch], ordered=False)
            except BulkWriteError as exc:
                errors = {int(e["index"]): e for e in exc.details.get("writeErrors", [])}
            except OperationFailure as exc:
                if not _busy(str(exc)) or last:
                    raise
                await _pause(attempt)
                continue
            again: list[tuple[Write, asyncio.Future[None]]] = []
            for index, (operation, done) in enumerate(batch):
                error = errors.get(index)
                if done.done():  # its caller was cancelled
                    continue
                if error is None:
                    done.set_result(None)
                elif _busy(str(error.get("errmsg"))) and not last:
                    again.append((operation, done))
                elif error.get("code") == 11000:
                    done.set_exception(DuplicateKeyError(str(error.get("errmsg")), 11000, error))
                else:
                    done.set_exception(
                        OperationFailure(str(error.get("errmsg")), error.get("code"), error)
                    )
            if not again:
                return
            batch = again
            await _pause(attempt)


class Claim(Enum):
    NEW = "new"
    DONE = "done"
    BUSY = "busy"


class ProcessedLedger:
    """Makes a consumer handle each message once, even when copies arrive at the same time.

    Before handling, a consumer *claims* the message id (an atomic insert with a lease); after its
    durable writes it marks the claim done, with the answer it gave; then the broker ack follows.
    A copy that arrives while the first is in hand finds the claim busy and waits; a copy that
    arrives later finds it done and is acked without a second effect. The holder renews the lease
    while it works (:meth:`holding`), so the lease can be short: a claim whose holder died expires
    within one lease and is taken over. A claim this process left behind (its release failed
    because the database was gone) is taken back at once by the next copy that reaches it.
    Handlers still write idempotently (natural keys, upserts): a crash after the writes but
    before :meth:`complete` runs the handler again.
    """

    def __init__(
        self, database: AsyncDatabase[Document], *, keep: timedelta, lease: timedelta
    ) -> None:
        self._entries = database["processed_messages"]
        self._writes = GroupedWrites(self._entries)
        """Claims, completions and releases of concurrent handlers go as one bulk write."""
        self._keep = keep
        self._lease = lease
        self._owner = uuid.uuid4().hex
        """This process: a claim it holds names it, so the process knows its own leftovers."""
        self._held: set[str] = set()
        """Claims a handler of this process is working on right now."""

    async def ensure_indexes(self) -> None:
        await self._entries.create_index("at")

    async def claim(self, consumer: str, message_id: str) -> tuple[Claim, Document | None]:
        key = f"{consumer}/{message_id}"
        if key in self._held:
            return Claim.BUSY, None  # a handler of this process has it, or is claiming it
        self._held.add(key)  # before any await: a copy arriving meanwhile is seen here
        found: tuple[Claim, Document | None] = (Claim.BUSY, None)
        try:
            found = await self._claim(key)
        finally:
            if found[0] is not Claim.NEW:
                self._held.discard(key)
        return found

    async def _claim(self, key: str) -> tuple[Claim, Document | None]:
        now = datetime.now(UTC)
        try:
            await self._writes.write(
                InsertOne(
                    {
                        "_id": key,
                        "state": "handling",
                        "until": now + self._lease,
                        "at": now,
                        "owner": self._owner,
                    }
                )
            )
            return Claim.NEW, None
        except DuplicateKeyError:
            pass
        entry = await self._entries.find_one({"_id": key})
        if entry is not None and entry.get("state") == "done":
            return Claim.DONE, entry.get("answer")
        if entry is None:
            return Claim.BUSY, None
        if entry["until"] < now:
            taken = await self._take_over(entry, now)
        else:
            taken = entry.get("owner") == self._owner and await self._take_back(key, now)
        return (Claim.NEW, None) if taken else (Claim.BUSY, None)

    async def _take_back(self, key: str, now: datetime) -> bool:
        """Take back a live claim of this very process that no handler here works on (its
        release failed): no other process can hold it before its lease runs out."""
        await retry_when_busy(
            lambda: self._entries.update_one(
                {"_id": key}, {"$set": {"until": now + self._lease, "at": now}}
            )
        )
        return True

    async def _take_over(self, expired: Document, now: datetime) -> bool:
        """Take over a claim whose holder died. One winner only: a single conditional update
        that matches only the expired lease as it was read (same ``until``, same owner), so a
        second taker, or the holder renewing meanwhile, makes it match nothing."""
        result = await retry_when_busy(
            lambda: self._entries.update_one(
                {
                    "_id": expired["_id"],
                    "state": "handling",
                    "until": expired["until"],
                    "owner": expired.get("owner"),
                },
                {"$set": {"until": now + self._lease, "at": now, "owner": self._owner}},
            )
        )
        return result.modified_count == 1

    @contextlib.asynccontextmanager
    async def holding(self, consumer: str, message_id: str) -> AsyncIterator[None]:
        """Renew the claim's lease while the block runs (a heartbeat every third of a lease).

        A renewal that fails (database gone) is tried again at the next beat; the handler is
        not disturbed by it.
        """
        key = f"{consumer}/{message_id}"
        beat = asyncio.create_task(self._renew(key), name=f"lease {key}")
        try:
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _renew(self, key: str) -> None:
        period = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await self._entries.update_one(
                    {"_id": key}, {"$set": {"until": datetime.now(UTC) + self._lease}}
                )

    async def complete(self, consumer: str, message_id: str, answer: Document | None) -> None:
        try:
            await self._writes.write(
                UpdateOne(
                    {"_id": f"{consumer}/{message_id}"},
                    {"$set": {"state": "done", "answer": answer, "at": datetime.now(UTC)}},
                    upsert=True,
                )
            )
        finally:
            self._held.discard(f"{consumer}/{message_id}")

    async def release(self, consumer: str, message_id: str) -> None:
        """Give a claim back after a failure, so the retried copy can be handled. Should the
        delete fail, the claim is still known here as this process's leftover."""
        try:
            await self._writes.write(
                DeleteOne({"_id": f"{consumer}/{message_id}", "state": "handling"})
            )
        finally:
            self._held.discard(f"{consumer}/{message_id}")

    async def purge(self) -> int:
        cutoff = datetime.now(UTC) - self._keep
        result = await self._entries.delete_many({"state": "done", "at": {"$lt": cutoff}})
        return result.deleted_count
