"""Load synthetic cases and emails, with their search index, as threading would have written them.

    python bench/load_casebook.py --cases 1000000 --emails 3000000 \\
        --mongodb-url mongodb://127.0.0.1:27219/ --database bench_casebook

Cases are made by threading's ``new_case`` and changed as working them would (closed with a
disposition, held, transferred...); emails have the fields intake stores; the index entries are
``search_index.entry_for`` of each case and its emails, and the postings are
``postings.bulk_documents`` of a whole bucket of entries, so the shapes are threading's own.
The agents' documents are ``postings.agent_document`` and the rows ``search_index.row_of``.
Everything is written with ``insert_many`` in batches of 1,000, one bucket of case numbers at a
time (made by two worker processes while the previous bucket is written); what spans buckets
(the terms' heads, the activity bounds, the agents' documents) is written once at the end.
``--budget-seconds`` stops after the bucket that passes the budget and writes those, so a load
cut short is complete as far as it went; ``bench_load`` records how many cases are loaded.
Each case is generated from its number alone (same seed, same data).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from switchboard.app.localstack import backends
from switchboard.threading import postings as p
from switchboard.threading.domain.cases import new_case
from switchboard.threading.search_index import INDEX, LAYOUT, LAYOUT_VERSION, entry_for, row_of

Document = dict[str, Any]
SERVICES = ["support", "sales", "billing", "returns", "claims"]
AGENTS = 200
VOCABULARY = [f"w{n}" for n in range(20_000)]
FIRST = ["ann", "bob", "carla", "dev", "emma", "femi", "gus", "hana", "ivan", "jo"] * 2
LAST = ["smith", "jones", "garcia", "chen", "okafor", "novak", "silva", "kim", "ross", "ali"]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
BATCH = 1000
WORKERS = 2


def _zipf_weights() -> list[float]:
    """Cumulative weights of ``min(int(paretovariate(0.6)), n - 1)``: a few words are
    everywhere, most are rare."""
    n, total, found = len(VOCABULARY), 0.0, [0.0]
    for k in range(1, n):
        total += k**-0.6 - (k + 1) ** -0.6 if k < n - 1 else k**-0.6
        found.append(total)
    return found


ZIPF = _zipf_weights()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(VOCABULARY, cum_weights=ZIPF, k=n))


def contact_of(number: int) -> Document:
    """Three cases per contact, all in one service."""
    who = number // 3
    name = f"{FIRST[who % len(FIRST)].title()} {LAST[(who // 20) % len(LAST)].title()}"
    return {"name": name, "address": f"c{who}@example.com"}


def service_of(number: int) -> str:
    return SERVICES[(number // 3) % len(SERVICES)]


def agent_of(number: int) -> str:
    return f"agent{number % AGENTS}"


def synthetic(number: int, emails: int) -> tuple[Document, list[Document]]:
    """A case and its emails, from the case number alone."""
    rng = random.Random(number)
    created = NOW - timedelta(seconds=30 * (1_000_000 - number))  # 1M cases: 347 days
    contact = contact_of(number)
    case = new_case(
        number,
        service=service_of(number),
        subject=_text(rng, 5),
        contact=contact,
        origin="email",
        linked_to=None,
        first_email=f"m{number}-0",
        agent_id=agent_of(number),
    )
    closed = rng.random() < 0.8
    updated = created + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
    case |= {
        "thread_id": f"T{number:09d}",
        "status": "closed" if closed else "open",
        "work_status": "closed" if closed else "open",
        "participants": [contact["address"]],
        "email_keys": [f"m{number}-{i}" for i in range(emails)],
        "created_at": created,
        "updated_at": updated,
        "last_inbound_at": created,
        "last_outbound_at": created + timedelta(minutes=5) if closed else None,
    }
    if closed:
        case["dispositions"] = [{"name": "Resolved", "at": updated, "agent_id": agent_of(number)}]
        case["final_disposition"] = "Resolved"
    else:
        case["interaction"] = {"state": "assigned", "agent_id": agent_of(number)}
    mails = [
        {
            "_id": f"m{number}-{i}",
            "case_number": number,
            "direction": "inbound" if i % 2 == 0 else "outbound",
            "kind": "inbound" if i % 2 == 0 else "reply",
            "service": case["service"],
            "from": contact if i % 2 == 0 else {"name": "", "address": "help@acme.example"},
            "to": [{"name": "", "address": "help@acme.example"}],
            "cc": [],
            "subject": case["subject"],
            "text": _text(rng, 40),
            "attachments": [],
            "when": created + timedelta(minutes=i),
            "received_at": created + timedelta(minutes=i),
            "masked": [],
            "stored_at": created + timedelta(minutes=i),
        }
        for i in range(emails)
    ]
    return case, mails


def emails_for(number: int, cases: int, emails: int) -> int:
    """Spread ``emails`` over ``cases`` as evenly as whole numbers allow."""
    return emails * number // cases - emails * (number - 1) // cases


async def _insert(db: AsyncDatabase[Document], name: str, docs: list[Document]) -> None:
    for start in range(0, len(docs), BATCH):
        await db[name].insert_many(docs[start : start + BATCH], ordered=False)


class Prepared:
    """One bucket's documents, made away from the writing loop (worker processes)."""

    def __init__(self, numbers: range, cases: int, emails: int) -> None:
        self.cases: list[Document] = []
        self.emails: list[Document] = []
        self.entries: list[Document] = []
        self.threads: list[Document] = []
        for number in numbers:
            case, mails = synthetic(number, emails_for(number, cases, emails))
            self.cases.append(case)
            self.emails += mails
            self.entries.append(entry_for(case, mails))
            self.threads.append(
                {"_id": case["thread_id"], "case_number": number, "at": case["created_at"]}
            )
        self.bulk = p.bulk_documents(self.entries)
        self.marks: dict[str, dict[int, tuple[int, bool]]] = {}
        self.rows: dict[int, Document] = {}
        for entry in self.entries:
            mark = (p.seconds(entry["last_activity"]), bool(entry["open"]))
            for agent_id in entry["agents"]:
                self.marks.setdefault(agent_id, {})[entry["number"]] = mark
            self.rows[entry["number"]] = row_of(entry)


