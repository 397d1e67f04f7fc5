"""The database's cost of one document: by `_id`, and by a filter on another field.

    python bench/bench_store_lookups.py [--documents 10000] [--repeat 50]

Every compare-and-set in Switchboard reads and writes one document by `_id`, often with a
condition on other fields (the processed-message ledger's takeover: `_id`, `state`, `until`,
`owner`); they must be cheap however large the collection (the local FerretDB looks those up
by the `_id` index with `deploy/local/ferretdb-patches/03-id-pushdown.patch`, and numeric
`_id`s such as Threading's case numbers with `04-int-id-pushdown.patch`). This prints
what they cost on the server in use (the local FerretDB, or `MONGODB_URL`): median of
`--repeat` runs over `--documents` documents of about 1 KB, in a fresh database dropped
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import support
from pymongo import AsyncMongoClient


async def median_ms(operation: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await operation()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(mongodb_url: str, documents: int, repeat: int) -> list[tuple[str, float]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    name = f"bench{uuid.uuid4().hex[:8]}_lookups"
    work = client[name]["work"]
    cases = client[name]["cases"]
    first, last = "w00000", f"w{documents - 1:05d}"
    try:
        for start in range(0, documents, 1000):
            await work.insert_many(
                [
                    {"_id": f"w{n:05d}", "status": "waiting", "service": "backlog", "s": "y" * 900}
                    for n in range(start, min(start + 1000, documents))
                ]
            )
            await cases.insert_many(
                [
                    {"_id": n, "status": "open", "s": "y" * 900}
                    for n in range(start + 1, min(start + 1000, documents) + 1)
                ]
            )
        replacement = {"_id": last, "status": "offered", "service": "backlog", "s": "y" * 900}
        return [
            (
                "find_one by _id, first document",
                await median_ms(lambda: work.find_one({"_id": first}), repeat),
            ),
            (
                "find_one by _id, last document",
                await median_ms(lambda: work.find_one({"_id": last}), repeat),
            ),
            (
                "find_one by _id, missing",
                await median_ms(lambda: work.find_one({"_id": "missing"}), repeat),
            ),
            (
                "replace_one by _id",
                await median_ms(lambda: work.replace_one({"_id": last}, replacement), repeat),
            ),
            (
                "find_one by _id and status (filtered)",
                await median_ms(
                    lambda: work.find_one({"_id": last, "status": "offered"}), max(repeat // 10, 3)
                ),
            ),
            (
                "update_one by _id, status and service (a conditional write)",
                await median_ms(
                    lambda: work.update_one(
                        {"_id": last, "status": "offered", "service": "backlog"},
                        {"$set": {"s": "z" * 900}},
                    ),
                    max(repeat // 10, 3),
                ),
            ),
            (
                "find_one by integer _id (a case number), last case",
                await median_ms(lambda: cases.find_one({"_id": documents}), max(repeat // 10, 3)),
            ),
            (
                "update_one by integer _id and status (a conditional write)",
                await median_ms(
                    lambda: cases.update_one(
                        {"_id": documents, "status": "open"}, {"$set": {"s": "z" * 900}}
                    ),
                    max(repeat // 10, 3),
                ),
            ),
        ]
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with support.servers(vhost=False) as found:
        figures = asyncio.run(run(found.mongodb_url, args.documents, args.repeat))
    print(f"command: {support.command_line()}")
    print(f"ran: {args.documents} documents of about 1 KB; server: {found.origin['mongodb']}")
    for what, ms in figures:
        print(f"{what}: median {ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
