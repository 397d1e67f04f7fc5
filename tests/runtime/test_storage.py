"""The storage kernel on the real server: each claim has exactly one winner under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from testkit import eventually

from switchboard.app.localstack import Backends
from switchboard.runtime.jobs import PeriodicJob
from switchboard.runtime.mongo import Claim, ProcessedLedger
from switchboard.runtime.service import Runtime
from switchboard.runtime.storage import (
    Lease,
    NotFound,
    Outbox,
    Sequence,
    Slots,
    TimerQueue,
    TooMuchContention,
    VersionedCollection,
    WithOutbox,
    delete_older_than,
)

Document = dict[str, Any]


@pytest.fixture
async def db(real_servers: Backends) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        real_servers.mongodb_url, tz_aware=True, maxPoolSize=100
    )
    name = f"t{uuid.uuid4().hex[:10]}_storage"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


class Queue(WithOutbox):
    waiting: list[str] = []


def add(item: str) -> Callable[[Queue], tuple[Queue, str]]:
    def change(queue: Queue) -> tuple[Queue, str]:
        message = {"item": item, "position": len(queue.waiting) + 1}
        new = queue.model_copy(
            update={
                "waiting": [*queue.waiting, item],
                "outbox": [*queue.outbox, message],
                "unpublished": True,
                "changed_at": datetime.now(UTC),
            }
        )
        return new, item

    return change


async def test_concurrent_changes_of_one_aggregate_are_each_applied_once(
    db: AsyncDatabase[Document],
) -> None:
    queues = VersionedCollection(db["queues"], Queue)
    assert await queues.insert(Queue(id="billing", version=1))
    assert not await queues.insert(Queue(id="billing", version=1)), "a second insert is refused"

    done = await asyncio.gather(*(queues.update("billing", add(f"C-{n}")) for n in range(20)))

    stored = await queues.get("billing")
    assert stored is not None
    assert sorted(stored.waiting) == sorted(f"C-{n}" for n in range(20))
    assert stored.version == 21
    assert sorted(d.aggregate.version for d in done) == list(range(2, 22)), "one write each"
    assert [m["position"] for m in stored.outbox] == list(range(1, 21))


async def test_a_change_that_writes_nothing_and_a_missing_aggregate(
    db: AsyncDatabase[Document],
) -> None:
    queues = VersionedCollection(db["queues"], Queue)
    await queues.insert(Queue(id="sales", version=1))

    same = await queues.update("sales", lambda q: (None, "nothing to do"))

    assert (same.written, same.result, same.aggregate.version) == (False, "nothing to do", 1)
    with pytest.raises(NotFound):
        await queues.update("nobody", add("C-1"))


async def test_a_replace_decided_on_an_old_version_is_refused_and_changes_nothing(
    db: AsyncDatabase[Document],
) -> None:
    queues = VersionedCollection(db["queues"], Queue)
    await queues.insert(Queue(id="support", version=1))
    read = await queues.get("support")
    assert read is not None
    first = await queues.replace(read.model_copy(update={"waiting": ["C-1"]}))
    second = await queues.replace(read.model_copy(update={"waiting": ["C-2"]}))

    assert first is not None and first.version == 2
    assert second is None, "decided on version 1, which is gone"
    stored = await queues.get("support")
    assert stored is not None and (stored.waiting, stored.version) == (["C-1"], 2)


async def test_a_document_stored_without_a_version_is_changed_as_version_zero(
    db: AsyncDatabase[Document],
) -> None:
    """Documents written before they were versioned (no ``version``) change like any other."""
    await db["queues"].insert_one({"_id": "old", "waiting": ["C-0"]})
    queues = VersionedCollection(db["queues"], Queue, attempts=3)

    done = await asyncio.gather(*(queues.update("old", add(f"C-{n}")) for n in (1, 2)))

    stored = await queues.get("old")
    assert stored is not None and sorted(stored.waiting) == ["C-0", "C-1", "C-2"]
    assert sorted(d.aggregate.version for d in done) == [1, 2]


async def test_the_retries_are_bounded(db: AsyncDatabase[Document]) -> None:
    conflicts: list[int] = []
    await VersionedCollection(db["queues"], Queue).insert(Queue(id="sales", version=1))

    class Stale(VersionedCollection[Queue]):  # someone else writes after every read
        async def get(self, key: str) -> Queue | None:
            found = await super().get(key)
            await db["queues"].update_one({"_id": key}, {"$inc": {"version": 1}})
            return found

    stale = Stale(db["queues"], Queue, attempts=3, on_conflict=lambda: conflicts.append(1))
    with pytest.raises(TooMuchContention):
        await stale.update("sales", add("C-1"))
    assert len(conflicts) == 3


async def test_the_outbox_publishes_after_the_write_and_the_sweep_finds_what_a_crash_left(
    db: AsyncDatabase[Document],
) -> None:
    queues = VersionedCollection(db["queues"], Queue)
    published: list[Document] = []
    broker_up = False

    async def publish(message: Document) -> None:
        if not broker_up:
            raise ConnectionError("broker down")
        published.append(message)

    outbox = Outbox(queues, publish, grace=timedelta(0))
    await queues.insert(Queue(id="billing", version=1))
    first = await queues.update("billing", add("C-1"))
    with pytest.raises(ConnectionError):
        await outbox.flush("billing", first.aggregate.unsent())
    await queues.update("billing", add("C-2"))  # and this process dies before flushing

    broker_up = True
    assert await outbox.sweep() == 1

    assert [m["item"] for m in published] == ["C-1", "C-2"], "in order, each once"
    stored = await queues.get("billing")
    assert stored is not None and stored.outbox == [] and not stored.unpublished
    assert await outbox.sweep() == 0


class Reads(VersionedCollection[Queue]):
    """Counts the reads ``update`` makes."""

    reads = 0

    async def get(self, key: str) -> Queue | None:
        self.reads += 1
        return await super().get(key)


async def test_the_outbox_marks_what_it_published_in_one_write_without_reading(
    db: AsyncDatabase[Document],
) -> None:
    queues = Reads(db["queues"], Queue)
    published: list[Document] = []

    async def publish(message: Document) -> None:
        if message["item"] == "C-2" and {"item": "refused"} not in published:
            published.append({"item": "refused"})
            raise ConnectionError("broker refused C-2")
        published.append(message)

    outbox = Outbox(queues, publish, grace=timedelta(0))
    await queues.insert(Queue(id="billing", version=1))
    for item in ("C-1", "C-2", "C-3"):
        done = await queues.update("billing", add(item))
    queues.reads = 0

    with pytest.raises(ConnectionError):
        await outbox.flush("billing", done.aggregate.unsent(), written=done.aggregate)

    assert queues.reads == 0, "the aggregate just written is not read again"
    stored = await queues.get("billing")
    assert stored is not None and stored.version == done.aggregate.version + 1, "one write"
    assert [m["item"] for m in stored.outbox] == ["C-2", "C-3"] and stored.unpublished, (
        "nothing goes out ahead of a refused message: consumers rely on the order"
    )

    await queues.update("billing", add("C-4"))  # somebody writes: what this process knew is stale
    queues.reads = 0
    await outbox.flush("billing", stored.unsent(), written=stored)
    assert queues.reads == 1, "a stale aggregate is read again before the mark"
    fresh = await queues.get("billing")
    assert fresh is not None and [m["item"] for m in fresh.outbox] == ["C-4"]
    assert [m["item"] for m in published] == ["C-1", "refused", "C-2", "C-3"]


class Inserts(monitoring.CommandListener):
    """The insert and update commands a client sends (one bulk write is one command)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in {"insert", "update"}:
            self.seen.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_marks_of_concurrent_flushes_go_as_one_write_and_a_stale_one_is_read_again(
    real_servers: Backends,
) -> None:
    listener = Inserts()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        real_servers.mongodb_url, tz_aware=True, event_listeners=[listener]
    )
    name = f"t{uuid.uuid4().hex[:10]}_marks"
    queues = VersionedCollection(client[name]["queues"], Queue)
    published: list[str] = []

    async def publish(message: Document) -> None:
        published.append(message["item"])

    outbox = Outbox(queues, publish, grace=timedelta(0))
    try:
        written = {}
        for n in range(12):
            await queues.insert(Queue(id=f"q{n}", version=1))
            written[f"q{n}"] = (await queues.update(f"q{n}", add(f"C-{n}"))).aggregate
        await queues.update("q5", add("C-5b"))  # somebody writes: what q5's writer knew is stale
        listener.seen.clear()

        await asyncio.gather(
            *(outbox.flush(key, known.unsent(), written=known) for key, known in written.items())
        )

        assert listener.seen.count("update") <= 4, listener.seen
        for key in written:
            stored = await queues.get(key)
            assert stored is not None
            left = [m["item"] for m in stored.outbox]
            assert left == (["C-5b"] if key == "q5" else []), (key, left)
            assert stored.unpublished == (key == "q5")
        assert sorted(published) == sorted(f"C-{n}" for n in range(12))
    finally:
        await client.drop_database(name)
        await client.close()


