"""Offers and their timers live in MongoDB: they survive a restart of routing."""

from __future__ import annotations

from datetime import UTC, datetime
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
    assert before is not None
    await harness.stop(first)  # routing goes away with two live offers

    second = await harness.start()
    item = await second.store.get_work(by_agent["kept"]["interaction_id"])
    assert item is not None and item.status == "offered"
    accepted = await harness.request(
        OfferAnswer(offer_id=by_agent["kept"]["offer_id"], agent_id="kept", accept=True)
    )
    assert accepted.ok and accepted.result["status"] == "assigned"
    [timed_out] = await harness.observer.wait_for("offer.timed_out", seconds=20)
    assert timed_out["offer_id"] == by_agent["missed"]["offer_id"]
    assert timed_out["agent_id"] == "missed"
    requeued = await second.store.get_work(by_agent["missed"]["interaction_id"])
    assert requeued is not None and requeued.status == "waiting"
    assert requeued.queued_at == before.queued_at  # back in line with its age
    assert harness.observer.named("offer.timed_out", offer_id=by_agent["kept"]["offer_id"]) == []


async def test_an_offer_timer_without_its_timer_entry_is_repaired_and_fires(harness: Any) -> None:
    """An interaction whose timer was not written (a crash between the two writes, or data
    from before ``work_timers``) still times out."""
    router = await harness.start()
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=3.0
    )
    await harness.agent("slow")
    await harness.request(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    [offer] = await harness.observer.wait_for("offer.made")
    await router.store.timers.collection.delete_many({})  # the timer is gone; the due is not
    assert await router.store.repair_timers() == 1
    [timed_out] = await harness.observer.wait_for("offer.timed_out", seconds=20)
    assert timed_out["offer_id"] == offer["offer_id"]


async def test_timers_of_an_earlier_version_are_moved_at_start(harness: Any) -> None:
    """The ``timers`` entries of earlier versions are dropped and the interactions' timers
    armed again when routing starts."""
    first = await harness.start(timer_poll_seconds=3600.0)
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=3.0
    )
    await harness.agent("slow")
    await harness.request(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    [offer] = await harness.observer.wait_for("offer.made")
    item = await first.store.get_work("case-1")
    # as an earlier version left it: an entry in ``timers``, none in ``work_timers``
    await first.store.timers.collection.delete_many({})
    old = {"_id": f"case-1|{item.due.isoformat()}", "i": "case-1", "due": item.due, "v": 2}
    await first.store.db["timers"].insert_one(old)
    await harness.stop(first)

    second = await harness.start()
    [timed_out] = await harness.observer.wait_for("offer.timed_out", seconds=20)
    assert timed_out["offer_id"] == offer["offer_id"]
    assert "timers" not in await second.store.db.list_collection_names()


async def test_a_timer_left_by_an_older_write_never_fires_early_or_hides_a_newer_one(
    harness: Any,
) -> None:
    router = await harness.start(timer_poll_seconds=3600.0)  # this test polls by hand
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=600.0
    )
    await harness.agent("ann")
    await harness.request(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    [offer] = await harness.observer.wait_for("offer.made")
    store = router.store
    item = await store.get_work("case-1")
    assert item.status == "offered" and item.due is not None

    # A write of an older version finishing last (a slow writer) moves nothing.
    older = item.model_copy(update={"version": item.version - 1, "due": datetime.now(UTC)})
    await store.set_timer(older)
    [timer] = [t async for t in store.timers.all()]
    assert timer.due == item.due

    # A timer due now whose interaction is due later (left behind) is moved, not fired.
    await store.timers.collection.update_one({"_id": "case-1"}, {"$set": {"due": older.due}})
    assert await router.fire_timers() == 0
    [timer] = [t async for t in store.timers.all()]
    assert timer.due == item.due
    assert (await store.get_work("case-1")).status == "offered"
    assert harness.observer.named("offer.timed_out", offer_id=offer["offer_id"]) == []
