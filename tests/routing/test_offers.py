"""Offers as reservations, against real RabbitMQ and the MongoDB-protocol server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from switchboard.contracts.routing import (
    InteractionEnded,
    LiveAssignmentsRequested,
    OfferAnswer,
    RouteRequested,
    RouteWithdrawn,
    ServiceRemoved,
)
from switchboard.routing.domain import AgentRecord, Hold


def route(interaction_id: str, service: str = "support", **fields: Any) -> RouteRequested:
    return RouteRequested(
        interaction_id=interaction_id,
        channel=fields.pop("channel", "email"),
        service=service,
        **fields,
    )


async def test_offer_accept_assigns_and_ending_frees_capacity_for_the_next(harness: Any) -> None:
    await harness.start(sweep_seconds=60.0)  # no backstop sweep: the events must do it
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("a1")
    await harness.publish(route("case-1", summary={"subject": "Parcel lost"}))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-1")
    assert offer["agent_id"] == "a1" and offer["summary"]["subject"] == "Parcel lost"
    assert offer["summary"]["waiting_since"]
    assert offer["service"] == "support" and offer["auto_accept"] is False

    await harness.publish(route("case-2"))
    await harness.observer.wait_for("interaction.queued", interaction_id="case-2")
    await asyncio.sleep(0.3)
    assert harness.observer.named("offer.made", interaction_id="case-2") == []  # a1 is full

    accepted = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="a1", accept=True)
    )
    assert accepted.ok and accepted.result["status"] == "assigned"
    [assigned] = await harness.observer.wait_for("interaction.assigned", interaction_id="case-1")
    assert assigned["how"] == "accepted" and assigned["offer_id"] == offer["offer_id"]
    again = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="a1", accept=True)
    )
    assert again.ok  # answering twice is harmless

    live = await harness.request(LiveAssignmentsRequested())
    assert live.result == {"assignments": {"a1": ["case-1"]}}

    await harness.publish(InteractionEnded(interaction_id="case-1", agent_id="a1", channel="email"))
    [second] = await harness.observer.wait_for("offer.made", interaction_id="case-2")
    assert second["agent_id"] == "a1"
    live = await harness.request(LiveAssignmentsRequested(agent_ids=["a1", "a2"]))
    assert live.result == {"assignments": {"a1": [], "a2": []}}


async def test_reject_goes_to_the_next_agent_and_only_the_holder_may_answer(
    harness: Any,
) -> None:
    await harness.start()
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("first", skills={"german": 9})
    await harness.agent("second", skills={"german": 1})
    await harness.publish(route("case-r"))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-r")
    assert offer["agent_id"] == "first"

    stolen = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="second", accept=True)
    )
    assert not stolen.ok and stolen.error.code == "not_yours"
    assert stolen.error.field == "agent_id"
    unknown = await harness.request(OfferAnswer(offer_id="nope", agent_id="first", accept=True))
    assert not unknown.ok and unknown.error.code == "unknown_offer"

    rejected = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="first", accept=False, reason="busy")
    )
    assert rejected.ok and rejected.result["status"] == "rejected"
    [event] = await harness.observer.wait_for("offer.rejected", interaction_id="case-r")
    assert event["reason"] == "busy"
    offers = await harness.observer.wait_for("offer.made", interaction_id="case-r", count=2)
    assert offers[1]["agent_id"] == "second"
    assert offers[1]["offer_id"] != offer["offer_id"]
    late = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="first", accept=True)
    )
    assert not late.ok and late.error.code == "offer_closed"


async def test_timeout_sends_rona_and_requeues_at_the_head_with_its_age(harness: Any) -> None:
    router = await harness.start()
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=0.6
    )
    await harness.agent("sleepy")
    old = datetime.now(UTC) - timedelta(minutes=10)
    await harness.publish(route("case-old", requested_at=old))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-old")
    assert offer["agent_id"] == "sleepy"
    await harness.publish(route("case-new"))
    await harness.observer.wait_for("interaction.queued", interaction_id="case-new")

    [timed_out] = await harness.observer.wait_for(
        "offer.timed_out", interaction_id="case-old", seconds=5
    )
    assert timed_out["agent_id"] == "sleepy" and timed_out["offer_id"] == offer["offer_id"]
    item = await router.store.get_work("case-old")
    assert item.status == "waiting"
    assert abs((item.queued_at - old).total_seconds()) < 0.01  # age kept
    # the agent is held off (agent-state moves them to RONA): no new offer meanwhile
    await asyncio.sleep(0.5)
    assert len(harness.observer.named("offer.made", agent_id="sleepy")) == 1
    late = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="sleepy", accept=True)
    )
    assert not late.ok and late.error.code == "offer_closed"

    # another agent comes: the old one (head of the queue, age kept) is offered first
    await harness.agent("fresh")
    offers = await harness.observer.wait_for("offer.made", agent_id="fresh")
    assert offers[0]["interaction_id"] == "case-old"
    view = await router.queue_view(["support"])
    assert view["support"]["offered"] == 1 and view["support"]["depth"] == 1
    assert view["support"]["oldest_wait_seconds"] < 60  # case-new is what waits now


async def test_offers_go_out_at_once_when_an_agent_becomes_ready(harness: Any) -> None:
    await harness.start(sweep_seconds=60.0)
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("late", state="not_ready")
    for n in range(3):
        await harness.publish(route(f"case-{n}"))
    await harness.observer.wait_for("interaction.queued", count=3)
    await asyncio.sleep(0.3)
    assert harness.observer.named("offer.made") == []
    started = asyncio.get_running_loop().time()
    await harness.set_state("late", "ready")
    [offer] = await harness.observer.wait_for("offer.made", agent_id="late")
    assert asyncio.get_running_loop().time() - started < 2.0
    assert offer["interaction_id"] == "case-0"  # the oldest first


async def test_busy_agent_with_free_email_capacity_gets_more_email(harness: Any) -> None:
    await harness.start()
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("multi", capacity={"email": 2, "preview": 1})
    for n in range(3):
        await harness.publish(route(f"case-{n}"))
    offers = await harness.observer.wait_for("offer.made", agent_id="multi", count=2)
    for offer in offers:
        outcome = await harness.request(
            OfferAnswer(offer_id=offer["offer_id"], agent_id="multi", accept=True)
        )
        assert outcome.ok
    await harness.set_state("multi", "busy")
    await asyncio.sleep(0.8)
    assert len(harness.observer.named("offer.made", agent_id="multi")) == 2  # full
    await harness.publish(
        InteractionEnded(
            interaction_id=offers[0]["interaction_id"], agent_id="multi", channel="email"
        )
    )
    third = await harness.observer.wait_for("offer.made", agent_id="multi", count=3)
    first_two = {o["interaction_id"] for o in offers}
    assert {third[2]["interaction_id"]} == {"case-0", "case-1", "case-2"} - first_two


async def test_auto_accept_service_assigns_at_once(harness: Any) -> None:
    await harness.start()
    await harness.configure(name="outbound-preview", channel="preview", auto_accept=True)
    await harness.agent("caller", teams=())
    await harness.publish(
        route("record-7", service="outbound-preview", channel="preview", reason="preview")
    )
    [assigned] = await harness.observer.wait_for("interaction.assigned", interaction_id="record-7")
    assert assigned["how"] == "auto_accepted" and assigned["agent_id"] == "caller"
    [offer] = harness.observer.named("offer.made", interaction_id="record-7")
    assert offer["auto_accept"] is True


async def test_a_repeated_request_is_a_no_op_and_after_the_end_starts_a_new_round(
    harness: Any,
) -> None:
    router = await harness.start()
    await harness.configure(name="support", channel="email", team="support", auto_accept=True)
    await harness.agent("a1")
    first = await harness.request(route("case-9"))
    assert first.ok and first.result["round"] == 1
    again = await harness.request(route("case-9"))
    assert again.ok and again.result["already"] is True
    await harness.observer.wait_for("interaction.assigned", interaction_id="case-9")
    await harness.publish(InteractionEnded(interaction_id="case-9", agent_id="a1", channel="email"))

    async def ended() -> bool:
        live = await router.store.get_work("case-9")
        archived = await router.store.get_archived("case-9")
        return live is None and bool(archived and archived.status == "ended")

    await harness.eventually(ended)
    # The same request handled again (a redelivery after its first handling failed late): the
    # round it opened is over, and it must not open another.
    request = route("case-9")
    await router.request(request)
    await harness.observer.wait_for("interaction.assigned", interaction_id="case-9", count=2)
    await harness.publish(InteractionEnded(interaction_id="case-9", agent_id="a1", channel="email"))
    await harness.eventually(ended)
    redelivered = await router.request(request)
    assert redelivered == {"status": "ended", "already": True}
    follow_up = await harness.request(route("case-9", reason="follow_up"))
    assert follow_up.ok and follow_up.result["round"] == 3
    await harness.observer.wait_for("interaction.assigned", interaction_id="case-9", count=3)
    assert len(harness.observer.named("interaction.assigned", interaction_id="case-9")) == 3


async def test_withdrawing_a_live_offer_cancels_it_and_frees_the_agent(harness: Any) -> None:
    router = await harness.start()
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("a1")
    await harness.publish(route("case-w"))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-w")
    await harness.publish(route("case-x"))
    outcome = await harness.request(RouteWithdrawn(interaction_id="case-w", reason="spam"))
    assert outcome.ok and outcome.result["status"] == "withdrawn"
    [cancelled] = await harness.observer.wait_for("offer.cancelled", interaction_id="case-w")
    assert cancelled["offer_id"] == offer["offer_id"] and cancelled["agent_id"] == "a1"
    await harness.observer.wait_for("offer.made", interaction_id="case-x")
    # a late copy of the old request does not bring it back
    stale = route("case-w", occurred_at=datetime.now(UTC) - timedelta(minutes=1))
    assert (await harness.request(stale)).result.get("stale") is True
    item = await router.store.get_work("case-w")
    assert item.status == "withdrawn"


async def test_logging_out_takes_back_a_live_offer_and_the_next_agent_gets_it(
    harness: Any,
) -> None:
    await harness.start(sweep_seconds=60.0)
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=30.0
    )
    await harness.agent("a1")
    await harness.publish(route("case-1"))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-1")
    assert offer["agent_id"] == "a1"
    await harness.agent("a2", state="not_ready")

    await harness.set_state("a1", "logged_out")
    [cancelled] = await harness.observer.wait_for("offer.cancelled", interaction_id="case-1")
    assert cancelled["offer_id"] == offer["offer_id"] and cancelled["agent_id"] == "a1"
    assert "logged out" in cancelled["reason"]
    late = await harness.request(
        OfferAnswer(offer_id=offer["offer_id"], agent_id="a1", accept=True)
    )
    assert not late.ok and late.error.code == "offer_closed"

    await harness.set_state("a2", "ready")
    offers = await harness.observer.wait_for("offer.made", count=2, interaction_id="case-1")
    assert offers[1]["agent_id"] == "a2"  # long before the 30 s offer timeout
    assert harness.observer.named("offer.timed_out") == []  # no RONA for the one who left


async def test_stale_agent_states_are_ignored(harness: Any) -> None:
    router = await harness.start()
    await harness.agent("a1", state=None)
    fresh = harness.state_message("a1", "ready")
    fresh = fresh.model_copy(update={"sequence": 5})
    stale = fresh.model_copy(update={"sequence": 4, "state": "logged_out"})
    await router.state_changed(fresh)
    await router.state_changed(stale)
    agent = await router.store.get_agent("a1")
    assert agent.state == "ready" and agent.state_seq == 5


async def test_metrics_are_exposed(harness: Any) -> None:
    await harness.start(metrics_seconds=0.2)
    await harness.configure(name="support", channel="email", team="support")
    await harness.publish(route("case-m"))
    await harness.observer.wait_for("interaction.queued", interaction_id="case-m")
    transport = httpx.ASGITransport(app=harness.runtime.app)

    async def exposed() -> str | None:
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as client:
            text = (await client.get("/metrics")).text
        return text if 'switchboard_routing_queue_depth{queue="support"} 1.0' in text else None

    text = await harness.eventually(exposed, seconds=15)
    assert "switchboard_routing_queue_oldest_wait_seconds" in text
    for name in (
        "switchboard_routing_offers_total",
        "switchboard_routing_offer_outcomes_total",
        "switchboard_routing_request_to_offer_seconds",
        "switchboard_routing_rona_total",
    ):
        assert name in text


async def test_handle_time_runs_from_assignment_to_the_end(harness: Any) -> None:
    from prometheus_client import REGISTRY

    def handled() -> float:
        labels = {"queue": "support"}
        found = REGISTRY.get_sample_value("switchboard_routing_handle_seconds_count", labels)
        return found or 0.0

    await harness.start()
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("a1")
    before = handled()
    await harness.publish(route("case-h"))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-h")
    answer = OfferAnswer(offer_id=offer["offer_id"], agent_id="a1", accept=True)
    assert (await harness.request(answer)).ok
    assert handled() == before, "not handled before it ends"
    await harness.publish(InteractionEnded(interaction_id="case-h", agent_id="a1", channel="email"))

    async def measured() -> bool:
        return handled() == before + 1

    await harness.eventually(measured)


async def test_a_removed_queue_loses_its_gauges(harness: Any) -> None:
    await harness.start(metrics_seconds=0.2)
    await harness.configure(name="support", channel="email", team="support")
    await harness.configure(name="retired", channel="email", team="support")
    transport = httpx.ASGITransport(app=harness.runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://routing") as client:

        async def shows(fragment: str) -> bool:
            return fragment in (await client.get("/metrics")).text

        async def retired_gone() -> bool:
            return not await shows('queue="retired"') and await shows('{queue="support"}')

        await harness.eventually(lambda: shows('switchboard_routing_queue_depth{queue="retired"}'))
        outcome = await harness.request(ServiceRemoved(name="retired"))
        assert outcome.ok, outcome
        await harness.eventually(retired_gone)


async def test_work_queued_by_one_replica_is_offered_by_another_as_soon_as_its_agent_is_ready(
    harness: Any,
) -> None:
    # No full read after the first one: only the replicas' notices keep the index in step.
    first = await harness.start(sweep_seconds=3600.0, queue_index_seconds=3600.0)
    second = await harness.start(sweep_seconds=3600.0, queue_index_seconds=3600.0)
    await harness.eventually(_both_indexes_built(first, second))
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("alice", state="not_ready")

    await first.request(route("case-1"))
    await first.request(route("case-2", priority=5))

    async def second_knows() -> bool:
        return second.hints.head(services=["support"], limit=5) == ["case-2", "case-1"]

    await harness.eventually(second_knows, seconds=5.0)
    second.catalog.invalidate()  # it caches the services for 2 s; the service is brand new
    await second.state_changed(harness.state_message("alice", "ready"))
    [offer] = await harness.observer.wait_for("offer.made", agent_id="alice", seconds=5.0)
    assert offer["interaction_id"] == "case-2"  # the higher priority first

    async def first_knows_it_left_the_queue() -> bool:
        return first.hints.head(services=["support"], limit=5) == ["case-1"]

    await harness.eventually(first_knows_it_left_the_queue, seconds=5.0)


def _both_indexes_built(*routers: Any) -> Any:
    async def check() -> bool:
        return all(r.hints.built for r in routers)

    return check


async def test_the_sweep_finds_work_behind_a_deeper_queue_nobody_free_serves(
    harness: Any,
) -> None:
    await harness.start(sweep_seconds=0.3, sweep_batch=5)
    await harness.configure(name="backlog", channel="email", team="backlog")
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("alice", state="not_ready")
    for n in range(8):  # older than alice's work, and no one of team "backlog" is Ready
        await harness.publish(route(f"old-{n}", service="backlog"))
    await harness.observer.wait_for("interaction.queued", count=8)
    await harness.publish(route("case-1"))
    await harness.observer.wait_for("interaction.queued", interaction_id="case-1")

    def ready(agent: AgentRecord) -> AgentRecord:
        return agent.model_copy(update={"state": "ready"})

    # Alice's Ready event is lost: only the sweep can bring her the work.
    await harness.router.store.change_agent("alice", ready, create=False)

    [offer] = await harness.observer.wait_for("offer.made", agent_id="alice", seconds=10.0)
    assert offer["interaction_id"] == "case-1"


async def test_requests_at_the_same_moment_go_to_different_free_agents_at_once(
    harness: Any,
) -> None:
    router = await harness.start(sweep_seconds=3600.0)  # no sweep: the dispatch must do it
    await harness.configure(name="support", channel="email", team="support")
    agents = [f"agent-{n}" for n in range(8)]
    for name in agents:
        await harness.agent(name)
    router.catalog.invalidate()

    # Each dispatch sees the same longest-idle agent first: the replica counts the room its
    # offers in the making take, so they spread instead of losing that race to each other.
    await asyncio.gather(*(router.request(route(f"case-{n}")) for n in range(8)))

    offers = await harness.observer.wait_for("offer.made", count=8, seconds=5.0)
    assert sorted(o["agent_id"] for o in offers) == agents


async def test_agents_ready_at_the_same_moment_get_different_work_at_once(harness: Any) -> None:
    router = await harness.start(sweep_seconds=3600.0)  # no sweep: the dispatches must do it
    await harness.configure(name="support", channel="email", team="support")
    agents = [f"agent-{n}" for n in range(8)]
    for name in agents:
        await harness.agent(name, state="not_ready")
    for n in range(8):
        await harness.request(route(f"case-{n}"))
    await router.refresh_queue_index()

    # Every dispatch starts from the head of the same queue: the replica spreads them over it
    # instead of letting all but one lose the head (a retake each) until they give up.
    await asyncio.gather(
        *(router.state_changed(harness.state_message(name, "ready")) for name in agents)
    )

    offers = await harness.observer.wait_for("offer.made", count=8, seconds=5.0)
    assert sorted(o["agent_id"] for o in offers) == agents
    assert sorted(o["interaction_id"] for o in offers) == [f"case-{n}" for n in range(8)]


async def test_a_stale_hold_is_released_only_once_its_late_offer_can_no_longer_land(
    harness: Any,
) -> None:
    router = await harness.start(stale_hold_seconds=3600.0)
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("slow", state="not_ready")
    await harness.request(route("case-1"))
    item = await router.store.get_work("case-1")
    assert item.status == "waiting"

    # An offer half made: the agent's hold is written, the interaction is not yet (the database
    # stalled between the two writes for longer than the stale-hold time).
    at = datetime.now(UTC) - timedelta(hours=2)
    hold = Hold(offer_id="late-offer", interaction_id="case-1", channel="email", at=at, token="x")

    def held(agent: AgentRecord) -> AgentRecord:
        return agent.model_copy(update={"holds": [hold]})

    await router.store.change_agent("slow", held, create=False)
    assert await router.release_stale_holds() == 1

    late = item.model_copy(update={"status": "offered", "offer_id": "late-offer"})
    assert await router.store.replace_work(item, late) is None  # it cannot land uncounted
    assert (await router.store.get_agent("slow")).holds == []
    assert (await router.store.get_work("case-1")).status == "waiting"
