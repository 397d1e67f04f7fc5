"""The search postings against a real MongoDB-protocol server: results across buckets of case
numbers in exact last-activity order, postings following a case that changes (closed, moved to
another service, masked, a new subject, status or holder) in one write command per change,
concurrent changes in one bucket, My Cases from the agent's document, and a rebuild (also at
start, for an index of an older layout) giving the same answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from switchboard.app.localstack import Backends
from switchboard.contracts import casebook as cb
from switchboard.threading import postings as p
from switchboard.threading.casebook import Casebook
from switchboard.threading.domain.cases import new_case
from switchboard.threading.search_index import INDEX, CaseIndex

Document = dict[str, Any]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# one case in each of three buckets of case numbers, and a second in the newest
OLD, MIDDLE, NEW, NEWER = 7, p.BUCKET + 3, 2 * p.BUCKET + 5, 2 * p.BUCKET + 9


class AgentBook(Casebook):
    """The real queries; agents' services given here instead of asked of routing."""

    async def _services(self, agent_id: str) -> list[str]:
        return {"a1": ["support"], "a2": ["sales"]}.get(agent_id, [])


@pytest.fixture
async def db(real_servers: Backends) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(real_servers.mongodb_url, tz_aware=True)
    name = f"t{uuid.uuid4().hex[:10]}_postings"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def _file(
    db: AsyncDatabase[Document],
    number: int,
    *,
    text: str,
    active: datetime,
    service: str = "support",
    agent: str = "a1",
) -> None:
    case = new_case(
        number,
        service=service,
        subject=f"Case {number}",
        contact={"name": "Ann Lee", "address": "ann@customer.example"},
        origin="email",
        linked_to=None,
        first_email=f"m{number}",
        agent_id=agent,
    )
    case |= {"email_keys": [f"m{number}"], "created_at": T0, "updated_at": active}
    await db["cases"].insert_one(case)
    await db["emails"].insert_one(
        {"_id": f"m{number}", "case_number": number, "text": text, "when": T0}
    )
    await CaseIndex(db).refresh(number)


async def _change(db: AsyncDatabase[Document], number: int, **fields: Any) -> None:
    await db["cases"].update_one({"_id": number}, {"$set": fields})
    await CaseIndex(db).refresh(number)


async def _search(db: AsyncDatabase[Document], agent: str = "sup", **criteria: Any) -> list[int]:
    role = "supervisor" if agent == "sup" else "agent"
    book = AgentBook(CaseIndex(db), bus=None)  # type: ignore[arg-type]
    answer = await book.on_search(cb.SearchCases(agent_id=agent, acting_role=role, **criteria))
    return [row["case_number"] for row in answer["cases"]]


async def _pages(db: AsyncDatabase[Document], **criteria: Any) -> list[list[int]]:
    pages, page = [], 1
    book = AgentBook(CaseIndex(db), bus=None)  # type: ignore[arg-type]
    while True:
        answer = await book.on_search(
            cb.SearchCases(
                agent_id="sup", acting_role="supervisor", page=page, page_size=1, **criteria
            )
        )
        pages.append([row["case_number"] for row in answer["cases"]])
        if not answer["has_more"]:
            return pages
        page += 1


async def test_pages_run_across_buckets_in_last_activity_order(
    db: AsyncDatabase[Document],
) -> None:
    # the oldest case (first bucket) had the latest activity: it leads, though its bucket is
    # read last
    await _file(db, OLD, text="printer jammed", active=T0 + timedelta(hours=9))
    await _file(db, MIDDLE, text="printer toner", active=T0 + timedelta(hours=2))
    await _file(db, NEW, text="printer paper", active=T0 + timedelta(hours=5))
    await _file(db, NEWER, text="scanner", active=T0 + timedelta(hours=7))

    assert await _pages(db, text="printer") == [[OLD], [NEW], [MIDDLE]]
    assert await _search(db, text="printer") == [OLD, NEW, MIDDLE]
    assert await _search(db) == [OLD, NEWER, NEW, MIDDLE]  # no criterion: every case
    in_period = {"since": T0 + timedelta(hours=4), "until": T0 + timedelta(hours=8)}
    assert await _search(db, **in_period) == [NEWER, NEW]
    assert await _search(db, text="printer", **in_period) == [NEW]
    history = await AgentBook(CaseIndex(db), bus=None).on_contact_history(  # type: ignore[arg-type]
        cb.GetContactHistory(
            agent_id="sup", acting_role="supervisor", address="ANN@customer.example"
        )
    )
    assert [r["case_number"] for r in history["cases"]] == [NEWER, NEW, MIDDLE, OLD]


