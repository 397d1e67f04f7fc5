"""Auto-replies and bounces: filed, never routed, whether or not they match a case."""

from __future__ import annotations

from typing import Any

from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address

from .conftest import Threading

DAEMON = Address(name="Mail Delivery System", address="MAILER-DAEMON@mx.elsewhere.example")


async def _replied_case(t: Threading) -> tuple[dict[str, Any], dict[str, Any], str]:
    first = await t.held_case()
    number = first["case_number"]
    answer = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", text="Hello Ann", finish=False)
    )
    assert answer.ok, answer.error
    out = await t.store.get_email(answer.result["email_id"])
    assert out is not None
    return first, out, answer.result["thread_id"]


def _of_case(items: list[dict[str, Any]], number: int) -> list[dict[str, Any]]:
    return [i for i in items if i.get("case_number") == number]


async def test_an_unmatched_auto_reply_is_filed_in_a_closed_case_and_not_routed(
    threading: Threading,
) -> None:
    t = threading
    auto = await t.file(
        t.mail(
            sender=Address(name="Bob", address="bob@elsewhere.example"),
            subject="Out of office: Spring offers",
            classification="auto_reply",
        )
    )
    number = auto["case_number"]
    assert auto["intake"]["action"] == "created" and auto["intake"]["auto_answer"] is None
    case = await t.case(number)
    assert case["status"] == "closed" and case["filed_unrouted"] == "auto_reply"
    assert case["closed_by"] == "system" and case["closed_at"] is not None
    assert case["final_disposition"] is None
    assert case["interaction"]["state"] == "idle" and case["interaction"]["id"] is None
    assert case["email_keys"] == [auto["_id"]]
    assert case["history"][-1]["reason"] == "unmatched_automatic_mail"
    # A normal mail afterwards is routed: the route sink is live, it just got nothing before.
    normal = await t.file(t.mail())
    routes = await t.drain("route")
    assert [r["summary"]["case_number"] for r in routes] == [normal["case_number"]]
    assert await t.drain("outbound") == []  # nobody answers an auto-reply
    events = _of_case(await t.drain("events"), number)
    created = next(e for e in events if e["_name"] == "case.created")
    closed = next(e for e in events if e["_name"] == "case.closed")
    assert created["status"] == "closed"
    assert closed["reason"] == "unmatched_automatic_mail" and closed["agent_id"] is None


async def test_an_unmatched_bounce_is_filed_closed_and_not_routed(threading: Threading) -> None:
    t = threading
    bounce = await t.file(
        t.mail(
            sender=DAEMON,
            subject="Undelivered Mail Returned to Sender",
            classification="bounce",
            bounced_message_id="<never-ours@elsewhere.example>",
        )
    )
    case = await t.case(bounce["case_number"])
    assert case["status"] == "closed" and case["filed_unrouted"] == "bounce"
    assert bounce["intake"]["matched_by"] == ""
    assert await t.drain("route") == []
    # The operator's query for automatic mail nobody matched:
    found = [d["_id"] async for d in t.store.cases.find({"filed_unrouted": {"$ne": None}})]
    assert found == [bounce["case_number"]]


async def test_automatic_mail_from_a_stranger_by_references_is_a_linked_closed_case(
    threading: Threading,
) -> None:
    t = threading
    first, out, _ = await _replied_case(t)
    routes_before = len(await t.drain("route"))
    auto = await t.file(
        t.mail(
            sender=Address(name="Eve", address="eve@elsewhere.example"),
            subject="Automatic reply: Re: Printer broken",
            references=[out["message_id"]],
            classification="auto_reply",
        )
    )
    assert auto["case_number"] != first["case_number"]
    assert auto["intake"]["action"] == "linked"
    new_case = await t.case(auto["case_number"])
    assert new_case["status"] == "closed" and new_case["filed_unrouted"] == "auto_reply"
    assert new_case["linked_cases"] == [first["case_number"]]
    assert len(await t.drain("route")) == routes_before


async def test_automatic_mail_matching_a_case_is_attached_and_never_reroutes(
    threading: Threading,
) -> None:
    t = threading
    first, out, thread_id = await _replied_case(t)
    number = first["case_number"]
    routes_before = len(await t.drain("route"))
    held = (await t.case(number))["interaction"]
    assert held["state"] == "assigned"
    # While the agent holds the case: recorded, the holder keeps it.
    auto = await t.file(
        t.mail(
            subject=f"Out of office: Re: Printer broken [Ref:{thread_id}]",
            classification="auto_reply",
        )
    )
    assert auto["case_number"] == number and auto["intake"]["action"] == "recorded"
    assert (await t.case(number))["interaction"] == held
    # After the agent finished: still no new routing round.
    done = await t.command(
        c.SetDisposition(
            case_number=number, agent_id="a1", disposition="Awaiting customer", finish=True
        )
    )
    assert done.ok, done.error
    bounce = await t.file(
        t.mail(
            sender=DAEMON,
            subject="Undelivered Mail Returned to Sender",
            classification="bounce",
            bounced_message_id=out["message_id"],
        )
    )
    assert bounce["case_number"] == number and bounce["intake"]["action"] == "recorded"
    by_header = await t.file(
        t.mail(sender=DAEMON, classification="bounce", in_reply_to=out["message_id"])
    )
    assert by_header["case_number"] == number and by_header["intake"]["action"] == "recorded"
    case = await t.case(number)
    assert case["status"] == "open" and case["interaction"]["state"] == "ended"
    assert case["interaction"]["round"] == held["round"]
    assert case["filed_unrouted"] is None
    assert [auto["_id"], bounce["_id"], by_header["_id"]] == case["email_keys"][-3:]
    assert len(await t.drain("route")) == routes_before
    assert all(e["_name"] != "case.reopened" for e in await t.drain("events"))
