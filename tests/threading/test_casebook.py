"""My Cases, search, contact history, cases opened by hand and work statuses (issue 20),
against real RabbitMQ and FerretDB, with a stand-in routing answering agents' services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testkit import eventually

from switchboard.contracts import Outcome
from switchboard.contracts import casebook as cb
from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address
from switchboard.contracts.queues import routing as routing_queues
from switchboard.contracts.routing import AgentServicesRequested
from switchboard.runtime.errors import Refused
from switchboard.runtime.service import Runtime
from switchboard.threading.case_desk import CaseDesk
from switchboard.threading.casebook import Casebook
from switchboard.threading.search_index import entry_key

from .conftest import Threading

SERVICES = {"a1": ["support"], "a2": ["sales"], "a3": ["support"]}


@pytest.fixture
async def routing_standin(make_settings: Callable[..., Any]) -> AsyncIterator[None]:
    """Routing's answer to "which services is this agent in"."""
    routing = Runtime("standin", make_settings())

    async def services(query: AgentServicesRequested) -> dict[str, Any]:
        return {"services": SERVICES.get(query.agent_id, [])}

    routing.bus.consume(routing_queues.AGENT_SERVICES, AgentServicesRequested, services)
    async with routing.app:
        yield


async def _held(t: Threading, agent_id: str, **mail: Any) -> dict[str, Any]:
    """A new case held by the agent, once its search entry says so (the entry is written
    just after the case, so a test reading it at once could be a moment early)."""
    first = await t.held_case(agent_id, **mail)

    async def indexed() -> bool:
        entry = await _book(t).entries.find_one({"_id": entry_key(first["case_number"])})
        return bool(entry and agent_id in entry["agents"])

    await eventually(indexed)
    return first


def _book(t: Threading) -> Casebook:
    book: Casebook = t.runtime.casebook  # type: ignore[attr-defined]
    return book


def _desk(t: Threading) -> CaseDesk:
    desk: CaseDesk = t.runtime.desk  # type: ignore[attr-defined]
    return desk


async def _ask(call: Any, query: Any) -> Outcome:
    try:
        return Outcome(ok=True, result=await call(query))
    except Refused as refused:
        return Outcome(ok=False, error=refused.refusal)


async def _search(t: Threading, agent: str = "a1", **criteria: Any) -> list[int]:
    role = "supervisor" if agent.startswith("sup") else "agent"
    outcome = await _ask(
        _book(t).on_search, cb.SearchCases(agent_id=agent, acting_role=role, **criteria)
    )
    assert outcome.ok, outcome.error
    return [row["case_number"] for row in outcome.result["cases"]]


def _refused(outcome: Outcome, field: str, code: str) -> None:
    assert not outcome.ok, outcome.result
    assert outcome.error is not None
    assert (outcome.error.field, outcome.error.code) == (field, code), outcome.error


async def test_my_cases_open_first_then_closed_with_new_mail_flag(threading: Threading) -> None:
    t = threading
    done = await _held(t, "a1", subject="Old invoice")
    waiting = await _held(t, "a1", subject="Printer broken")
    others = await _held(t, "a2", subject="Not mine")
    closed = await t.command(
        c.CloseCase(case_number=done["case_number"], agent_id="a1", disposition="Resolved")
    )
    assert closed.ok, closed.error

    answer = await t.request(cb.ListMyCases(agent_id="a1"))  # through the broker, as the gateway
    assert answer.ok, answer.error
    rows = answer.result["cases"]
    assert [r["case_number"] for r in rows] == [waiting["case_number"], done["case_number"]]
    first = rows[0]
    assert first["subject"] == "Printer broken"
    assert first["contact"]["address"] == "ann@customer.example"
    assert (first["service"], first["status"], first["work_status"]) == ("support", "open", "open")
    assert first["new_mail_waiting"] is True
    assert rows[1]["status"] == "closed" and rows[1]["new_mail_waiting"] is False
    assert others["case_number"] not in [r["case_number"] for r in rows]

    paged = await t.request(cb.ListMyCases(agent_id="a1", page_size=1, page=2))
    assert paged.ok and [r["case_number"] for r in paged.result["cases"]] == [done["case_number"]]
    assert paged.result["has_more"] is False
    beyond = await t.request(cb.ListMyCases(agent_id="a1", page_size=1, page=3))
    _refused(beyond, "page", "bad_page")


