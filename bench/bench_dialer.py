"""Dialer figures beside their floors, measured in the same run: a 100k-row CSV import against
a bare ``insert_many`` of as many record documents (goal: the ratio under 2), and the time to
pick the next record against one bare ``find_one`` by ``_id`` on the same collection (goal:
p99 under 20 ms with a million records loaded).

    python bench/bench_dialer.py                    # what `make bench` runs: pick at 100k records
    python bench/bench_dialer.py --records 1000000  # the goal's size (loading takes minutes)

Run the million on a server of your own, so a shared one is not bloated (it is dropped after)::

    deploy/local/ferretdb.sh start /tmp/bench-ferret 27391
    MONGODB_URL=mongodb://127.0.0.1:27391/ python bench/bench_dialer.py --records 1000000

Servers come from ``switchboard.app.localstack.backends`` (MONGODB_URL for a real MongoDB,
else the local FerretDB), on loopback. The import goes through the same streamed path as the
HTTP upload (parse, normalise to E.164, batched writes, progress). The pick is the dispatcher's
step: take an entry of the campaign's hopper (read a batch at a time, each with the record as the
refill read it), take a place in the campaign's backlog while checking DNC, re-check the record
(still pending and due, window, attempts), claim it (one write to ``records`` guarded by the
entry's version, its live copy derived) and hand it to routing (a stub publisher here, so the
figure is the dialer's own cost). The hopper refill (the background task that scans ``records``
for ready ones) runs between picks when the hopper is below half full and is timed apart.
Records for the pick are bulk-inserted until ``--records`` or the load budget is reached; what
was loaded is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "dialer"))  # in case the venv predates the package

import support  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402

from switchboard.contracts.base import Message  # noqa: E402
from switchboard.contracts.campaigns import CallingHours, CampaignSpec  # noqa: E402
from switchboard.dialer.domain import new_record_fields, number_zones  # noqa: E402
from switchboard.dialer.handlers import DialerHandlers  # noqa: E402
from switchboard.dialer.importer import parse_stream  # noqa: E402
from switchboard.dialer.store import DialerStore  # noqa: E402
from switchboard.runtime.logs import without_password  # noqa: E402

CAMPAIGN = "bench"
AREA_CODES = ["212", "202", "415", "312", "617", "305", "206", "713"]


class StubBus:
    """Counts what the dialer would publish (the figure is the dialer's own cost)."""

    def __init__(self) -> None:
        self.published = 0

    async def publish(self, message: Message) -> None:
        self.published += 1


def csv_bytes(rows: int) -> bytes:
    lines = ["external_id,name,mobile_phone,home_phone,plan"]
    for i in range(rows):
        area = AREA_CODES[i % len(AREA_CODES)]
        lines.append(f"c{i},Customer {i},({area}) 555-{i % 10000:04d},,gold")
    return ("\n".join(lines) + "\n").encode()


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def bench_import(handlers: DialerHandlers, rows: int) -> dict[str, Any]:
    data = csv_bytes(rows)
    started = time.perf_counter()
    summary = await handlers.run_import(
        CAMPAIGN, chunks(data), "csv", "US", import_id=f"bench-{uuid.uuid4().hex[:6]}"
    )
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "summary": summary}


async def bench_parse(rows: int) -> float:
    """Seconds to parse and validate the same CSV without writing anything (where an import's
    time goes when it is above its floor)."""
    started = time.perf_counter()
    async for _ in parse_stream(chunks(csv_bytes(rows)), "csv", "US"):
        pass
    return time.perf_counter() - started


async def bench_bare_insert(
    store: DialerStore, rows: int, batch: int, *, indexed: bool = False
) -> float:
    """Seconds to ``insert_many`` ``rows`` record documents (built beforehand, in batches of the
    import's size) into a collection of their own: what the import's writes cost at least."""
    now = datetime.now(UTC)
    zones = list(number_zones("+12125550123"))
    docs = [
        {
            "_id": f"bare-{i:08d}",
            "campaign_id": CAMPAIGN,
            "external_id": f"c{i}",
            "name": f"Customer {i}",
            "phones": [{"number": f"+1212555{i % 10000:04d}", "type": "mobile", "zones": zones}],
            "time_zone": None,
            "fields": {"plan": "gold"},
            **new_record_fields(now),
            "imported_at": now,
            "version": 1,
        }
        for i in range(rows)
    ]
    bare = store.db["bare_insert_indexed" if indexed else "bare_insert"]
    if indexed:  # the indexes every import keeps up to date too
        async for index in await store.records.list_indexes():
            if index["name"] != "_id_":
                await bare.create_index(list(index["key"].items()))
        docs = [{**doc, "_id": f"indexed-{doc['_id']}"} for doc in docs]
    started = time.perf_counter()
    for start in range(0, rows, batch):
        await bare.insert_many(docs[start : start + batch], ordered=False)
    return time.perf_counter() - started


async def load(store: DialerStore, target: int, budget: float, already: int) -> tuple[int, float]:
    """Bulk-insert records (all due) until ``target`` or the budget; (loaded, seconds)."""
    now = datetime.now(UTC)
    zones = number_zones("+12125550123")
    loaded, started, batch = already, time.perf_counter(), 5000
    while loaded < target:
        if budget and time.perf_counter() - started > budget:
            break
        docs = []
        for i in range(loaded, min(loaded + batch, target)):
            docs.append(
                {
                    "_id": f"load-{i:08d}",
                    "campaign_id": CAMPAIGN,
                    "external_id": f"load-{i}",
                    "name": f"Loaded {i}",
                    "phones": [
                        {
                            "number": f"+1212555{i % 10000:04d}",
                            "type": "mobile",
                            "zones": list(zones),
                        }
                    ],
                    "time_zone": None,
                    "fields": {},
                    **new_record_fields(now - timedelta(seconds=target - i)),
                    "version": 1,
                }
            )
        await store.records.insert_many(docs, ordered=False)
        loaded += len(docs)
    return loaded, time.perf_counter() - started


