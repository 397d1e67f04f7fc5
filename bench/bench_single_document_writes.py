"""Single-document write figures of the MongoDB-protocol server: latency and concurrency.

Run: ``.venv/bin/python bench/bench_single_document_writes.py`` with ``MONGODB_URL`` set
(without ``MONGODB_URL``: the local server the tests use).

Used to compare the local FerretDB with and without its write-lock patch: the lock must not
slow single operations, and its cost under concurrent writers to one collection shows here.
Prints: median and p95 of one insert, one read by ``_id`` and one update by ``_id`` (one at a
time); updates per second with 16 concurrent writers on 16 documents of one collection; and
how many of 30 three-way races on one conditional update had more than one winner.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import support
from pymongo import AsyncMongoClient

ROUNDS = 300


async def _timed(operation: Callable[[int], Awaitable[Any]]) -> list[float]:
    took = []
    for n in range(ROUNDS):
        started = time.perf_counter()
        await operation(n)
        took.append((time.perf_counter() - started) * 1000)
    return took


def _say(name: str, took: list[float]) -> None:
    ordered = sorted(took)
    p95 = ordered[int(0.95 * len(ordered))]
    print(f"  {name:22s} p50 {statistics.median(took):6.2f} ms  p95 {p95:6.2f} ms")


async def _bench(url: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, maxPoolSize=64)
    name = f"bench{uuid.uuid4().hex[:8]}"
    docs = client[name]["docs"]
    try:
        build = await client.admin.command("buildInfo")
        print(f"server: {url} ({build.get('ferretdbVersion', 'MongoDB ' + build['version'])})")
        _say("insert", await _timed(lambda n: docs.insert_one({"_id": n, "v": 0})))
        _say("read by _id", await _timed(lambda n: docs.find_one({"_id": n})))
        _say(
            "update by _id",
            await _timed(lambda n: docs.update_one({"_id": n}, {"$set": {"v": 1}})),
        )

        async def writer(key: int, until: float) -> int:
            done = 0
            while time.perf_counter() < until:
                await docs.update_one({"_id": key}, {"$inc": {"v": 1}})
                done += 1
            return done

        until = time.perf_counter() + 5.0
        counts = await asyncio.gather(*(writer(k, until) for k in range(16)))
        print(f"  16 concurrent writers  {sum(counts) / 5.0:6.0f} updates/s (16 documents)")

        several = 0
        races = client[name]["races"]
        for trial in range(30):
            await races.insert_one({"_id": trial, "v": 0})
            won = await asyncio.gather(
                *(races.update_one({"_id": trial, "v": 0}, {"$set": {"v": 1}}) for _ in range(3))
            )
            several += sum(w.modified_count for w in won) > 1
        print(f"  conditional update races with several winners: {several} of 30")
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> None:
    with support.servers(vhost=False) as found:
        print(f"command: {support.command_line()}")
        asyncio.run(_bench(os.environ.get("MONGODB_URL") or found.mongodb_url))


if __name__ == "__main__":
    main()