async def test_search_by_every_criterion_within_what_the_agent_may_see(
    threading: Threading, routing_standin: None
) -> None:
    t = threading
    support = await _held(
        t,
        "a3",
        subject="Toner cartridge leaking",
        text="The magenta cartridge leaks everywhere.",
        sender=Address(name="Zoë Müller", address="Zoe@Example.org"),
    )
    sales = await _held(
        t,
        "a2",
        subject="Quote for toner",
        text="Please quote twelve magenta cartridges.",
        service="sales",
        mailbox="sales@acme.example",
    )
    s, q = support["case_number"], sales["case_number"]

    # words anywhere, folded: a1 is in support, so finds the support case of a3, not sales
    assert await _search(t, "a1", text="MAGENTA cartridge") == [s]
    assert await _search(t, "supervisor-1", text="magenta") == [q, s]
    assert await _search(t, "a2", text="magenta") == [q]
    assert await _search(t, "a1", subject="leaking toner") == [s]
    assert await _search(t, "a1", subject="everywhere") == []  # body word, not subject
    assert await _search(t, "a1", contact="zoe@example.org") == [s]
    assert await _search(t, "a1", contact="zoe muller") == [s]
    assert await _search(t, "a1", case_number=s) == [s]
    assert await _search(t, "a1", case_number=q) == []  # exists, but not a1's to find
    assert await _search(t, "supervisor-1", service="sales", text="magenta") == [q]
    assert await _search(t, "supervisor-1", status="open", text="magenta") == [q, s]

    reply = await t.command(
        c.ReplyToCase(case_number=s, agent_id="a3", text="Sorry about it.", disposition="Resolved")
    )
    assert reply.ok, reply.error
    assert await _search(t, "a1", thread_id=reply.result["thread_id"].lower()) == [s]
    assert await _search(t, "a1", disposition="resolved", text="magenta") == [s]
    assert await _search(t, "a1", status="closed", text="magenta") == [s]
    now = datetime.now(UTC)
    assert await _search(t, "a1", text="magenta", since=now - timedelta(minutes=5)) == [s]
    assert await _search(t, "a1", text="magenta", until=now - timedelta(minutes=5)) == []

    preview = await _ask(_book(t).on_search, cb.SearchCases(agent_id="a1", case_number=s))
    row = preview.result["cases"][0]
    assert row["preview"] == "Sorry about it."  # the last message of the case
    assert row["new_mail_waiting"] is False


async def test_bad_search_input_names_the_field(threading: Threading) -> None:
    t = threading
    book = _book(t)
    now = datetime.now(UTC)
    _refused(
        await _ask(
            book.on_search,
            cb.SearchCases(agent_id="s", acting_role="supervisor", service="nowhere"),
        ),
        "service",
        "unknown_service",
    )
    _refused(
        await _ask(
            book.on_search,
            cb.SearchCases(agent_id="s", acting_role="supervisor", since=now, until=now),
        ),
        "until",
        "bad_period",
    )
    _refused(
        await _ask(
            book.on_search,
            cb.SearchCases(agent_id="s", acting_role="supervisor", status="sleeping"),
        ),
        "status",
        "unknown_status",
    )
    _refused(
        await _ask(
            book.on_search, cb.SearchCases(agent_id="s", acting_role="supervisor", text="the")
        ),
        "text",
        "bad_words",
    )
    _refused(
        await _ask(
            book.on_search,
            cb.SearchCases(agent_id="s", acting_role="supervisor", text="zzqx", page=2),
        ),
        "page",
        "bad_page",
    )


async def test_masked_words_are_never_found(threading: Threading, routing_standin: None) -> None:
    t = threading
    secret = "Password hunter2swordfish"
    first = await _held(t, "a1", text=f"Hello, my {secret} please reset it.")
    number = first["case_number"]
    assert await _search(t, "a1", text="hunter2swordfish") == [number]
    start = first["text"].index("hunter2swordfish")
    masked = await t.command(
        c.MaskCaseData(
            case_number=number,
            agent_id="a1",
            spans=[c.MaskSpan(email_id=first["_id"], start=start, end=start + 16)],
        )
    )
    assert masked.ok, masked.error
    assert await _search(t, "a1", text="hunter2swordfish") == []
    assert await _search(t, "a1", text="reset") == [number]  # the rest is still found


async def test_contact_history_by_address_and_by_participants(threading: Threading) -> None:
    t = threading
    older = await _held(t, "a1", subject="First question")
    cc = [Address(name="Bob Colleague", address="bob@customer.example")]
    newer = await _held(t, "a1", subject="Second question", cc=cc)
    bobs = await _held(
        t, "a2", subject="Bob asks", sender=Address(name="Bob", address="bob@customer.example")
    )
    book = _book(t)
    by_address = await _ask(
        book.on_contact_history,
        cb.GetContactHistory(
            agent_id="s", acting_role="supervisor", address="ANN@customer.example"
        ),
    )
    assert [r["case_number"] for r in by_address.result["cases"]] == [
        newer["case_number"],
        older["case_number"],
    ]
    by_case = await _ask(
        book.on_contact_history,
        cb.GetContactHistory(
            agent_id="s", acting_role="supervisor", case_number=newer["case_number"]
        ),
    )
    assert [r["case_number"] for r in by_case.result["cases"]] == [
        bobs["case_number"],
        newer["case_number"],
        older["case_number"],
    ]
    _refused(
        await _ask(book.on_contact_history, cb.GetContactHistory(agent_id="s")),
        "address",
        "missing",
    )