async def bench_find_by_id(store: DialerStore, first: int, total: int, count: int) -> list[float]:
    """Seconds of one ``find_one`` by ``_id`` of a loaded record, ``count`` times: the least a
    pick costs (it reads the record it claims)."""
    timings = []
    for n in range(count):
        key = f"load-{first + (n * 7919) % max(total - first, 1):08d}"
        started = time.perf_counter()
        await store.records.find_one({"_id": key})
        timings.append(time.perf_counter() - started)
    return timings


async def bench_pick(
    handlers: DialerHandlers, spec: CampaignSpec, picks: int
) -> tuple[list[float], list[float], int]:
    """(pick timings, hopper refill timings, picks that found nothing)."""
    timings, refills, misses = [], [], 0
    for _ in range(picks):
        started = time.perf_counter()
        added = await handlers.refill(CAMPAIGN, spec, datetime.now(UTC))
        if added:
            refills.append(time.perf_counter() - started)
        started = time.perf_counter()
        routed = await handlers.pick(CAMPAIGN, spec, 1, datetime.now(UTC))
        timings.append(time.perf_counter() - started)
        misses += routed != 1
    return timings, refills, misses


async def run(args: argparse.Namespace) -> None:
    with support.servers(vhost=False) as found:
        mongodb_url = found.mongodb_url
        origin = found.origin.get("mongodb", "?")
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
        name = f"bench_dialer_{uuid.uuid4().hex[:8]}"
        db = client[name]
        try:
            store = DialerStore(db)
            await store.ensure_indexes()
            bus = StubBus()
            handlers = DialerHandlers(
                store,
                bus,  # type: ignore[arg-type]
                import_batch=args.batch,
                hopper_size=args.hopper,
            )
            spec = CampaignSpec(
                name="Bench",
                service="outbound-preview",
                calling_hours=CallingHours(start="00:00", end="24:00"),
                preview_backlog=args.picks + 10,  # nobody takes the records: room for all picks
            )
            await store.create_campaign(CAMPAIGN, spec, datetime.now(UTC))

            result = await bench_import(handlers, args.import_rows)
            summary = result["summary"]
            rate = result["rows"] / result["seconds"]
            print(f"MongoDB: {origin} ({without_password(mongodb_url)})")
            print(
                f"import: {result['rows']} CSV rows in {result['seconds']:.1f} s = "
                f"{rate:,.0f} rows/s (inserted {summary['imported']}, updated "
                f"{summary['updated']}, bad {summary['bad']}; batch {args.batch})"
            )
            bare = await bench_bare_insert(store, args.import_rows, args.batch)
            print(
                f"floor: bare insert_many of {args.import_rows} record documents (batch "
                f"{args.batch}): {bare:.1f} s = {args.import_rows / bare:,.0f} rows/s"
            )
            print(f"import / bare insert_many = {result['seconds'] / bare:.2f}  (goal: under 2)")
            indexed = await bench_bare_insert(store, args.import_rows, args.batch, indexed=True)
            print(
                f"floor with the records' indexes (the same insert_many into a collection "
                f"indexed like records): {indexed:.1f} s; import / that = "
                f"{result['seconds'] / indexed:.2f}"
            )
            parse = await bench_parse(args.import_rows)
            print(
                f"of which parsing and validating alone (no writes; overlapped with the writes "
                f"in the import): {parse:.1f} s = {args.import_rows / parse:,.0f} rows/s"
            )

            loaded_before = await store.records.estimated_document_count()
            loaded, seconds = await load(store, args.records, args.load_budget, loaded_before)
            total = await store.records.estimated_document_count()
            note = (
                ""
                if total >= args.records
                else (
                    f" (budget of {args.load_budget:.0f} s reached before {args.records:,}:"
                    f" measured with {total:,} loaded)"
                )
            )
            print(
                f"loaded: {total:,} records ({loaded - loaded_before:,} bulk-inserted in "
                f"{seconds:.1f} s){note}"
            )
            floor = await bench_find_by_id(store, loaded_before, total, args.picks)
            timings, refills, misses = await bench_pick(handlers, spec, args.picks)
            print(support.latency_line(f"floor: find_one by _id among {total:,} records", floor))
            print(
                support.latency_line(f"pick next record with {total:,} records loaded", timings)
                + f"  (goal: p99 under 20 ms; picks that found nothing: {misses})"
            )
            print(
                f"pick p99 / find_one p99 = "
                f"{support.percentile(timings, 0.99) / support.percentile(floor, 0.99):.1f}"
            )
            if refills:
                print(
                    f"hopper refill (background, {args.hopper} records a time): "
                    f"{len(refills)} refills, median "
                    f"{statistics.median(refills) * 1000:.0f} ms, max {max(refills) * 1000:.0f} ms"
                )
        finally:
            await client.drop_database(name)
            await client.close()
    print(f"command: {support.command_line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument(
        "--records",
        type=int,
        default=100_000,
        help="records loaded for the pick measurement (the goal is stated at 1000000)",
    )
    parser.add_argument(
        "--load-budget", type=float, default=0.0, help="seconds allowed for loading (0: no limit)"
    )
    parser.add_argument("--picks", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1000, help="import batch size")
    parser.add_argument("--hopper", type=int, default=200, help="hopper size per campaign")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
