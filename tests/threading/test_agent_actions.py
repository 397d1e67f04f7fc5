"""Agent commands: authorisation, validation, transfer, drafts, forward, new outbound, masking."""

from __future__ import annotations

from typing import Any

from switchboard.contracts import cases as c
from switchboard.contracts.mail import OutboundAddress
from switchboard.contracts.queues import routing as routing_queues
from switchboard.contracts.routing import LiveAssignmentsRequested
from switchboard.runtime.service import Runtime

from .conftest import Threading

CARD = "4111 1111 1111 1111"


async def _held_case(t: Threading, **mail: Any) -> dict[str, Any]:
    first = await t.file(t.mail(**mail))
    await t.assign(first["case_number"], "a1", service=first["service"])
    return first


def _refused(outcome: Any, field: str, code: str | None = None) -> None:
    assert not outcome.ok, outcome.result
    assert outcome.error.field == field, outcome.error
    if code:
        assert outcome.error.code == code, outcome.error


async def test_authorisation_and_validation_refusals(threading: Threading) -> None:
    t = threading
    first = await _held_case(t)
    number = first["case_number"]
    before = await t.case(number)
    # a2 neither holds nor worked the case, nor is in its service: told it does not exist
    other = await t.command(c.ReplyToCase(case_number=number, agent_id="a2", text="Hi"))
    _refused(other, "case_number", "no_such_case")
    assert other.error.message == f"there is no case {number}"  # type: ignore[union-attr]
    _refused(
        await t.command(c.AddCaseNote(case_number=99999, agent_id="a1", text="x")),
        "case_number",
        "no_such_case",
    )
    _refused(
        await t.command(c.SetDisposition(case_number=number, agent_id="a1", disposition="Nope")),
        "disposition",
        "unknown_disposition",
    )
    _refused(
        await t.command(
            c.CloseCase(case_number=number, agent_id="a1", disposition="Awaiting customer")
        ),
        "disposition",
        "not_final",
    )
    _refused(
        await t.command(c.TransferCase(case_number=number, agent_id="a1", to_service="nowhere")),
        "to_service",
        "unknown_service",
    )
    _refused(await t.command(c.TransferCase(case_number=number, agent_id="a1")), "to_service")
    _refused(
        await t.command(c.ChangeCaseService(case_number=number, agent_id="a1", service="nowhere")),
        "service",
    )
    _refused(await t.command(c.ReplyToCase(case_number=number, agent_id="a1", text="  ")), "text")
    _refused(
        await t.command(
            c.MaskCaseData(
                case_number=number,
                agent_id="a1",
                spans=[c.MaskSpan(email_id=first["_id"], start=5, end=5000)],
            )
        ),
        "spans.0",
        "bad_span",
    )
    _refused(
        await t.command(
            c.MaskCaseData(
                case_number=number,
                agent_id="a1",
                spans=[c.MaskSpan(email_id="<not-ours@x>", start=0, end=1)],
            )
        ),
        "spans.0.email_id",
        "no_such_email",
    )
    _refused(
        await t.command(
            c.SaveDraft(case_number=number, agent_id="a2", content=c.Composition(text="x"))
        ),
        "case_number",
        "no_such_case",
    )
    after = await t.case(number)
    assert after["version"] == before["version"]  # refusals change nothing
    assert await t.drain("outbound") == []
    # A supervisor may act on a case they do not hold.
    note = await t.command(
        c.AddCaseNote(case_number=number, agent_id="sup", acting_role="supervisor", text="Check")
    )
    assert note.ok


async def test_a_refused_agent_cannot_act_after_finishing(threading: Threading) -> None:
    t = threading
    first = await _held_case(t)
    number = first["case_number"]
    done = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", text="Bye", finish=True)
    )
    assert done.ok
    late = await t.command(c.AddCaseNote(case_number=number, agent_id="a1", text="late"))
    _refused(late, "agent_id", "not_assigned")


async def test_transfer_to_a_queue_and_to_a_named_agent(threading: Threading) -> None:
    t = threading
    first = await _held_case(t)
    number = first["case_number"]
    moved = await t.command(
        c.TransferCase(case_number=number, agent_id="a1", to_service="sales", note="for sales")
    )
    assert moved.ok, moved.error
    [ended] = await t.drain("ended")
    assert ended["interaction_id"] == f"case-{number}" and ended["outcome"] == "transferred"
    route = (await t.drain("route"))[-1]
    assert route["reason"] == "transfer" and route["service"] == "sales"
    assert route["interaction_id"] == f"case-{number}.2"
    case = await t.case(number)
    assert case["service"] == "sales" and case["notes"][-1]["text"] == "for sales"
    await t.assign(number, "a3", service="sales")
    personal = await t.command(c.TransferCase(case_number=number, agent_id="a3", to_agent_id="a1"))
    assert personal.ok
    route = (await t.drain("route"))[-1]
    assert route["personal_agent_id"] == "a1" and route["interaction_id"] == f"case-{number}.3"
    assert (await t.case(number))["agents"][:2] == ["a3", "a1"]


