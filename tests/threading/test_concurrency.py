"""Case numbers under concurrency: never duplicated, never two cases for one email."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

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