async def test_copies_of_one_open_by_hand_command_open_one_case_under_one_number(
    threading: Threading, routing_standin: None
) -> None:
    """A redelivered command (or two copies at once, after a lease ran out) finds the case it
    opened: the same number, never a second case."""
    t = threading
    command = cb.OpenCaseByHand(
        agent_id="a1",
        service="support",
        contact=Address(name="Dora Phone", address="dora@customer.example"),
        subject="Called twice",
        note="Customer phoned.",
    )
    desk = CaseDesk(t.handlers)
    answers = await asyncio.gather(*(desk.on_open_by_hand(command) for _ in range(3)))
    again = await desk.on_open_by_hand(command)

    numbers = {a["case_number"] for a in [*answers, again]}
    assert len(numbers) == 1
    cases = [d async for d in t.store.cases.find({"origin": "by_hand"})]
    assert [d["_id"] for d in cases] == sorted(numbers)
    assert len((await t.case(cases[0]["_id"]))["notes"]) == 1


async def test_a_case_opened_by_hand_is_numbered_routed_and_worked(
    threading: Threading, routing_standin: None
) -> None:
    t = threading
    opened = await t.request(
        cb.OpenCaseByHand(
            agent_id="a1",
            service="support",
            contact=Address(name="Carla Phone", address="carla@customer.example"),
            subject="Called about her delivery",
            note="Customer phoned: parcel not delivered, promised a written answer.",
        )
    )
    assert opened.ok, opened.error
    number = opened.result["case_number"]
    assert number >= 14355 and opened.result["thread_id"]
    routes = [r for r in await t.drain("route") if r["summary"]["case_number"] == number]
    assert routes and routes[0]["personal_agent_id"] == "a1"
    created = [e for e in await t.drain("events") if e.get("case_number") == number]
    assert any(e.get("origin") == "by_hand" for e in created)
    case = await t.case(number)
    assert case["notes"][0]["text"].startswith("Customer phoned")

    await t.assign(number, "a1")
    reply = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", text="Written.", finish=False)
    )
    assert reply.ok, reply.error
    outbound = [o for o in await t.drain("outbound") if o.get("case_number") == number]
    assert outbound and outbound[0]["to"][0]["address"] == "carla@customer.example"
    assert await _search(t, "a1", text="parcel delivered") == [number]
    closed = await t.command(c.CloseCase(case_number=number, agent_id="a1", disposition="Resolved"))
    assert closed.ok, closed.error


async def test_pending_status_pauses_the_clock_until_the_customer_writes(
    threading: Threading,
) -> None:
    t = threading
    first = await _held(t, "a1", subject="Need the serial number")
    number = first["case_number"]
    desk = _desk(t)
    _refused(
        await _ask(
            desk.on_set_status,
            cb.SetCaseStatus(case_number=number, agent_id="a1", status="snoozing"),
        ),
        "status",
        "unknown_status",
    )
    _refused(
        await _ask(
            desk.on_set_status,
            cb.SetCaseStatus(case_number=number, agent_id="a2", status="pending customer"),
        ),
        "case_number",
        "no_such_case",  # a case another agent may not see answers as one that is not there
    )
    paused = await t.request(
        cb.SetCaseStatus(case_number=number, agent_id="a1", status="Pending customer")
    )
    assert paused.ok, paused.error
    assert paused.result == {
        "case_number": number,
        "work_status": "pending customer",
        "paused": True,
    }
    case = await t.case(number)
    assert case["sla_pauses"][0]["until"] is None
    assert await _search(t, "supervisor-1", status="pending customer") == [number]

    await t.file(t.mail(subject="Re: Need the serial number", in_reply_to=first["message_id"]))
    case = await t.case(number)
    assert case["work_status"] == "open"
    assert case["sla_pauses"][0]["until"] is not None
    changes = [e for e in await t.drain("events") if e.get("to_status")]
    assert [(e["from_status"], e["to_status"], e["pending"]) for e in changes] == [
        ("open", "pending customer", True),
        ("pending customer", "open", False),
    ]


async def test_a_pending_case_closed_then_reopened_has_no_pause_left_open(
    threading: Threading,
) -> None:
    t = threading
    first = await _held(t, "a1", subject="Where is my refund")
    number = first["case_number"]
    paused = await t.request(
        cb.SetCaseStatus(case_number=number, agent_id="a1", status="Pending customer")
    )
    assert paused.ok, paused.error
    closed = await t.command(c.CloseCase(case_number=number, agent_id="a1", disposition="Resolved"))
    assert closed.ok, closed.error
    case = await t.case(number)
    assert case["status"] == "closed"
    [pause] = case["sla_pauses"]
    assert pause["until"] == case["closed_at"]  # the clock stopped for good at the closing

    await t.file(t.mail(subject="Re: Where is my refund", in_reply_to=first["message_id"]))
    case = await t.case(number)
    assert case["status"] == "open" and case["work_status"] == "open"
    assert [p["until"] is not None for p in case["sla_pauses"]] == [True]
