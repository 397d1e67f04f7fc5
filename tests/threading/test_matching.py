"""Matching inbound mail to cases: tags, hidden header, Message-IDs, and what never matches."""

from __future__ import annotations

import uuid

from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address
from switchboard.threading.threadids import ThreadIds

from .conftest import Threading


async def _replied_case(t: Threading, **mail: object) -> tuple[dict, dict, str]:
    first = await t.file(t.mail(**mail))
    number = first["case_number"]
    await t.assign(number, "a1", service=first["service"])
    answer = await t.command(c.ReplyToCase(case_number=number, agent_id="a1", text="Hello Ann"))
    assert answer.ok, answer.error
    out = await t.store.get_email(answer.result["email_id"])
    assert out is not None
    return first, out, answer.result["thread_id"]


async def test_subject_stripped_but_references_kept(threading: Threading) -> None:
    t = threading
    first, out, _ = await _replied_case(t)
    # The customer's client dropped the tag and In-Reply-To, but kept References.
    reply = await t.file(
        t.mail(subject="Re: Printer broken", references=[first["message_id"], out["message_id"]])
    )
    assert reply["case_number"] == first["case_number"]
    assert reply["intake"]["matched_by"] == "references"
    by_parent = await t.file(t.mail(subject="no subject at all", in_reply_to=out["message_id"]))
    assert by_parent["case_number"] == first["case_number"]
    assert by_parent["intake"]["matched_by"] == "in_reply_to"


async def test_a_references_only_match_from_a_stranger_opens_a_linked_case(
    threading: Threading,
) -> None:
    t = threading
    first, out, _ = await _replied_case(t)
    stranger = await t.file(
        t.mail(
            sender=Address(name="Eve", address="eve@elsewhere.example"),
            subject="Re: Printer broken",
            references=[out["message_id"]],
        )
    )
    assert stranger["case_number"] != first["case_number"]
    assert stranger["intake"]["action"] == "linked"
    new_case = await t.case(stranger["case_number"])
    old_case = await t.case(first["case_number"])
    assert new_case["linked_cases"] == [first["case_number"]]
    assert stranger["case_number"] in old_case["linked_cases"]


async def test_forged_truncated_foreign_tags_and_bare_numbers_never_attach(
    threading: Threading,
) -> None:
    t = threading
    first, _, thread_id = await _replied_case(t)
    number = first["case_number"]
    foreign = ThreadIds(b"some-other-deployment-key-0000").mint()
    forged = thread_id[:8] + ("AAAA" if thread_id[8:] != "AAAA" else "BBBB")
    subjects = [
        f"Re: Printer broken [Ref:{forged}]",
        f"Re: Printer broken [Ref:{thread_id[:-1]}]",
        f"Re: Printer broken [Ref:{foreign}]",
        f"Re: Printer broken [Ticket#{number}]",
        f"Re: Printer broken case {number}",
        f"Re: Printer broken {thread_id}",  # the id without the tag form
    ]
    for subject in subjects:
        mail = await t.file(t.mail(subject=subject))
        assert mail["case_number"] != number, subject
        assert mail["intake"]["action"] == "created", subject
    # A forged hidden header does not attach either; a genuine one does.
    forged_header = await t.file(t.mail(subject="Hi", thread_header=forged))
    assert forged_header["case_number"] != number
    genuine = await t.file(t.mail(subject="Hi", thread_header=thread_id))
    assert genuine["case_number"] == number and genuine["intake"]["matched_by"] == "header"


async def test_the_same_message_id_through_two_mailboxes_is_one_email(threading: Threading) -> None:
    t = threading
    message_id = f"<{uuid.uuid4().hex}@customer.example>"
    one = t.mail(internet_message_id=message_id, mailbox="support@acme.example")
    two = t.mail(internet_message_id=message_id, mailbox="info@acme.example")
    filed = await t.file(one)
    await t.send(two)
    await t.send(one)  # and a plain redelivery

    async def both_copies() -> bool:
        doc = await t.store.get_email(message_id.strip("<>"))
        return bool(doc and len(doc["mailboxes"]) == 2)

    from .conftest import eventually

    await eventually(both_copies)
    assert await t.store.emails.count_documents({}) == 1
    assert await t.store.cases.count_documents({}) == 1
    assert len([r for r in await t.drain("route")]) == 1
    case = await t.case(filed["case_number"])
    assert case["email_keys"] == [message_id.strip("<>")]


async def test_header_placement_puts_the_id_in_a_hidden_header(threading: Threading) -> None:
    t = threading
    _, out, thread_id = await _replied_case(t, service="sales", mailbox="sales@acme.example")
    [request] = [o for o in await t.drain("outbound") if o["outbound_id"] == out["outbound_id"]]
    assert request["extra_headers"] == {"X-Switchboard-Thread": thread_id}
    assert thread_id not in request["subject"]
    assert request["sender"]["address"] == "sales@acme.example"


async def test_bounces_and_auto_replies_never_reopen_and_a_bounce_is_recorded(
    threading: Threading,
) -> None:
    t = threading
    first, out, thread_id = await _replied_case(t)
    number = first["case_number"]
    auto = await t.file(
        t.mail(
            subject=f"Out of office: Re: Printer broken [Ref:{thread_id}]",
            classification="auto_reply",
        )
    )
    assert auto["case_number"] == number and auto["intake"]["action"] == "recorded"
    bounce = await t.file(
        t.mail(
            sender=Address(address="MAILER-DAEMON@mx.customer.example"),
            subject="Undelivered Mail Returned to Sender",
            classification="bounce",
            bounced_message_id=out["message_id"],
        )
    )
    assert bounce["case_number"] == number and bounce["intake"]["matched_by"] == "bounced_message"
    bounced = await t.store.get_email(out["_id"])
    assert bounced is not None and bounced["delivery"]["status"] == "bounced"
    assert bounced["delivery"]["detail"] == bounce["_id"]
    case = await t.case(number)
    assert case["interaction"]["state"] == "ended"  # no new routing for either
