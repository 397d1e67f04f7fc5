"""The MongoDB server gives single-document atomicity: what every claim in Switchboard relies on.

MongoDB does this by itself; the local FerretDB does it because ``deploy/local/ferretdb.sh``
builds it with ``ferretdb-patches/02-write-lock.patch``. Stock FerretDB 1.24 fails these tests
(several winners of one conditional update, lost increments), which is why it is not supported.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from switchboard.app.localstack import Backends

TRIALS = 20
RACERS = 4


@pytest.fixture
async def collection(real_servers: Backends) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        real_servers.mongodb_url, maxPoolSize=120
    )
    name = f"t{uuid.uuid4().hex[:10]}_atomic"
    try:
        yield client[name]["claims"]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_concurrent_conditional_updates_of_one_document_have_exactly_one_winner(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    winners_per_trial = []
    for trial in range(TRIALS):
        await collection.insert_one({"_id": trial, "version": 0, "holder": None})

        async def claim(racer: int, trial: int = trial) -> bool:
            won = await collection.find_one_and_update(
                {"_id": trial, "version": 0},
                {"$set": {"version": 1, "holder": racer}},
                return_document=ReturnDocument.AFTER,
            )
            return won is not None

        async def claim_with_update_one(racer: int, trial: int = trial) -> bool:
            done = await collection.update_one(
                {"_id": trial, "version": 0}, {"$set": {"version": 1, "holder": racer}}
            )
            return done.modified_count == 1

        racers = [claim(r) for r in range(RACERS)] + [
            claim_with_update_one(RACERS + r) for r in range(RACERS)
        ]
        results = await asyncio.gather(*racers)
        winners_per_trial.append(sum(results))
        stored = await collection.find_one({"_id": trial})
        assert stored is not None and stored["version"] == 1
        assert results[stored["holder"]], "the stored holder is the one told it won"

    assert winners_per_trial == [1] * TRIALS


async def test_a_hundred_concurrent_increments_lose_nothing(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    await collection.insert_one({"_id": "case-numbers", "next": 0})

    await asyncio.gather(
        *(collection.update_one({"_id": "case-numbers"}, {"$inc": {"next": 1}}) for _ in range(50)),
        *(
            collection.find_one_and_update({"_id": "case-numbers"}, {"$inc": {"next": 1}})
            for _ in range(50)
        ),
    )

    stored = await collection.find_one({"_id": "case-numbers"})
    assert stored is not None and stored["next"] == 100


async def test_a_filtered_delete_racing_an_update_deletes_only_what_still_matches(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    outcomes = []
    for trial in range(TRIALS):
        await collection.insert_one({"_id": trial, "state": "waiting"})
        taken, withdrawn = await asyncio.gather(
            collection.update_one({"_id": trial, "state": "waiting"}, {"$set": {"state": "taken"}}),
            collection.delete_one({"_id": trial, "state": "waiting"}),
        )
        stored = await collection.find_one({"_id": trial})
        if withdrawn.deleted_count:
            assert taken.modified_count == 0, "an update of a deleted document counted"
            assert stored is None
        else:
            assert taken.modified_count == 1
            assert stored == {"_id": trial, "state": "taken"}, "deleted what no longer matched"
        outcomes.append(withdrawn.deleted_count + taken.modified_count)

    assert outcomes == [1] * TRIALS