async def test_claims_and_completions_arriving_together_go_as_one_write_each_answered_alone(
    real_servers: Backends,
) -> None:
    listener = Inserts()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        real_servers.mongodb_url, tz_aware=True, event_listeners=[listener]
    )
    name = f"t{uuid.uuid4().hex[:10]}_ledger"
    ledger = ProcessedLedger(client[name], keep=timedelta(days=1), lease=timedelta(minutes=1))
    try:
        await ledger.claim("scans", "old")
        await ledger.complete("scans", "old", {"ok": True})
        listener.seen.clear()
        ids = ["old", *(f"m{n}" for n in range(16))]

        claims = await asyncio.gather(*(ledger.claim("scans", i) for i in ids))

        assert [c for c, _ in claims] == [Claim.DONE] + [Claim.NEW] * 16
        assert claims[0][1] == {"ok": True}, "the done one answers what it answered before"
        assert 1 <= listener.seen.count("insert") <= 3, listener.seen
        listener.seen.clear()
        await asyncio.gather(*(ledger.complete("scans", i, None) for i in ids[1:]))
        assert 1 <= listener.seen.count("update") <= 3, listener.seen
        again = await asyncio.gather(*(ledger.claim("scans", i) for i in ids))
        assert {c for c, _ in again} == {Claim.DONE}
    finally:
        await client.drop_database(name)
        await client.close()


