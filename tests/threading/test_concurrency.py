"""Case numbers under concurrency: never duplicated, never two cases for one email."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from switchboard.contracts import cases as c
from switchboard.contracts.mail import EmailSent
from switchboard.threading.app import ThreadingSettings, build

from .conftest import Sinks, Threading, eventually


async def test_a_hundred_concurrent_new_mails_get_a_hundred_distinct_numbers(
    threading: Threading,
) -> None:
    t = threading
    mails = [t.mail(subject=f"Request {i}") for i in range(100)]
    await asyncio.gather(*(t.send(m) for m in mails))

    async def all_filed() -> bool:
        return await t.store.cases.count_documents({}) == 100

    await eventually(all_filed, seconds=150)
    numbers = [d["_id"] async for d in t.store.cases.find({}, {"_id": 1})]
    assert len(set(numbers)) == 100
    assert min(numbers) >= 14355
    emails = [d async for d in t.store.emails.find({}, {"case_number": 1})]
    assert len({e["case_number"] for e in emails}) == 100


async def test_two_replicas_on_one_stream_never_create_two_cases_for_one_email(
    threading_settings: Callable[..., ThreadingSettings], sinks: Sinks
) -> None:
    settings = threading_settings(prefetch=8)
    first, second = build(settings), build(settings)
    async with first.app, second.app:
        t = Threading(first, sinks)
        messages: list[Any] = []
        for i in range(20):
            message_id = f"<{uuid.uuid4().hex}@customer.example>"
            # Each mail reached two mailboxes (two distinct events, one Message-ID) ...
            messages.append(t.mail(internet_message_id=message_id, subject=f"Mail {i}"))
            messages.append(
                t.mail(internet_message_id=message_id, subject=f"Mail {i}", mailbox="b@x.example")
            )
        # ... and every event is delivered twice.
        sends = [first.bus.publish(m) for m in messages] + [second.bus.publish(m) for m in messages]
        await asyncio.gather(*sends)

        async def settled() -> bool:
            if await t.store.emails.count_documents({}) != 20:
                return False
            docs = [d async for d in t.store.emails.find({})]
            return all(len(d["mailboxes"]) == 2 for d in docs)

        await eventually(settled, seconds=120)
        await asyncio.sleep(0.5)
        assert await t.store.cases.count_documents({}) == 20
        numbers = [d["case_number"] async for d in t.store.emails.find({})]
        assert len(set(numbers)) == 20
        routes = await sinks.drain("route")
        assert len({r["interaction_id"] for r in routes}) == 20
        assert len({r["message_id"] for r in routes}) == 20  # no second, different request


async def test_the_counter_starts_where_configured_and_only_moves_up(
    threading_settings: Callable[..., ThreadingSettings], sinks: Sinks
) -> None:
    runtime = build(threading_settings(case_number_start=500))
    async with runtime.app:
        t = Threading(runtime, sinks)
        assert (await t.file(t.mail()))["case_number"] == 500
    lower = build(threading_settings(case_number_start=100))
    async with lower.app:
        t = Threading(lower, sinks)
        assert (await t.file(t.mail()))["case_number"] == 501


async def test_concurrent_updates_of_one_draft_lose_nothing(threading: Threading) -> None:
    t = threading
    number = (await t.held_case())["case_number"]
    saved = await t.command(
        c.SaveDraft(case_number=number, agent_id="a1", content=c.Composition(text="v1"))
    )
    draft_id = saved.result["draft_id"]

    def update(text: str, expected: int | None) -> c.UpdateDraft:
        return c.UpdateDraft(
            case_number=number,
            agent_id="a1",
            draft_id=draft_id,
            expected_version=expected,
            content=c.Composition(text=text),
        )

    # Both tabs read version 1 and save: exactly one wins, the others are told.
    guarded = await asyncio.gather(*(t.command(update(f"tab {i}", 1)) for i in range(6)))
    winners = [o for o in guarded if o.ok]
    assert len(winners) == 1 and winners[0].result["version"] == 2
    assert all(o.error is not None and o.error.code == "stale_draft" for o in guarded if not o.ok)
    draft = await t.store.get_draft(draft_id)
    assert draft is not None and draft["version"] == 2
    winner_text = guarded.index(winners[0])
    assert draft["content"]["text"] == f"tab {winner_text}"

    # Without a version: every save is applied as its own next version, none overwritten
    # unseen (each answer names the version its content became).
    unguarded = await asyncio.gather(*(t.command(update(f"save {i}", None)) for i in range(6)))
    assert all(o.ok for o in unguarded), [o.error for o in unguarded]
    versions = sorted(o.result["version"] for o in unguarded)
    assert versions == list(range(3, 9))
    draft = await t.store.get_draft(draft_id)
    assert draft is not None and draft["version"] == 8
    last = next(i for i, o in enumerate(unguarded) if o.result["version"] == 8)
    assert draft["content"]["text"] == f"save {last}"


async def test_delivery_news_written_while_masking_runs_is_kept(threading: Threading) -> None:
    t = threading
    secret = "Password: Tr0ub4dor&3-horse"

    async def prepared() -> tuple[int, dict[str, Any], dict[str, Any]]:
        first = await t.held_case(text=f"Here: {secret} thanks")
        number = first["case_number"]
        # The reply quotes the secret: masking rewrites the outbound email too.
        reply = await t.command(
            c.ReplyToCase(case_number=number, agent_id="a1", text=f"> {secret}\nOK", finish=False)
        )
        assert reply.ok, reply.error
        out = await t.store.get_email(reply.result["email_id"])
        assert out is not None
        return number, first, out

    cases = [await prepared() for _ in range(4)]

    async def mask(number: int, first: dict[str, Any]) -> None:
        start = first["text"].index(secret)
        span = c.MaskSpan(email_id=first["_id"], start=start, end=start + len(secret))
        masked = await t.command(c.MaskCaseData(case_number=number, agent_id="a1", spans=[span]))
        assert masked.ok, masked.error

    async def sent(out: dict[str, Any]) -> None:
        await t.handlers.on_email_sent(
            EmailSent(
                outbound_id=out["outbound_id"],
                internet_message_id=out["message_id"],
                relay_reply="250 ok",
            )
        )

    async def another_copy(first: dict[str, Any]) -> None:
        # Another raw copy of the inbound mail arrives (another mailbox) at the same moment.
        await t.store.add_copy(first["_id"], "raw-copy-2", "other@acme.example")

    await asyncio.gather(
        *(mask(n, f) for n, f, _ in cases),
        *(sent(o) for _, _, o in cases),
        *(another_copy(f) for _, f, _ in cases),
    )
    for _, first, out in cases:
        stored_out = await t.store.get_email(out["_id"])
        stored_in = await t.store.get_email(first["_id"])
        assert stored_out is not None and stored_in is not None
        assert stored_out["delivery"]["status"] == "sent"  # not undone by the masking
        assert secret not in stored_out["text"] and "> ****" in stored_out["text"]
        assert secret not in stored_in["text"] and stored_in["masked"][-1]["by"] == "a1"
        assert "other@acme.example" in stored_in["mailboxes"]  # not undone either
        assert "raw-copy-2" in stored_in["raw_email_ids"]


async def test_concurrent_edits_of_one_template_have_one_winner(threading: Threading) -> None:
    t = threading

    def edit(i: int, expected: int | None) -> c.SaveReplyTemplate:
        return c.SaveReplyTemplate(
            agent_id=f"sup{i}",
            acting_role="supervisor",
            template_id="greeting",
            name=f"Edit {i}",
            text=f"Hello {{{{ customer_name }}}} ({i})",
            expected_version=expected,
        )

    guarded = await asyncio.gather(*(t.command(edit(i, 1)) for i in range(5)))
    assert [o.ok for o in guarded].count(True) == 1
    winner = next(i for i, o in enumerate(guarded) if o.ok)
    unguarded = await asyncio.gather(*(t.command(edit(i, None)) for i in range(5)))
    assert sorted(o.result["version"] for o in unguarded) == [3, 4, 5, 6, 7]
    stored = await t.store.get_template("greeting")
    assert stored is not None and stored["version"] == 7
    last = next(i for i, o in enumerate(unguarded) if o.result["version"] == 7)
    assert stored["name"] == f"Edit {last}" and winner in range(5)
