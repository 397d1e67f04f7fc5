"""Offers and their timers live in MongoDB: they survive a restart of routing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.contracts.routing import OfferAnswer, RouteRequested


async def test_live_offers_survive_a_restart_and_their_timers_still_fire(harness: Any) -> None:
    first = await harness.start()
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=6.0
    )
    await harness.agent("kept")
    await harness.agent("missed")
    for n in range(2):
        await harness.request(
            RouteRequested(interaction_id=f"case-{n}", channel="email", service="support")
        )
    offers = await harness.observer.wait_for("offer.made", count=2)
    by_agent = {o["agent_id"]: o for o in offers}
    before = await first.store.get_work(by_agent["missed"]["interaction_id"])
    await harness.stop(first)  # routing goes away with two live offers

    second = await harness.start()
    doc = await second.store.get_work(by_agent["kept"]["interaction_id"])
    assert doc["status"] == "offered"
    accepted = await harness.request(
        OfferAnswer(offer_id=by_agent["kept"]["offer_id"], agent_id="kept", accept=True)
    )
    assert accepted.ok and accepted.result["status"] == "assigned"
    [timed_out] = await harness.observer.wait_for("offer.timed_out", seconds=20)
    assert timed_out["offer_id"] == by_agent["missed"]["offer_id"]
    assert timed_out["agent_id"] == "missed"
    requeued = await second.store.get_work(by_agent["missed"]["interaction_id"])
    assert requeued["status"] == "waiting"
    assert requeued["queued_at"] == before["queued_at"]  # back in line with its age
    assert harness.observer.named("offer.timed_out", offer_id=by_agent["kept"]["offer_id"]) == []


async def test_an_offer_timer_without_its_timer_entry_is_repaired_and_fires(harness: Any) -> None:
    """Data written before ``timers`` existed (or an entry lost) still times out."""
    router = await harness.start()
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=3.0
    )
    await harness.agent("slow")
    await harness.request(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    [offer] = await harness.observer.wait_for("offer.made")
    await router.store.timers.delete_many({})  # the entry is gone; the offer's timer is not
    assert await router.store.repair_timers() == 1
    [timed_out] = await harness.observer.wait_for("offer.timed_out", seconds=20)
    assert timed_out["offer_id"] == offer["offer_id"]


async def test_a_timer_whose_write_is_still_on_the_way_is_kept_and_fires_once_it_lands(
    harness: Any,
) -> None:
    router = await harness.start(timer_poll_seconds=3600.0)  # this test polls by hand
    await harness.configure(name="support", channel="email", team="support")
    await harness.request(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    store = router.store
    doc = await store.get_work("case-1")
    now = datetime.now(UTC)
    offered = {**doc, "status": "offered", "due": now - timedelta(seconds=1)}
    offered["version"] = doc["version"] + 1

    # A replace writes the timer entry first, then the interaction: here the second write is
    # slow, and the entry is already due when the poll reads it.
    await store._note_timer(offered)
    assert await store.due_work(now) == []
    assert await store.timers.count_documents({"i": "case-1"}) == 1  # kept, not dropped

    assert await store.replace_work(doc["version"], offered)
    [due] = await store.due_work(datetime.now(UTC))
    assert due["_id"] == "case-1" and due["status"] == "offered"
