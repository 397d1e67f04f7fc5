"""Timers kept in MongoDB: they survive a restart, and two replicas never act twice."""

from __future__ import annotations

import asyncio
import importlib.util
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchboard.contracts.campaigns import GetCampaignReport
from switchboard.dialer.app import DialerSettings, build
from switchboard.runtime.service import Runtime

_spec = importlib.util.spec_from_file_location(
    "dialer_conftest", Path(__file__).parent / "conftest.py"
)
assert _spec and _spec.loader
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


def customers(count: int) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"k{i}",
            "name": f"Customer {i}",
            "phones": [{"number": f"+1212555{i:04d}", "type": "mobile"}],
        }
        for i in range(count)
    ]


async def test_the_review_timer_fires_after_a_restart(
    dialer_settings: Callable[..., DialerSettings], routing: Any
) -> None:
    settings = dialer_settings()
    first = build(settings)
    async with first.app:
        await helpers.make_campaign(first, customers(1), review_seconds=3)

        async def held() -> Any:
            return await helpers.find_record(first.db, state="held")

        doc = await helpers.eventually(held)
        assert doc["review_due"] is not None and doc["attempts"] == []
    # the first replica is gone before the review time is over; a new one takes over
    second = build(settings)
    async with second.app:

        async def dialled() -> Any:
            found = await helpers.record_doc(second.db, doc["_id"])
            attempts = found["attempts"] if found else []
            return attempts if attempts and attempts[-1]["status"] == "ended" else None

        [attempt] = await helpers.eventually(dialled, seconds=20)
        assert attempt["automatic"] is True and attempt["agent_id"] == "agent-1"
        assert attempt["number"] == "+12125550000"
        found = await helpers.record_doc(second.db, doc["_id"])
        assert found["review_due"] is None and found["needs_disposition"] is True


async def test_two_replicas_never_offer_a_record_twice_nor_dial_it_twice(
    dialer_settings: Callable[..., DialerSettings], make_settings: Callable[..., Any]
) -> None:
    routing_runtime = Runtime("fakerouting", make_settings())
    routing = helpers.FakeRouting(routing_runtime, ["agent-1", "agent-2", "agent-3", "agent-4"])
    settings = dialer_settings(dispatch_interval_seconds=0.05, timers_interval_seconds=0.05)
    one, two = build(settings), build(settings)
    async with routing_runtime.app, one.app, two.app:
        await helpers.make_campaign(one, customers(12), review_seconds=1, preview_backlog=6)

        async def four_dialled() -> bool:
            docs = await helpers.records_now(one.db)
            return sum(1 for d in docs if d["attempt_count"] >= 1) >= 4

        await helpers.eventually(four_dialled, seconds=30)
        await asyncio.sleep(1.5)  # let any duplicate show up
        requested = Counter(r.interaction_id for r in routing.requests)
        assert requested and max(requested.values()) == 1, requested
        assigned = Counter(i for i, _ in routing.assigned)
        assert max(assigned.values()) == 1
        dialled_docs = [d for d in await helpers.records_now(one.db) if d["attempt_count"] >= 1]
        for doc in dialled_docs:
            assert len(doc["attempts"]) == 1 and doc["attempt_count"] == 1, doc["attempts"]
        # (the backlog bound across replicas is proven in test_hopper.py)
        dialled = len(dialled_docs)
        report = await helpers.ok(two, GetCampaignReport(campaign_id="spring"))
        assert report["attempts"] == dialled and report["records"] == 12
