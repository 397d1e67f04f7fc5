"""A document whose ``_id`` is a number (a case number) is found, updated and deleted by any
number equal to it, alone or with a condition on other fields.

MongoDB compares numbers by value whatever their type (int, long, double). The local FerretDB
looks numeric ``_id``\\s up by its ``_id`` index (``ferretdb-patches/04-int-id-pushdown.patch``),
where equal numbers can be stored as different texts (the double 2^60 and the long 2^60): a
lookup that missed one would lose a case. These cases are the ones where that could happen.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import Int64
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from switchboard.app.localstack import Backends

# Stored `_id` -> every query value equal to it (Python int < 2^31 is sent as an int, larger
# as a long; Int64 forces a long).
EQUAL_IDS: dict[str, tuple[Any, list[Any]]] = {
    "int": (7, [7, Int64(7), 7.0]),
    "long above 2^31": (Int64(2**40 + 3), [2**40 + 3, Int64(2**40 + 3), float(2**40 + 3)]),
    "long 2^60": (Int64(2**60), [Int64(2**60), 2.0**60]),
    "double 2^60": (2.0**60, [Int64(2**60), 2.0**60]),
    "smallest long": (Int64(-(2**63)), [Int64(-(2**63)), -(2.0**63)]),
    "integral double": (3.0, [3, Int64(3), 3.0]),
    "double": (2.5, [2.5]),
    "negative zero": (-0.0, [0, Int64(0), 0.0, -0.0]),
}
# Other cases in the same collection, equal to none of the above (2^60 + 1 is no double).
OTHER_IDS: list[Any] = [1, 8, Int64(2**60 + 1), Int64(2**40 + 4), 2.25, "7", -1]


@pytest.fixture
async def database(real_servers: Backends) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_servers.mongodb_url)
    name = f"t{uuid.uuid4().hex[:10]}_numeric_ids"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.mark.parametrize("kind", list(EQUAL_IDS))
async def test_a_case_with_a_numeric_id_is_found_updated_and_deleted_by_any_equal_number(
    database: AsyncDatabase[dict[str, Any]], kind: str
) -> None:
    stored_id, equal_ids = EQUAL_IDS[kind]
    cases = database["cases"]
    await cases.insert_many([{"_id": other, "state": "open"} for other in OTHER_IDS])

    for query_id in equal_ids:
        why = f"stored {stored_id!r}, looked up as {query_id!r}"
        await cases.insert_one({"_id": stored_id, "state": "open"})

        found = await cases.find_one({"_id": query_id})
        assert found is not None and found["_id"] == stored_id, why
        assert await cases.find_one({"_id": query_id, "state": "closed"}) is None, why

        closed = await cases.update_one(
            {"_id": query_id, "state": "open"}, {"$set": {"state": "closed"}}
        )
        assert closed.modified_count == 1, why
        reopened = await cases.find_one_and_update(
            {"_id": query_id, "state": "closed"}, {"$set": {"state": "open"}}
        )
        assert reopened is not None and reopened["_id"] == stored_id, why
        assert await cases.find_one({"_id": query_id, "state": "open"}) is not None, why

        deleted = await cases.delete_one({"_id": query_id, "state": "open"})
        assert deleted.deleted_count == 1, why
        assert await cases.find_one({"_id": query_id}) is None, why
        remaining = await cases.find({}, {"state": 1}).to_list()
        assert sorted(map(repr, (doc["_id"] for doc in remaining))) == sorted(
            map(repr, OTHER_IDS)
        ), why
        assert all(doc["state"] == "open" for doc in remaining), why
