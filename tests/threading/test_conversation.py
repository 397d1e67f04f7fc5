"""A customer conversation end to end, over real RabbitMQ and FerretDB."""

from __future__ import annotations

import uuid
from typing import Any

from testkit import eventually

from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address
from switchboard.contracts.routing import RouteRequested

from .conftest import Threading


async def test_a_conversation_over_several_replies(threading: Threading) -> None:
    t = threading
    first = await t.file(
        t.mail(subject="Printer broken", cc=[Address(address="bob@customer.example")])
    )
    number = first["case_number"]
    assert number == 14355
    case = await t.case(number)
    assert case["status"] == "open" and case["service"] == "support"
    assert case["contact"] == {"name": "Ann Customer", "address": "ann@customer.example"}
    [route] = await t.drain("route")
    assert route["interaction_id"] == "case-14355" and route["reason"] == "new"
    assert route["summary"]["subject"] == "Printer broken"

    await t.assign(number, "a1")
    reply = await t.request(
        c.ReplyToCase(case_number=number, agent_id="a1", text="Try turning it off.")
    )
    assert reply.ok, reply.error
    thread_id = reply.result["thread_id"]
    assert len(thread_id) == 12 and t.handlers.ids.verify(thread_id)
    [out] = await t.drain("outbound")
    assert out["subject"] == f"Re: Printer broken [Ref:{thread_id}]"
    assert out["in_reply_to"] == first["message_id"]
    assert out["references"] == [first["message_id"]]
    assert out["to"][0]["address"] == "ann@customer.example"
    assert out["sender"]["address"] == "support@acme.example"
    assert out["internet_message_id"].endswith("@acme.example>")
    [ended] = await t.drain("ended")
    assert ended["interaction_id"] == "case-14355" and ended["agent_id"] == "a1"

    # The customer answers; their client adds prefixes and mangles the tag's spacing.
    second = await t.file(
        t.mail(
            subject=f"AW: RE:  Printer broken [ Ref: {thread_id.lower()} ]",
            in_reply_to=out["internet_message_id"],
            references=[first["message_id"], out["internet_message_id"]],
            text="Did not help.",
        )
    )
    assert second["case_number"] == number
    assert second["intake"]["matched_by"] == "subject_tag"
    routes = await t.drain("route")
    assert routes[-1]["interaction_id"] == "case-14355.2"
    assert routes[-1]["reason"] == "follow_up"
    assert routes[-1]["preferred_agent_id"] == "a1"

    await t.assign(number, "a1")
    again = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", text="Replace the toner.")
    )
    assert again.ok, again.error
    assert again.result["thread_id"] == thread_id
    out2 = (await t.drain("outbound"))[-1]
    assert out2["in_reply_to"] == second["message_id"]
    assert out2["references"][-1] == second["message_id"]
    assert out2["subject"] == f"Re: Printer broken [Ref:{thread_id}]"

    third = await t.file(
        t.mail(subject=f"Re: Printer broken [Ref:{thread_id}]", text="Works now, thanks!")
    )
    assert third["case_number"] == number
    await t.assign(number, "a1")
    done = await t.command(
        c.SetDisposition(case_number=number, agent_id="a1", disposition="resolved")
    )
    assert done.ok and done.result["status"] == "closed"
    case = await t.case(number)
    assert case["status"] == "closed" and case["final_disposition"] == "Resolved"
    assert case["agents"] == ["a1"]

    view = await t.command(c.GetCaseThread(case_number=number, acting_role="supervisor"))
    assert view.ok
    emails = view.result["emails"]
    assert [e["direction"] for e in emails] == [
        "inbound",
        "outbound",
        "inbound",
        "outbound",
        "inbound",
    ]
    assert emails[0]["from"] == {"name": "Ann Customer", "address": "ann@customer.example"}
    assert emails[0]["cc"] == [{"name": "", "address": "bob@customer.example"}]
    assert emails[0]["to"][0]["address"] == "support@acme.example"
    assert emails[0]["when"] and emails[0]["subject"] == "Printer broken"
    assert emails[1]["text"] == "Try turning it off."
    assert view.result["case"]["thread_id"] == thread_id

    events = {e["_name"] for e in await t.drain("events")}
    assert {"case.created", "case.email_attached", "case.closed", "case.disposition_set"} <= events
    lookup = await t.command(c.LookUpCase(thread_id=thread_id, agent_id="a1"))
    assert lookup.ok and lookup.result["case"]["case_number"] == number
    # only for whoever may see the case (docs/security.md)
    stranger = await t.command(c.LookUpCase(thread_id=thread_id, agent_id="a9"))
    assert not stranger.ok and stranger.error is not None
    assert stranger.error.code == "no_such_case"  # as for a thread id that names no case
    assert stranger.error.message == "no case has this thread identifier"
    # Through the broker, as the gateway asks: a refusal names the field.
    late = await t.request(c.AddCaseNote(case_number=number, agent_id="a2", text="x"))
    assert not late.ok and late.error is not None and late.error.field == "case_number"
    assert late.error.code == "no_such_case"  # a2 may not see the case: not told it exists


