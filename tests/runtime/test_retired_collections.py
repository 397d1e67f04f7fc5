"""The pre-kernel ticket collections are dropped when a service starts, and nothing else is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from switchboard.runtime.service import Runtime
from switchboard.runtime.storage.retired import RETIRED_COLLECTIONS, drop_retired


async def test_a_starting_service_drops_the_old_ticket_collections_and_keeps_the_rest(
    make_settings: Callable[..., Any],
) -> None:
    runtime = Runtime("retired_probe", make_settings())
    db = runtime.db
    now = datetime.now(UTC)
    for name in RETIRED_COLLECTIONS:
        await db[name].insert_one({"_id": f"{name}/1/2", "at": now})
    await db["cases"].insert_one({"_id": 1, "version": 3})
    await db["locks"].insert_one({"_id": "raw/abc", "at": now})  # ingestion's masking locks
    ledger = db["processed_messages"]
    await ledger.insert_many(
        [
            {"_id": "threading/m1", "state": "done", "at": now},
            {"_id": "threading/m2~2026-12-01T10:00:00", "state": "ticket", "at": now},
        ]
    )
    try:
        async with runtime.app:
            left = set(await db.list_collection_names())
            assert not RETIRED_COLLECTIONS & left
            assert {"cases", "locks", "processed_messages"} <= left
            assert await db["cases"].count_documents({}) == 1
            assert [d["_id"] async for d in ledger.find({})] == ["threading/m1"]
            # a second start finds nothing to do
            assert await drop_retired(db) == []
            assert await db["locks"].count_documents({}) == 1
    finally:
        async with AsyncMongoClient[dict[str, Any]](
            runtime.settings.mongodb_url.get_secret_value()
        ) as client:
            await client.drop_database(db.name)