async def test_postings_follow_a_case_that_is_closed_moved_and_masked(
    db: AsyncDatabase[Document],
) -> None:
    await _file(db, OLD, text="refund for order 4411", active=T0)
    await _file(db, NEW, text="refund please", active=T0 + timedelta(hours=1))
    assert await _search(db, status="open", text="refund") == [NEW, OLD]

    await _change(db, OLD, status="closed", updated_at=T0 + timedelta(hours=3))
    assert await _search(db, status="open", text="refund") == [NEW]
    assert await _search(db, status="closed", text="refund") == [OLD]
    assert await _search(db, text="refund") == [OLD, NEW]  # its new activity moves it up

    await _change(db, NEW, service="sales", updated_at=T0 + timedelta(hours=4))
    assert await _search(db, service="support", text="refund") == [OLD]
    assert await _search(db, service="sales", text="refund") == [NEW]
    assert await _search(db, "a1", text="refund") == [NEW, OLD]  # a1 worked it: still found
    assert await _search(db, "a2", text="refund") == [NEW]  # now of a2's service
    assert await _search(db, "a3", text="refund") == []

    await db["emails"].update_one({"_id": f"m{OLD}"}, {"$set": {"text": "refund for order ****"}})
    await CaseIndex(db).refresh(OLD)
    assert await _search(db, text="4411") == []
    part = await db[INDEX].find_one({"_id": p.part_key("w:4411", "support", 0)})
    assert part is not None and OLD not in p.unpack(part["n"])  # gone from the postings too
    assert await _search(db, text="order") == [OLD]


async def test_my_cases_read_the_agents_list(db: AsyncDatabase[Document]) -> None:
    await _file(db, OLD, text="one", active=T0 + timedelta(hours=1))
    await _file(db, NEW, text="two", active=T0)
    await _file(db, NEWER, text="three", active=T0, agent="a2")
    await _change(db, OLD, status="closed")
    book = AgentBook(CaseIndex(db), bus=None)  # type: ignore[arg-type]
    mine = await book.on_my_cases(cb.ListMyCases(agent_id="a1"))
    assert [r["case_number"] for r in mine["cases"]] == [NEW, OLD]  # open first
    assert mine["cases"][1]["status"] == "closed"
    only_open = await book.on_my_cases(cb.ListMyCases(agent_id="a1", include_closed=False))
    assert [r["case_number"] for r in only_open["cases"]] == [NEW]