async def test_a_crash_between_write_and_publish_loses_nothing(threading: Threading) -> None:
    t = threading
    real = t.handlers._publish_entry
    failures = {"left": 1}

    async def flaky(entry: dict) -> None:  # type: ignore[type-arg]
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("broker went away after the write")
        await real(entry)

    t.handlers._publish_entry = flaky  # type: ignore[method-assign]
    mail = await t.file(t.mail(subject="Crash test"))
    routes = await t.drain("route")
    assert [r["interaction_id"] for r in routes] == [f"case-{mail['case_number']}"]
    assert await t.store.cases.count_documents({}) == 1


def _as_stored(route: dict[str, Any]) -> dict[str, Any]:
    """A route request as the case's outbox stores it (its name and JSON body)."""
    body = {k: v for k, v in route.items() if k != "_name"}
    return {"name": RouteRequested.NAME, "body": body}


async def test_the_sweeper_publishes_an_entry_left_behind(threading: Threading) -> None:
    t = threading
    mail = await t.file(t.mail(subject="Left behind"))
    number = mail["case_number"]
    [route] = await t.drain("route")
    left = {**_as_stored(route), "command": mail["source"]}
    await t.store.cases.update_one(
        {"_id": number},
        {
            "$set": {
                "outbox": [left],
                "unpublished": True,
                "changed_at": mail["stored_at"].replace(year=2000),
            }
        },
    )

    async def swept() -> dict[str, Any] | None:
        case = await t.case(number)
        return case if not case["unpublished"] and len(await t.drain("route")) >= 2 else None

    case = await eventually(swept)  # the periodic sweep (or a call of it) found it
    assert len({r["message_id"] for r in t.sinks.seen["route"]}) == 1  # the same request
    assert case["outbox"] == []


async def test_a_case_stored_with_the_old_keyed_outbox_is_published_and_rewritten_at_start(
    threading: Threading,
) -> None:
    """A case written before the kernel's outbox (entries keyed by the handled message, flags,
    ``outbox_published``) loses nothing: what it holds unpublished goes out, what went out
    does not go again, and the answers stay for retries."""
    t = threading
    mail = await t.file(t.mail(subject="Stored the old way"))
    number = mail["case_number"]
    [route] = await t.drain("route")
    at = mail["stored_at"]
    entry = {"messages": [_as_stored(route)], "result": {"case_number": number}, "at": at}
    gone = str(uuid.uuid4())
    went_out = {**entry, "messages": [_as_stored({**route, "message_id": gone})]}
    await t.store.db["outbox_published"].insert_one({"_id": f"{number}/went-out", "at": at})
    await t.store.cases.update_one(
        {"_id": number},
        {
            "$set": {
                "outbox": {
                    mail["source"]: {**entry, "published": False},
                    "went-out": {**went_out, "published": False},
                },
                "outbox_pending": True,
            },
            "$unset": {"handled": "", "unpublished": "", "changed_at": ""},
        },
    )
    assert await t.store.migrate_keyed_outboxes(t.handlers.outbox) == 1
    routes = await t.drain("route")  # the migration published before it returned
    assert len(routes) >= 2 and {r["message_id"] for r in routes} == {route["message_id"]}
    case = await t.case(number)
    assert "outbox_pending" not in case and case["outbox"] == [] and not case["unpublished"]
    assert case["handled"][mail["source"]]["result"] == {"case_number": number}
    assert {mail["source"], "went-out"} <= set(case["handled"])
    assert "outbox_published" not in await t.store.db.list_collection_names()
    assert await t.store.migrate_keyed_outboxes(t.handlers.outbox) == 0


async def test_a_crash_after_the_email_is_stored_files_it_under_the_number_it_was_given(
    threading: Threading,
) -> None:
    """The stored email is the mail's claim on its case number: a retry after a crash between
    the email and its case finds the number there and opens that case, not a second one."""
    t = threading
    real = t.store.claim_thread_id
    failures = {"left": 1}

    async def flaky(case_number: int, mint: Any) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database went away after the email was stored")
        return await real(case_number, mint)

    t.store.claim_thread_id = flaky  # type: ignore[method-assign]
    mail = await t.file(t.mail(subject="Crash after the email", service="billing"))
    assert failures["left"] == 0, "the crash happened"
    routes = await t.drain("route")
    assert [r["interaction_id"] for r in routes] == [f"case-{mail['case_number']}"]
    assert await t.store.cases.count_documents({}) == 1
    case = await t.case(mail["case_number"])
    assert case["email_keys"][0] == mail["_id"] and case["thread_id"]