async def test_a_sequence_gives_each_number_once(db: AsyncDatabase[Document]) -> None:
    numbers = Sequence(db["sequences"], "case-numbers")

    got = await asyncio.gather(*(numbers.next() for _ in range(60)))

    assert sorted(got) == list(range(1, 61))


async def test_a_lease_has_one_holder_until_it_runs_out_or_is_given_back(
    db: AsyncDatabase[Document],
) -> None:
    leases = [Lease(db["leases"], "imap:support", f"replica-{n}") for n in range(8)]

    taken = await asyncio.gather(*(lease.acquire(timedelta(minutes=1)) for lease in leases))

    winners = [n for n, epoch in enumerate(taken) if epoch is not None]
    assert len(winners) == 1
    holder = leases[winners[0]]
    other = leases[(winners[0] + 1) % len(leases)]
    assert await holder.acquire(timedelta(minutes=1)) == 1, "the holder renews"
    assert await other.acquire(timedelta(minutes=1)) is None
    assert await holder.acquire(timedelta(seconds=-1)) == 1  # renewed into the past: expired
    assert await other.acquire(timedelta(minutes=1)) == 2, "an expired lease is taken over"
    assert await holder.acquire(timedelta(minutes=1)) is None, "the old holder lost it"
    await other.release()
    assert await holder.acquire(timedelta(minutes=1)) == 1, "given back: taken afresh"


async def test_slots_never_go_over_the_capacity_nor_under_zero(
    db: AsyncDatabase[Document],
) -> None:
    quota = Slots(db["slots"], "campaign:spring")

    taken = await asyncio.gather(*(quota.take(capacity=5) for _ in range(30)))

    assert taken.count(True) == 5
    assert await quota.used() == 5
    given = await asyncio.gather(*(quota.give_back() for _ in range(8)))
    assert given.count(True) == 5
    assert await quota.used() == 0
    assert await quota.take(capacity=5, count=5)
    assert not await quota.take(capacity=5)


