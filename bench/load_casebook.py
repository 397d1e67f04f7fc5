"""Load synthetic cases and emails, with their search index, as threading would have written them.

    python bench/load_casebook.py --cases 1000000 --emails 3000000 \\
        --mongodb-url mongodb://127.0.0.1:27219/ --database bench_casebook

Cases are made by threading's ``new_case`` and changed as working them would (closed with a
disposition, held, transferred...); emails have the fields intake stores; the index entries are
``search_index.entry_for`` of each case and its emails, and the postings are
``postings.bulk_documents`` of a whole bucket of entries, so the shapes are threading's own.
Everything is written with ``insert_many``, one bucket of case numbers at a time; after each
bucket the progress document (``bench_load``) records how many cases are complete, so a load
stopped part way is measured as it stands and ``--resume`` continues it. Each case is generated
from its number alone (same seed, same data).
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

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from switchboard.runtime.localstack import backends
from switchboard.threading import postings as p
from switchboard.threading.domain.cases import new_case
from switchboard.threading.search_index import entry_for

Document = dict[str, Any]
SERVICES = ["support", "sales", "billing", "returns", "claims"]
AGENTS = 200
VOCABULARY = [f"w{n}" for n in range(20_000)]
FIRST = ["ann", "bob", "carla", "dev", "emma", "femi", "gus", "hana", "ivan", "jo"] * 2
LAST = ["smith", "jones", "garcia", "chen", "okafor", "novak", "silva", "kim", "ross", "ali"]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
BATCH = 1000


def _text(rng: random.Random, n: int) -> str:
    # Zipf-like: a few words are everywhere, most are rare
    return " ".join(
        VOCABULARY[min(int(rng.paretovariate(0.6)), len(VOCABULARY) - 1)] for _ in range(n)
    )


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
    """Insert in batches; documents already there (a resumed bucket) are kept as they are."""
    for start in range(0, len(docs), BATCH):
        try:
            await db[name].insert_many(docs[start : start + BATCH], ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != 11000 for e in error.details.get("writeErrors", [])):
                raise


class Prepared:
    """One bucket's documents, made away from the writing loop (a second process)."""

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


def prepare(numbers: range, cases: int, emails: int) -> Prepared:
    return Prepared(numbers, cases, emails)


async def write_bucket(
    db: AsyncDatabase[Document],
    ready: Prepared,
    marks: dict[str, dict[int, tuple[int, bool]]],
    terms: dict[str, set[str]],
) -> None:
    """Insert what ``prepare`` made; the heads of terms seen before get the new parts."""
    await _insert(db, "cases", ready.cases)
    await _insert(db, "emails", ready.emails)
    await _insert(db, "thread_ids", ready.threads)
    await _insert(db, "case_index", ready.entries)
    await _insert(db, "case_postings", ready.bulk.docs)
    fresh = [{"_id": t, "parts": sorted(n)} for t, n in ready.bulk.heads.items() if t not in terms]
    await _insert(db, "case_terms", fresh)
    grown = [
        UpdateOne({"_id": t}, {"$addToSet": {"parts": {"$each": sorted(n)}}})
        for t, n in ready.bulk.heads.items()
        if t in terms
    ]
    for start in range(0, len(grown), BATCH):
        await db["case_terms"].bulk_write(grown[start : start + BATCH], ordered=False)
    for term, names in ready.bulk.heads.items():
        terms.setdefault(term, set()).update(names)
    for bucket, (low, high) in ready.bulk.bounds.items():
        await db["case_postings"].update_one(
            {"_id": p.ACTIVITY},
            {"$max": {f"hi.{bucket}": high}, "$min": {f"lo.{bucket}": low}},
            upsert=True,
        )
    for entry in ready.entries:
        for agent_id in entry["agents"]:
            at = p.seconds(entry["last_activity"])
            marks.setdefault(agent_id, {})[entry["number"]] = (at, bool(entry["open"]))
    for agent_id, mine in marks.items():
        await db["agent_cases"].replace_one(
            {"_id": f"agent|{agent_id}"}, {"n": p.pack_marks(mine), "v": 1}, upsert=True
        )


async def load(
    db: AsyncDatabase[Document], cases: int, emails: int, *, resume: bool = False
) -> None:
    """Load (or continue loading) ``cases`` cases with ``emails`` emails in all."""
    progress = await db["bench_load"].find_one({"_id": "progress"}) if resume else None
    if progress is None:
        for name in await db.list_collection_names():
            await db.drop_collection(name)
    done = int(progress["cases"]) if progress else 0
    marks: dict[str, dict[int, tuple[int, bool]]] = {}
    if done:
        for agent in range(AGENTS):
            doc = await db["agent_cases"].find_one({"_id": f"agent|agent{agent}"}) or {}
            marks[f"agent{agent}"] = p.unpack_marks(doc.get("n"))
    terms: dict[str, set[str]] = {}
    if done:
        async for head in db["case_terms"].find({}):
            terms[head["_id"]] = set(head.get("parts") or [])
    ranges = _ranges(done, cases)
    started, first = time.perf_counter(), done
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1) as pool:
        coming = [loop.run_in_executor(pool, prepare, r, cases, emails) for r in ranges[:2]]
        for at, numbers in enumerate(ranges):
            ready = await coming[at]
            if at + 2 < len(ranges):
                coming.append(loop.run_in_executor(pool, prepare, ranges[at + 2], cases, emails))
            await write_bucket(db, ready, marks, terms)
            done = numbers[-1]
            await db["bench_load"].replace_one(
                {"_id": "progress"},
                {"cases": done, "of": cases, "emails": emails, "at": datetime.now(UTC)},
                upsert=True,
            )
            rate = (done - first) / (time.perf_counter() - started)
            print(f"  {done} cases loaded ({rate:.0f} cases/s with their emails)", flush=True)


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
    parser.add_argument("--resume", action="store_true", help="continue a load stopped part way")
    args = parser.parse_args()

    async def run(url: str) -> None:
        client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True)
        started = time.perf_counter()
        await load(client[args.database], args.cases, args.emails, resume=args.resume)
        print(
            f"loaded {args.cases} cases, {args.emails} emails in "
            f"{time.perf_counter() - started:.0f} s"
        )
        await client.close()

    if args.mongodb_url:
        asyncio.run(run(args.mongodb_url))
        return 0
    with backends(Path(".local")) as found:
        asyncio.run(run(found.mongodb_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
