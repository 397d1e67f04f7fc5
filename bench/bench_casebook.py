"""My Cases and case search at scale: p50/p95 of each query over a loaded case index.

    python bench/bench_casebook.py --cases 1000000 --emails-per-case 3   # load, then measure
    python bench/bench_casebook.py --cases 1000000 --reuse                # measure a loaded one

Loads ``--cases`` cases with ``--emails-per-case`` emails each (synthetic words, 200 agents,
5 services, a contact per three cases) into the database ``bench_casebook`` on the server in use
(the local FerretDB, or ``MONGODB_URL``), as threading's ``case_index`` entries built by
``search_index.entry_for`` from each case and its emails (the queries read only that
collection), then times the queries of ``casebook`` as agents and supervisors ask them.
``--reuse`` skips loading (the database is kept between runs; ``--drop`` removes it).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from switchboard.app.localstack import backends
from switchboard.contracts import casebook as cb
from switchboard.threading import access
from switchboard.threading.casebook import Casebook
from switchboard.threading.search_index import CaseIndex, Document, entry_for

DATABASE = "bench_casebook"
SERVICES = ["support", "sales", "billing", "returns", "claims"]
VOCABULARY = [f"w{n}" for n in range(20_000)]
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class BenchCasebook(Casebook):
    """The real queries; an agent's services given here instead of asked of routing."""

    async def _visible(self, agent_id: str, acting_role: str) -> Document | None:
        return access.finding_filter(agent_id, acting_role, ["support"])


def _text(rng: random.Random, n: int) -> str:
    # Zipf-like: a few words are everywhere, most are rare
    return " ".join(
        VOCABULARY[min(int(rng.paretovariate(0.6)), len(VOCABULARY) - 1)] for _ in range(n)
    )


def synthetic(number: int, emails: int, rng: random.Random) -> Document:
    created = NOW - timedelta(minutes=number % 500_000)
    closed = rng.random() < 0.8
    case = {
        "_id": number,
        "status": "closed" if closed else "open",
        "service": SERVICES[number % len(SERVICES)],
        "subject": _text(rng, 5),
        "contact": {"name": f"Contact {number // 3}", "address": f"c{number // 3}@example.com"},
        "thread_id": f"T{number:08d}",
        "agents": [f"agent{number % 200}"],
        "interaction": {"state": "idle" if closed else "assigned", "agent_id": None},
        "dispositions": [{"name": "Resolved"}] if closed else [],
        "final_disposition": "Resolved" if closed else None,
        "participants": [f"c{number // 3}@example.com"],
        "created_at": created,
        "updated_at": created + timedelta(minutes=rng.randrange(0, 600)),
        "last_inbound_at": created,
        "last_outbound_at": created + timedelta(minutes=5) if closed else None,
    }
    mails = [
        {
            "_id": f"m{number}-{i}",
            "direction": "inbound",
            "subject": case["subject"],
            "text": _text(rng, 60),
            "when": created + timedelta(minutes=i),
        }
        for i in range(emails)
    ]
    return entry_for(case, mails)


async def load(index: CaseIndex, cases: int, emails: int) -> float:
    started = time.perf_counter()
    await index.entries.drop()
    await index.ensure_indexes()
    await index.by_agent.drop()
    rng = random.Random(20)
    batch: list[Document] = []
    by_agent: dict[str, Document] = {}
    for number in range(1, cases + 1):
        entry = synthetic(number, emails, rng)
        batch.append(entry)
        for agent_id in entry["agents"]:
            marks = by_agent.setdefault(agent_id, {})
            marks[str(number)] = {"open": entry["open"], "at": entry["last_activity"]}
        if len(batch) == 1000:
            await index.entries.insert_many(batch, ordered=False)
            batch = []
            if number % 50_000 == 0:
                print(f"  loaded {number} cases", flush=True)
    if batch:
        await index.entries.insert_many(batch, ordered=False)
    await index.by_agent.insert_many([{"_id": a, "cases": m} for a, m in by_agent.items()])
    return time.perf_counter() - started


async def timed(query: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await query()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


async def run(args: argparse.Namespace, mongodb_url: str) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_url, tz_aware=True)
    index = CaseIndex(client[DATABASE])
    if not args.reuse:
        seconds = await load(index, args.cases, args.emails_per_case)
        print(
            f"loaded {args.cases} cases ({args.cases * args.emails_per_case} emails) "
            f"in {seconds:.0f} s"
        )
    book = BenchCasebook(index, bus=None)  # type: ignore[arg-type]
    rng = random.Random(7)
    agent = lambda: f"agent{rng.randrange(200)}"  # noqa: E731
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "My Cases (agent, page 1 of 25)": lambda: book.on_my_cases(
            cb.ListMyCases(agent_id=agent())
        ),
        "search: one rare word (agent)": lambda: book.on_search(
            cb.SearchCases(agent_id=agent(), text=f"w{rng.randrange(2000, 20000)}")
        ),
        "search: two words (supervisor)": lambda: book.on_search(
            cb.SearchCases(
                agent_id="s",
                acting_role="supervisor",
                text=f"w{rng.randrange(50, 500)} w{rng.randrange(500, 5000)}",
            )
        ),
        "search: contact address (agent)": lambda: book.on_search(
            cb.SearchCases(
                agent_id=agent(), contact=f"c{rng.randrange(args.cases // 3)}@example.com"
            )
        ),
        "search: word + service + open (supervisor)": lambda: book.on_search(
            cb.SearchCases(
                agent_id="s",
                acting_role="supervisor",
                service="support",
                status="open",
                text=f"w{rng.randrange(100, 1000)}",
            )
        ),
        "search: case number (agent)": lambda: book.on_search(
            cb.SearchCases(agent_id=agent(), case_number=rng.randrange(1, args.cases))
        ),
    }
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    for what, query in queries.items():
        p50, p95 = await timed(query, args.repeat)
        print(f"{what}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({args.repeat} runs)", flush=True)
    if args.drop:
        await client.drop_database(DATABASE)
    await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--emails-per-case", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="measure the loaded database")
    parser.add_argument("--drop", action="store_true", help="drop the database afterwards")
    args = parser.parse_args()
    with backends(Path(".local")) as found:
        print(f"server: {found.origin['mongodb']}")
        asyncio.run(run(args, found.mongodb_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