def prepare(numbers: range, cases: int, emails: int) -> Prepared:
    return Prepared(numbers, cases, emails)


class Loaded:
    """What spans buckets, written once at the end: the terms' heads, the activity bounds and
    the agents' documents (marks and the rows of their first My Cases pages)."""

    def __init__(self) -> None:
        self.heads: dict[str, set[str]] = {}
        self.bounds: dict[int, tuple[int, int]] = {}
        self.marks: dict[str, dict[int, tuple[int, bool]]] = {}
        self.rows: dict[str, dict[int, Document]] = {}

    def add(self, ready: Prepared) -> None:
        for term, names in ready.bulk.heads.items():
            self.heads.setdefault(term, set()).update(names)
        self.bounds.update(ready.bulk.bounds)
        for agent_id, marks in ready.marks.items():
            mine = self.marks.setdefault(agent_id, {})
            mine.update(marks)
            rows = self.rows.setdefault(agent_id, {}) | {n: ready.rows[n] for n in marks}
            self.rows[agent_id] = {n: rows[n] for n in p.my_order(mine)[: p.MY_TOP] if n in rows}

    def documents(self) -> list[Document]:
        docs: list[Document] = [
            {"_id": term, "parts": sorted(names)} for term, names in self.heads.items()
        ]
        docs.append(
            {
                "_id": p.ACTIVITY,
                "lo": {str(b): low for b, (low, _) in self.bounds.items()},
                "hi": {str(b): high for b, (_, high) in self.bounds.items()},
            }
        )
        docs.append({"_id": LAYOUT, "version": LAYOUT_VERSION})  # threading takes it as current
        docs += [
            p.agent_document(agent_id, marks, self.rows[agent_id])
            for agent_id, marks in self.marks.items()
        ]
        return docs


async def load(
    db: AsyncDatabase[Document], cases: int, emails: int, budget: float | None = None
) -> int:
    """Load ``cases`` cases with ``emails`` emails in all (fewer if ``budget`` seconds pass
    first: the load stops after a whole bucket); returns the cases loaded."""
    for name in await db.list_collection_names():
        await db.drop_collection(name)
    loaded, done = Loaded(), 0
    ranges = _ranges(0, cases)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(WORKERS) as pool:
        coming = [
            loop.run_in_executor(pool, prepare, r, cases, emails) for r in ranges[: WORKERS + 1]
        ]
        for at, numbers in enumerate(ranges):
            ready = await coming[at]
            if at + WORKERS + 1 < len(ranges):
                coming.append(
                    loop.run_in_executor(pool, prepare, ranges[at + WORKERS + 1], cases, emails)
                )
            await _insert(db, "cases", ready.cases)
            await _insert(db, "emails", ready.emails)
            await _insert(db, "thread_ids", ready.threads)
            await _insert(db, INDEX, ready.entries + ready.bulk.docs)
            loaded.add(ready)
            done = numbers[-1]
            elapsed = time.perf_counter() - started
            rate = done / elapsed
            print(f"  {done} cases loaded ({rate:.0f} cases/s with their emails)", flush=True)
            if budget is not None and elapsed > budget and done < cases:
                print(f"  budget of {budget:.0f} s spent: stopping at {done} cases")
                for waiting in coming[at + 1 :]:
                    waiting.cancel()
                break
    await _insert(db, INDEX, loaded.documents())
    mails = sum(emails_for(n, cases, emails) for n in range(1, done + 1))
    await db["bench_load"].replace_one(
        {"_id": "progress"},
        {"cases": done, "emails": mails, "of": cases, "at": datetime.now(UTC)},
        upsert=True,
    )
    return done


def _ranges(done: int, cases: int) -> list[range]:
    """The numbers still to load, a bucket of case numbers at a time."""
    found = []
    while done < cases:
        end = min(cases, (p.bucket_of(done + 1) + 1) * p.BUCKET - 1)
        found.append(range(done + 1, end + 1))
        done = end
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5_000)
    parser.add_argument("--emails", type=int, default=15_000)
    parser.add_argument("--mongodb-url", help="default: the local server (as the tests find it)")
    parser.add_argument("--database", default="bench_casebook")
    parser.add_argument(
        "--budget-seconds", type=float, help="stop after the bucket that passes this time"
    )
    args = parser.parse_args()

    async def run(url: str) -> None:
        client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True)
        started = time.perf_counter()
        done = await load(client[args.database], args.cases, args.emails, args.budget_seconds)
        took = time.perf_counter() - started
        print(f"loaded {done} cases in {took:.0f} s ({done / took:.0f} cases/s with their emails)")
        await client.close()

    if args.mongodb_url:
        asyncio.run(run(args.mongodb_url))
        return 0
    with backends(Path(".local")) as found:
        asyncio.run(run(found.mongodb_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