class WriteCommands(monitoring.CommandListener):
    """The write commands a client sends (to prove a case change is one)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update", "delete", "findAndModify"):
            self.writes.append(f"{event.command_name} {event.command.get(event.command_name)}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_case_change_is_one_write_and_the_index_follows_subject_status_and_holder(
    db: AsyncDatabase[Document], real_servers: Backends
) -> None:
    await _file(db, OLD, text="printer jammed", active=T0)
    await _file(db, NEW, text="printer toner", active=T0 + timedelta(hours=1))
    listener = WriteCommands()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        real_servers.mongodb_url, tz_aware=True, event_listeners=[listener]
    )
    try:
        watched = CaseIndex(client[db.name])
        await db["cases"].update_one(
            {"_id": OLD},
            {"$set": {"subject": "Invoice dispute", "updated_at": T0 + timedelta(hours=2)}},
        )
        await watched.refresh(OLD)
        assert listener.writes == [f"update {INDEX}"]  # one command for the whole change
    finally:
        await client.close()
    assert await _search(db, subject="invoice") == [OLD]
    assert await _search(db, subject="case") == [NEW]  # its old subject word no longer finds it
    book = AgentBook(CaseIndex(db), bus=None)  # type: ignore[arg-type]
    mine = await book.on_my_cases(cb.ListMyCases(agent_id="a1"))
    assert [(r["case_number"], r["subject"]) for r in mine["cases"]] == [
        (OLD, "Invoice dispute"),
        (NEW, f"Case {NEW}"),
    ]

    await _change(db, NEW, status="closed", work_status="closed")
    assert await _search(db, status="open") == [OLD]
    assert await _search(db, status="closed") == [NEW]
    mine = await book.on_my_cases(cb.ListMyCases(agent_id="a1"))
    assert [(r["case_number"], r["status"]) for r in mine["cases"]] == [
        (OLD, "open"),
        (NEW, "closed"),
    ]

    # held by a2 now: it is in a2's My Cases, with its holder, and a2 finds it
    await _change(
        db,
        OLD,
        agents=["a1", "a2"],
        interaction={"state": "assigned", "agent_id": "a2"},
        updated_at=T0 + timedelta(hours=3),
    )
    theirs = await book.on_my_cases(cb.ListMyCases(agent_id="a2"))
    assert [(r["case_number"], r["holder"]) for r in theirs["cases"]] == [(OLD, "a2")]
    assert await _search(db, "a3") == []
    assert OLD in await _search(db, "a2", text="printer")


async def test_changes_at_once_in_one_bucket_all_land(db: AsyncDatabase[Document]) -> None:
    numbers = list(range(20, 32))
    for number in numbers:
        await _file(db, number, text="modem", active=T0 + timedelta(minutes=number))
    for number in numbers:
        await db["cases"].update_one(
            {"_id": number},
            {"$set": {"subject": "Router offline", "updated_at": T0 + timedelta(hours=number)}},
        )
    # every change rewrites the same parts (*, st:open, s:router ...): guarded, retried
    await asyncio.gather(*(CaseIndex(db).refresh(n) for n in numbers))
    assert await _search(db, subject="router") == sorted(numbers, reverse=True)
    assert await _search(db, subject="case") == []


async def _everything(db: AsyncDatabase[Document]) -> list[Any]:
    book = AgentBook(CaseIndex(db), bus=None)  # type: ignore[arg-type]
    answers: list[Any] = []
    for agent in ("sup", "a1", "a2"):
        for criteria in ({}, {"text": "refund"}, {"status": "closed"}, {"subject": "case"}):
            answers.append(await _search(db, agent, **criteria))
    for agent in ("a1", "a2"):
        answers.append(await book.on_my_cases(cb.ListMyCases(agent_id=agent)))
    return answers


async def test_rebuild_gives_the_same_results_and_runs_at_start_for_an_older_index(
    db: AsyncDatabase[Document],
) -> None:
    index = CaseIndex(db)
    assert await index.ensure_current() is False  # at start, nothing yet: marked current
    await _file(db, OLD, text="refund for order 4411", active=T0)
    await _file(db, MIDDLE, text="refund please", active=T0 + timedelta(hours=1), agent="a2")
    await _file(db, NEW, text="where is my parcel", active=T0 + timedelta(hours=2))
    await _change(db, OLD, status="closed", updated_at=T0 + timedelta(hours=3))
    await _change(db, NEW, service="sales", updated_at=T0 + timedelta(hours=4))
    before = await _everything(db)
    entries = await db[INDEX].find({"number": {"$exists": True}}).to_list()

    assert await index.ensure_current() is False
    assert await index.rebuild() == 3
    assert await _everything(db) == before
    assert await db[INDEX].find({"number": {"$exists": True}}).to_list() == entries

    # an index of the earlier layout (collections of their own, no layout mark) is rebuilt
    await db.drop_collection(INDEX)
    await db["case_postings"].insert_one({"_id": "*|support|0", "n": b""})
    assert await _search(db) == []
    assert await index.ensure_current() is True
    assert await _everything(db) == before
    assert "case_postings" not in await db.list_collection_names()
    assert await index.ensure_current() is False