async def test_change_service_notes_and_non_final_dispositions(threading: Threading) -> None:
    t = threading
    first = await _held_case(t)
    number = first["case_number"]
    changed = await t.command(
        c.ChangeCaseService(case_number=number, agent_id="a1", service="sales")
    )
    assert changed.ok and changed.result["service"] == "sales"
    note = await t.command(
        c.AddCaseNote(case_number=number, agent_id="a1", text="VIP", email_id=first["_id"])
    )
    assert note.ok
    keep = await t.command(
        c.ChangeCaseService(case_number=number, agent_id="a1", service="support")
    )
    assert keep.ok
    later = await t.command(
        c.SetDisposition(case_number=number, agent_id="a1", disposition="Awaiting customer")
    )
    assert later.ok and later.result["status"] == "open"
    case = await t.case(number)
    assert case["dispositions"][-1]["name"] == "Awaiting customer"
    assert case["dispositions"][-1]["email_id"] == first["_id"]
    assert case["notes"][-1]["email_id"] == first["_id"] and case["notes"][-1]["agent_id"] == "a1"
    assert case["interaction"]["state"] == "assigned"


async def test_drafts_forward_follow_up_and_new_outbound(threading: Threading) -> None:
    t = threading
    first = await _held_case(t)
    number = first["case_number"]
    saved = await t.command(
        c.SaveDraft(case_number=number, agent_id="a1", content=c.Composition(text="Draft 1"))
    )
    assert saved.ok
    draft_id = saved.result["draft_id"]
    updated = await t.command(
        c.UpdateDraft(
            case_number=number,
            agent_id="a1",
            draft_id=draft_id,
            expected_version=1,
            content=c.Composition(text="Draft 2"),
        )
    )
    assert updated.ok and updated.result["version"] == 2
    stale = await t.command(
        c.UpdateDraft(
            case_number=number,
            agent_id="a1",
            draft_id=draft_id,
            expected_version=1,
            content=c.Composition(text="Draft 3"),
        )
    )
    _refused(stale, "expected_version", "stale_draft")
    sent = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", draft_id=draft_id, finish=False)
    )
    assert sent.ok, sent.error
    assert await t.store.get_draft(draft_id) is None
    reply = (await t.drain("outbound"))[-1]
    assert reply["text"] == "Draft 2"

    other = await t.command(
        c.SaveDraft(case_number=number, agent_id="a1", content=c.Composition(text="x"))
    )
    gone = await t.command(
        c.DiscardDraft(case_number=number, agent_id="a1", draft_id=other.result["draft_id"])
    )
    assert gone.ok and await t.store.get_draft(other.result["draft_id"]) is None

    forward = await t.command(
        c.ForwardEmail(
            case_number=number,
            agent_id="a1",
            email_id=first["_id"],
            text="Please check",
            to=[OutboundAddress(name="Expert", address="expert@partner.example")],
        )
    )
    assert forward.ok, forward.error
    fwd = (await t.drain("outbound"))[-1]
    assert fwd["subject"].startswith("Fwd: Printer broken [Ref:")
    assert "Forwarded message" in fwd["text"] and first["text"] in fwd["text"]
    assert fwd["to"] == [{"name": "Expert", "address": "expert@partner.example"}]
    # The expert answers (a participant now, since we wrote to them): joins the case.
    answer = await t.file(
        t.mail(
            sender=OutboundAddress(name="Expert", address="expert@partner.example"),
            subject="Re: whatever",
            references=[fwd["internet_message_id"]],
        )
    )
    assert answer["case_number"] == number

    follow = await t.command(c.SendFollowUp(case_number=number, agent_id="a1", text="Any news?"))
    assert follow.ok
    fu = (await t.drain("outbound"))[-1]
    assert fu["to"][0]["address"] == "ann@customer.example"

    new = await t.command(
        c.SendNewOutbound(
            agent_id="a1",
            service="sales",
            subject="Your quote",
            to=[OutboundAddress(name="Carl", address="carl@customer.example")],
            text="Here it is",
        )
    )
    assert new.ok, new.error
    created = await t.case(new.result["case_number"])
    assert created["origin"] == "outbound" and created["agents"] == ["a1"]
    assert created["contact"]["address"] == "carl@customer.example"
    out = (await t.drain("outbound"))[-1]
    assert out["subject"] == "Your quote"  # sales keeps the id in a hidden header
    assert out["extra_headers"]["X-Switchboard-Thread"] == created["thread_id"]
    # Carl answers through a client that kept nothing but the header.
    carl = await t.file(
        t.mail(
            service="sales",
            subject="Re: Your quote",
            thread_header=created["thread_id"],
            sender=OutboundAddress(address="carl@customer.example"),
        )
    )
    assert carl["case_number"] == created["_id"]
    route = (await t.drain("route"))[-1]
    assert route["reason"] == "follow_up" and route["preferred_agent_id"] is None  # sales: off