async def test_each_due_timer_is_claimed_by_one_replica(db: AsyncDatabase[Document]) -> None:
    timers = TimerQueue(db["timers"])
    await timers.ensure_indexes()
    now = datetime.now(UTC)
    for n in range(10):
        await timers.set(f"ann:{n}", now - timedelta(seconds=1), {"agent_id": "ann", "n": n})
    await timers.set("bob:later", now + timedelta(hours=1), {"agent_id": "bob"})
    await timers.set("bob:cleared", now, {"agent_id": "bob"})
    await timers.set("bob:cleared", None, {})

    async def replica() -> list[str]:
        mine = []
        while (timer := await timers.claim_due(now, timedelta(minutes=1))) is not None:
            mine.append(timer.key)
        return mine

    claimed = [key for keys in await asyncio.gather(*(replica() for _ in range(5))) for key in keys]

    assert sorted(claimed) == sorted(f"ann:{n}" for n in range(10)), "each once, none early"
    later = now + timedelta(minutes=2)  # the lease ran out: the timer is due again
    again = await timers.claim_due(later, timedelta(minutes=1), where={"agent_id": "ann"})
    assert again is not None and again.data["agent_id"] == "ann"
    assert sorted([t.key async for t in timers.all()])[-1] == "bob:later"


async def test_a_timer_set_of_an_older_version_changes_nothing(
    db: AsyncDatabase[Document],
) -> None:
    """Writers of one aggregate that finish out of order leave the newest version's timer."""
    timers = TimerQueue(db["timers"])
    now = datetime.now(UTC)
    newer, older = now + timedelta(minutes=5), now + timedelta(hours=5)
    await timers.set("case-1", newer, {}, version=3)
    await timers.set("case-1", older, {}, version=2)  # the slow writer of version 2
    await timers.clear("case-1", version=2)
    [timer] = [t async for t in timers.all()]
    assert timer.due.replace(microsecond=0) == newer.replace(microsecond=0)
    assert timer.data["version"] == 3

    await timers.set("case-1", None, {}, version=4)  # version 4 has no timer
    assert [t async for t in timers.all()] == []


async def test_old_documents_expire_through_a_periodic_delete(
    db: AsyncDatabase[Document],
) -> None:
    """No TTL index on FerretDB 1.24: expiry is a delete run as a periodic job."""
    now = datetime.now(UTC)
    await db["ledger"].insert_many(
        [{"_id": "old", "at": now - timedelta(days=8)}, {"_id": "new", "at": now}]
    )

    assert await delete_older_than(db["ledger"], "at", timedelta(days=7)) == 1

    assert [d["_id"] async for d in db["ledger"].find({})] == ["new"]


async def test_periodic_jobs_run_while_the_service_is_up_and_are_measured(
    make_settings: Callable[..., Any],
) -> None:
    runtime = Runtime("jobs_probe", make_settings())
    runs: list[float] = []

    async def tick() -> None:
        runs.append(datetime.now(UTC).timestamp())

    async def broken() -> None:
        raise RuntimeError("a failed run is logged and measured, the job carries on")

    runtime.jobs([PeriodicJob("tick", 0.05, tick), PeriodicJob("broken", 0.05, broken)])
    async with runtime.app:
        await eventually(lambda: len(runs) >= 3, seconds=10)
        await eventually(
            lambda: REGISTRY.get_sample_value(
                "switchboard_job_last_run_timestamp_seconds",
                {"task": "broken", "outcome": "failed"},
            ),
            seconds=10,
        )
    last = REGISTRY.get_sample_value(
        "switchboard_job_last_run_timestamp_seconds",
        {"task": "tick", "outcome": "ok"},
    )
    assert last is not None and last >= runs[0]
    duration = REGISTRY.get_sample_value("switchboard_job_duration_seconds", {"task": "tick"})
    assert duration is not None and duration >= 0


async def test_slots_of_a_passing_window_are_dropped_by_age(db: AsyncDatabase[Document]) -> None:
    old, current = Slots(db["windows"], "ann|100"), Slots(db["windows"], "ann|101")
    assert await old.take(capacity=2) and await current.take(capacity=2)
    await db["windows"].update_one(
        {"_id": "ann|100"}, {"$set": {"created_at": datetime.now(UTC) - timedelta(days=3)}}
    )

    assert await delete_older_than(db["windows"], "created_at", timedelta(days=2)) == 1
    assert await old.used() == 0 and await current.used() == 1
    assert await old.take(capacity=2), "a dropped window starts over"
