"""My Cases and case search at scale: p50/p95/p99 of each typical query over loaded cases.

    python bench/bench_casebook.py                       # small: load 5,000 cases, then measure
    python bench/load_casebook.py --cases 1000000 --emails 3000000 \\
        --mongodb-url mongodb://127.0.0.1:27219/        # full size, once (see load_casebook)
    python bench/bench_casebook.py --reuse --mongodb-url mongodb://127.0.0.1:27219/

Without ``--reuse`` it loads ``--cases`` cases and ``--emails`` emails with ``load_casebook``
(threading's own shapes: cases, emails, index entries, postings) into ``--database`` on the
server in use (the local FerretDB, or ``--mongodb-url``), then times threading's ``casebook``
queries as agents (of one service each) and supervisors ask them. ``--reuse`` measures what a
load left (as far as it got: its progress document says how many cases are complete).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from load_casebook import AGENTS, NOW, SERVICES, load
from pymongo import AsyncMongoClient
from support import command_line, count_commands, latency_line

from switchboard.app.localstack import backends
from switchboard.contracts import casebook as cb
from switchboard.threading.casebook import Casebook
from switchboard.threading.search_index import INDEX, CaseIndex, Document

Query = Callable[[], Awaitable[Any]]


class BenchCasebook(Casebook):
    """The real queries; an agent's services given here instead of asked of routing."""

    async def _services(self, agent_id: str) -> list[str]:
        return [SERVICES[int(agent_id.removeprefix("agent")) % len(SERVICES)]]


def queries(book: Casebook, cases: int, rng: random.Random) -> dict[str, Query]:
    first_day = NOW - timedelta(seconds=30 * (1_000_000 - 1))
    span = timedelta(seconds=30 * cases)

    def agent() -> str:
        return f"agent{rng.randrange(AGENTS)}"

    def supervisor(**criteria: Any) -> Query:
        return lambda: book.on_search(
            cb.SearchCases(agent_id="s", acting_role="supervisor", **criteria)
        )

    def day() -> dict[str, Any]:
        since = first_day + span * rng.random()
        return {"since": since, "until": since + timedelta(days=1)}

    found: dict[str, Query] = {
        "My Cases (agent, page 1 of 25)": lambda: book.on_my_cases(
            cb.ListMyCases(agent_id=agent())
        ),
        "search: one word (agent)": lambda: book.on_search(
            cb.SearchCases(agent_id=agent(), text=f"w{rng.randrange(20, 2000)}")
        ),
        "search: one rare word (supervisor)": lambda: supervisor(
            text=f"w{rng.randrange(2000, 20000)}"
        )(),
        "search: two words (supervisor)": lambda: supervisor(
            text=f"w{rng.randrange(5, 500)} w{rng.randrange(500, 5000)}"
        )(),
        "search: contact address (agent)": lambda: book.on_search(
            cb.SearchCases(agent_id=agent(), contact=f"c{rng.randrange(cases // 3)}@example.com")
        ),
        "search: service + status (supervisor)": lambda: supervisor(
            service=rng.choice(SERVICES), status="open"
        )(),
        "search: date range, one day (supervisor)": lambda: supervisor(**day())(),
        "search: word + date range (agent)": lambda: book.on_search(
            cb.SearchCases(agent_id=agent(), text=f"w{rng.randrange(5, 200)}", **day())
        ),
        "search: case number (agent)": lambda: book.on_search(
            cb.SearchCases(agent_id=agent(), case_number=rng.randrange(1, cases))
        ),
    }
    if cases // AGENTS > 75:  # beyond the rows kept in the agent's document
        found["My Cases (agent, page 3 of 25: entries read)"] = lambda: book.on_my_cases(
            cb.ListMyCases(agent_id=agent(), page=3)
        )
    return found


async def timed(query: Query, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await query()
        times.append(time.perf_counter() - started)
    return times


async def refresh_cost(db: Any, cases: int, repeat: int, rng: random.Random) -> None:
    """What one case change costs the index: its subject changed, then ``refresh`` (the
    database commands it sends and how long it takes)."""
    commands = count_commands({db.name})
    client: AsyncMongoClient[Document] = AsyncMongoClient(MONGODB_URL[0], tz_aware=True)
    index = CaseIndex(client[db.name])
    times = []
    for at in range(repeat):
        number = rng.randrange(1, cases)
        await index.cases.update_one(
            {"_id": number},
            {"$set": {"subject": f"changed {at} w{rng.randrange(20000)}", "updated_at": NOW}},
        )
        commands.counting = True
        started = time.perf_counter()
        await index.refresh(number)
        times.append(time.perf_counter() - started)
        commands.counting = False
    writes = {k: n for k, n in commands.seen.items() if k[0] == "update"}
    print(latency_line("index refresh after a change of subject", times))
    print(
        f"  per change: {commands.total() / repeat:.1f} commands "
        f"({sum(writes.values()) / repeat:.1f} write commands: {dict(writes)} in {repeat})"
    )
    await client.close()


MONGODB_URL: list[str] = []


async def run(args: argparse.Namespace, mongodb_url: str) -> None:
    MONGODB_URL.append(mongodb_url)
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_url, tz_aware=True)
    db = client[args.database]
    if not args.reuse:
        started = time.perf_counter()
        await load(db, args.cases, args.emails)
        print(
            f"loaded {args.cases} cases, {args.emails} emails in "
            f"{time.perf_counter() - started:.0f} s"
        )
    progress = await db["bench_load"].find_one({"_id": "progress"})
    if progress is None:
        raise SystemExit(f"nothing loaded in {args.database}: run bench/load_casebook.py first")
    cases, emails = int(progress["cases"]), int(progress["emails"])
    print(
        f"measuring {cases} cases, {emails} emails, loaded by: python bench/load_casebook.py "
        f"--cases {progress['of']} --emails {progress['of'] * 3}"
        + (" (cut short by --budget-seconds)" if cases < int(progress["of"]) else "")
    )
    print("command: " + command_line())
    book = BenchCasebook(CaseIndex(db), bus=None)  # type: ignore[arg-type]
    rng = random.Random(3)

    async def one_lookup() -> None:  # the floor: every query is a few of these
        await db[INDEX].find_one({"_id": f"{rng.randrange(1, cases):012d}"})

    print(latency_line("floor: one entry by _id", await timed(one_lookup, args.repeat)))
    for what, query in queries(book, cases, random.Random(7)).items():
        await timed(query, 3)  # warm up
        print(latency_line(what, await timed(query, args.repeat)), flush=True)
    await refresh_cost(db, cases, min(args.repeat, 20), random.Random(11))
    await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5_000)
    parser.add_argument("--emails", type=int, default=15_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--mongodb-url", help="default: the local server (as the tests find it)")
    parser.add_argument(
        "--database", help="default: bench_casebook_small, with --reuse the loader's bench_casebook"
    )
    parser.add_argument("--reuse", action="store_true", help="measure what a load left")
    args = parser.parse_args()
    args.database = args.database or ("bench_casebook" if args.reuse else "bench_casebook_small")
    if args.mongodb_url:
        asyncio.run(run(args, args.mongodb_url))
        return 0
    with backends(Path(".local")) as found:
        print(f"server: {found.origin['mongodb']}")
        asyncio.run(run(args, found.mongodb_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