async def test_masking_reaches_every_stored_copy(threading: Threading) -> None:
    t = threading
    secret = "Password: Tr0ub4dor&3-horse"
    first = await _held_case(t, text=f"My card {CARD} and {secret} please", subject=f"card {CARD}")
    number = first["case_number"]
    # Card numbers never reach storage.
    assert CARD not in first["text"] and "**** **** **** 1111" in first["text"]
    assert CARD not in first["subject"]
    assert first["html_withheld"] is True
    # The secret gets copied: a reply quoting it, a draft, a note, a query answer.
    reply = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", text=f"> {secret}\nNoted.", finish=False)
    )
    assert reply.ok
    draft = await t.command(
        c.SaveDraft(case_number=number, agent_id="a1", content=c.Composition(text=secret))
    )
    assert draft.ok
    assert (await t.command(c.AddCaseNote(case_number=number, agent_id="a1", text=secret))).ok
    # The runtime's ledger keeps the answer of a query (the thread view quotes the text).
    query = c.GetCaseThread(case_number=number, acting_role="supervisor")
    answer = await t.command(query)
    assert answer.ok and secret in repr(answer.result)
    await t.runtime.ledger.complete(
        "threading.case.thread.get", str(query.message_id), answer.model_dump(mode="json")
    )

    start = first["text"].index(secret)
    masked = await t.command(
        c.MaskCaseData(
            case_number=number,
            agent_id="a1",
            spans=[c.MaskSpan(email_id=first["_id"], start=start, end=start + len(secret))],
        )
    )
    assert masked.ok, masked.error

    async def copies() -> list[str]:
        found = []
        db = t.runtime.db
        for name in await db.list_collection_names():
            async for doc in db[name].find({}):
                if secret in repr(doc) or CARD in repr(doc):
                    found.append(f"{name}:{doc['_id']}")
        return found

    assert await copies() == []
    view = await t.command(c.GetCaseThread(case_number=number, acting_role="supervisor"))
    text = view.result["emails"][0]["text"]
    assert "*" * 8 in text and view.result["emails"][0]["html_ref"] is None
    assert view.result["emails"][0]["masked"] is True
    events = [e for e in await t.drain("events") if e["_name"] == "case.masked"]
    assert events and events[0]["email_ids"] == [first["_id"]]


async def test_only_agents_who_worked_a_case_may_read_its_thread(threading: Threading) -> None:
    t = threading
    first = await _held_case(t)
    number = first["case_number"]
    holder = await t.command(c.GetCaseThread(case_number=number, agent_id="a1"))
    stranger = await t.command(c.GetCaseThread(case_number=number, agent_id="a2"))
    supervisor = await t.command(
        c.GetCaseThread(case_number=number, agent_id="s1", acting_role="supervisor")
    )
    assert holder.ok and holder.result["emails"][0]["subject"] == first["subject"]
    _refused(stranger, "case_number", "no_such_case")  # not told that the case exists
    assert "emails" not in stranger.result
    assert supervisor.ok


async def test_an_agent_ahead_of_interaction_assigned_is_let_in_once_routing_confirms(
    threading: Threading, make_settings: Any
) -> None:
    """The desktop opens the case the moment the offer is accepted; ``interaction.assigned``
    may still be on its way to threading. Routing, which owns assignments, settles it."""
    t = threading
    first = await t.file(t.mail())
    number = first["case_number"]
    interaction = (await t.case(number))["interaction"]["id"]
    routing = Runtime("standin", make_settings())

    async def holds(query: LiveAssignmentsRequested) -> dict[str, Any]:
        return {"assignments": {"a1": [interaction]}}

    routing.bus.consume(routing_queues.LIVE_ASSIGNMENTS, LiveAssignmentsRequested, holds)
    async with routing.app:
        view = await t.request(c.GetCaseThread(case_number=number, agent_id="a1"))
        assert view.ok, view.error
        assert view.result["emails"][0]["subject"] == "Printer broken"
        stranger = await t.request(c.GetCaseThread(case_number=number, agent_id="a2"))
        _refused(stranger, "case_number", "no_such_case")
    assert (await t.case(number))["interaction"]["agent_id"] == "a1"


async def test_a_new_outbound_retried_after_a_crash_opens_one_case(
    threading: Threading, monkeypatch: Any
) -> None:
    t = threading
    command = c.SendNewOutbound(
        agent_id="a1",
        service="sales",
        subject="Your quote",
        to=[OutboundAddress(name="Carl", address="carl@customer.example")],
        text="Here it is",
    )
    real = t.store.insert_email
    calls = 0

    async def crash_once(doc: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the service died after claiming a number")
        return await real(doc)

    monkeypatch.setattr(t.store, "insert_email", crash_once)
    crashed = False
    try:
        await t.handlers.on_new_outbound(command)
    except ConnectionError:
        crashed = True
    assert crashed
    retried = await t.command(command)  # the broker redelivers it
    assert retried.ok, retried.error
    number = retried.result["case_number"]
    cases = [d async for d in t.store.cases.find({"origin": "outbound"})]
    assert [d["_id"] for d in cases] == [number]
    assert (await t.case(number))["first_email"]
