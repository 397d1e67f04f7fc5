"""Closed-case policies, preferred agents and automatic answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address

from .conftest import Threading


async def _closed_case(t: Threading, service: str = "support") -> tuple[dict[str, Any], str]:
    mailbox = f"{service}@acme.example"
    first = await t.file(t.mail(service=service, mailbox=mailbox))
    number = first["case_number"]
    await t.assign(number, "a1", service=service)
    reply = await t.command(c.ReplyToCase(case_number=number, agent_id="a1", text="Done."))
    assert reply.ok, reply.error
    final = {"support": "Resolved", "sales": "Order placed", "billing": "Paid"}[service]
    # Supervisors may act without holding the case.
    closed = await t.command(
        c.CloseCase(case_number=number, agent_id="sup", acting_role="supervisor", disposition=final)
    )
    assert closed.ok, closed.error
    assert (await t.case(number))["status"] == "closed"
    return first, reply.result["thread_id"]


async def test_reopen_within_the_configured_days(threading: Threading) -> None:
    t = threading
    first, thread_id = await _closed_case(t)
    number = first["case_number"]
    follow = await t.file(t.mail(subject=f"Re: Printer broken [Ref:{thread_id}]"))
    assert follow["case_number"] == number and follow["intake"]["action"] == "reopened"
    case = await t.case(number)
    assert case["status"] == "open" and case["closed_at"] is None
    route = (await t.drain("route"))[-1]
    assert route["reason"] == "follow_up" and route["preferred_agent_id"] == "a1"
    assert route["interaction_id"] == f"case-{number}.2"
    names = [e["_name"] for e in await t.drain("events")]
    assert "case.reopened" in names and "case.closed" in names


async def test_after_the_reopen_window_a_new_linked_case(threading: Threading) -> None:
    t = threading
    first, thread_id = await _closed_case(t)
    number = first["case_number"]
    await t.store.cases.update_one(
        {"_id": number}, {"$set": {"closed_at": datetime.now(UTC) - timedelta(days=30)}}
    )
    follow = await t.file(t.mail(subject=f"Re: Printer broken [Ref:{thread_id}]"))
    assert follow["case_number"] != number and follow["intake"]["action"] == "linked"
    assert (await t.case(number))["status"] == "closed"
    assert (await t.case(follow["case_number"]))["linked_cases"] == [number]


async def test_new_linked_policy(threading: Threading) -> None:
    t = threading
    first, _ = await _closed_case(t, "sales")
    out = [e async for e in t.store.emails.find({"case_number": first["case_number"]})]
    ours = next(e for e in out if e["direction"] == "outbound")
    follow = await t.file(
        t.mail(service="sales", subject="Re: anything", in_reply_to=ours["message_id"])
    )
    assert follow["intake"]["action"] == "linked"
    assert follow["case_number"] != first["case_number"]


async def test_reject_policy_answers_automatically_and_keeps_the_case_closed(
    threading: Threading,
) -> None:
    t = threading
    first, thread_id = await _closed_case(t, "billing")
    number = first["case_number"]
    before = len(await t.drain("outbound"))
    follow = await t.file(
        t.mail(
            service="billing",
            mailbox="billing@acme.example",
            subject=f"Re: invoice [Ref:{thread_id}]",
        )
    )
    assert follow["case_number"] == number and follow["intake"]["action"] == "rejected"
    assert (await t.case(number))["status"] == "closed"
    outbound = await t.drain("outbound")
    assert len(outbound) == before + 1
    answer = outbound[-1]
    assert answer["automatic"] is True
    assert f"Case {number} is closed" in answer["subject"] or str(number) in answer["text"]
    assert answer["in_reply_to"] == follow["message_id"]
    # An auto-reply to the closed case is filed without any answer or reopening.
    auto = await t.file(
        t.mail(service="billing", subject=f"Auto: [Ref:{thread_id}]", classification="auto_reply")
    )
    assert auto["intake"]["action"] == "recorded"
    assert len(await t.drain("outbound")) == before + 1


async def test_auto_ack_is_rate_limited_and_never_to_no_reply(threading: Threading) -> None:
    t = threading
    acks = []
    for i in range(3):
        mail = await t.file(
            t.mail(service="billing", mailbox="billing@acme.example", subject=f"Invoice {i}")
        )
        acks.append(mail["intake"]["auto_answer"])
    assert acks == ["auto_ack", "auto_ack", None]  # limit 2 per recipient per hour
    noreply = await t.file(
        t.mail(service="billing", sender=Address(address="no-reply@shop.example"), subject="x")
    )
    assert noreply["intake"]["auto_answer"] is None
    daemon = await t.file(
        t.mail(
            service="billing",
            sender=Address(address="mailer-daemon@shop.example"),
            subject="y",
            classification="bounce",
        )
    )
    assert daemon["intake"]["auto_answer"] is None
    outbound = await t.drain("outbound")
    assert len(outbound) == 2
    first_ack = outbound[0]
    assert first_ack["automatic"] is True and "[Ref:" in first_ack["subject"]
    ack_doc = await t.store.get_email(first_ack["internet_message_id"].strip("<>"))
    assert ack_doc is not None
    case = await t.case(ack_doc["case_number"])
    assert case["thread_id"] and case["thread_id"] in first_ack["subject"]
    # The customer's answer to the acknowledgement threads into the case.
    follow = await t.file(t.mail(service="billing", subject=f"Re: {first_ack['subject']}"))
    assert follow["case_number"] == case["_id"]
