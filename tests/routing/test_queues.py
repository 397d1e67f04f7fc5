"""Team and personal queues, transfers, configuration and the supervisor view."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from switchboard.contracts.routing import (
    OfferAnswer,
    PersonalQueueListRequested,
    PersonalQueuePull,
    QueueViewRequested,
    RouteRequested,
    ServiceConfigured,
    ServiceDefinition,
    ServiceRemoved,
    ServicesListRequested,
    TeamQueueListRequested,
    TeamQueuePull,
    TransferRequested,
)

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "routing.json"


def route(interaction_id: str, service: str = "support", **fields: Any) -> RouteRequested:
    return RouteRequested(interaction_id=interaction_id, channel="email", service=service, **fields)


async def test_two_agents_pulling_at_once_get_different_emails(harness: Any) -> None:
    await harness.start()
    await harness.start()  # two replicas answer the pulls
    await harness.configure(name="support", channel="email", team="support")
    for n in range(4):
        await harness.request(route(f"case-{n}"))
    await harness.agent("ann", state="not_ready", capacity={"email": 5})
    await harness.agent("bob", state="not_ready", capacity={"email": 5})
    await harness.agent("eve", teams=("sales",), state="not_ready")

    listed = await harness.request(TeamQueueListRequested(agent_id="ann"))
    assert listed.ok
    assert [i["interaction_id"] for i in listed.result["items"]] == [f"case-{n}" for n in range(4)]
    assert (await harness.request(TeamQueueListRequested(agent_id="eve"))).result["items"] == []

    for _ in range(2):
        pulls = await asyncio.gather(
            harness.request(TeamQueuePull(agent_id="ann")),
            harness.request(TeamQueuePull(agent_id="bob")),
        )
        assert all(p.ok for p in pulls), pulls
        assert pulls[0].result["interaction_id"] != pulls[1].result["interaction_id"]
    assigned = await harness.observer.wait_for("interaction.assigned", count=4)
    assert {a["interaction_id"] for a in assigned} == {f"case-{n}" for n in range(4)}
    assert {a["how"] for a in assigned} == {"pulled"}
    empty = await harness.request(TeamQueuePull(agent_id="ann"))
    assert not empty.ok and empty.error.code == "queue_empty"

    # the same named email pulled by two at once: exactly one wins
    await harness.request(route("case-x"))
    both = await asyncio.gather(
        harness.request(TeamQueuePull(agent_id="ann", interaction_id="case-x")),
        harness.request(TeamQueuePull(agent_id="bob", interaction_id="case-x")),
    )
    assert sorted(p.ok for p in both) == [False, True], both
    loser = next(p for p in both if not p.ok)
    assert loser.error.code == "not_available" and loser.error.field == "interaction_id"


async def test_a_pull_respects_capacity_and_team(harness: Any) -> None:
    await harness.start()
    await harness.configure(name="support", channel="email", team="support")
    await harness.request(route("case-1"))
    await harness.request(route("case-2"))
    await harness.agent("ann", state="not_ready")
    await harness.agent("eve", teams=("sales",), state="not_ready")
    refused = await harness.request(TeamQueuePull(agent_id="eve", service="support"))
    assert not refused.ok and refused.error.code == "not_your_service"
    assert refused.error.field == "service"
    assert (await harness.request(TeamQueuePull(agent_id="ann"))).ok
    full = await harness.request(TeamQueuePull(agent_id="ann"))
    assert not full.ok and full.error.code == "at_capacity"
    ghost = await harness.request(TeamQueuePull(agent_id="ghost"))
    assert not ghost.ok and ghost.error.code == "unknown_agent"


async def test_a_team_queue_shows_and_yields_only_work_the_agent_has_the_skills_for(
    harness: Any,
) -> None:
    await harness.start()
    await harness.configure(
        name="billing-fr", channel="email", team="support", required_skills={"french": 3}
    )
    await harness.configure(name="support", channel="email", team="support")
    await harness.request(route("case-fr", service="billing-fr"))
    await harness.request(route("case-en"))
    await harness.agent("ann", state="not_ready", skills={"french": 1}, capacity={"email": 5})
    await harness.agent("zoe", state="not_ready", skills={"french": 4}, capacity={"email": 5})

    listed = await harness.request(TeamQueueListRequested(agent_id="ann"))
    assert [i["interaction_id"] for i in listed.result["items"]] == ["case-en"]
    named = await harness.request(TeamQueuePull(agent_id="ann", interaction_id="case-fr"))
    assert not named.ok and named.error.code == "not_available"
    by_service = await harness.request(TeamQueuePull(agent_id="ann", service="billing-fr"))
    assert not by_service.ok and by_service.error.code == "missing_skills"
    assert "french 3" in by_service.error.message and by_service.error.field == "service"

    pulled = await harness.request(TeamQueuePull(agent_id="zoe", service="billing-fr"))
    assert pulled.ok and pulled.result["interaction_id"] == "case-fr"
    assert (await harness.request(TeamQueuePull(agent_id="ann"))).result["interaction_id"] == (
        "case-en"
    )


async def test_personal_queue_waits_for_its_agent_then_overflows_to_the_team(
    harness: Any,
) -> None:
    await harness.start()
    await harness.configure(
        name="support", channel="email", team="support", personal_overflow_seconds=1.0
    )
    await harness.agent("mine", state="not_ready")
    await harness.agent("other")
    await harness.request(route("case-p", personal_agent_id="mine", reason="follow_up"))
    [queued] = await harness.observer.wait_for("interaction.queued", interaction_id="case-p")
    assert queued["personal_agent_id"] == "mine"
    listed = await harness.request(PersonalQueueListRequested(agent_id="mine"))
    assert [i["interaction_id"] for i in listed.result["items"]] == ["case-p"]
    assert (await harness.request(PersonalQueueListRequested(agent_id="other"))).result == {
        "items": []
    }
    await asyncio.sleep(0.3)
    assert harness.observer.named("offer.made", interaction_id="case-p") == []  # other: no

    [offer] = await harness.observer.wait_for(
        "offer.made", interaction_id="case-p", seconds=5
    )  # overflowed to the team after 1 s
    assert offer["agent_id"] == "other"
    assert len(harness.observer.named("interaction.queued", interaction_id="case-p")) == 2


async def test_personal_queue_offers_and_pulls_for_its_agent(harness: Any) -> None:
    await harness.start()
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("mine", state="not_ready", capacity={"email": 2})
    await harness.request(route("case-a", personal_agent_id="mine"))
    await harness.request(route("case-b", personal_agent_id="mine"))
    pulled = await harness.request(PersonalQueuePull(agent_id="mine", interaction_id="case-b"))
    assert pulled.ok and pulled.result["interaction_id"] == "case-b"
    other = await harness.request(PersonalQueuePull(agent_id="someone", interaction_id="case-a"))
    assert not other.ok
    await harness.set_state("mine", "ready")
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-a")
    assert offer["agent_id"] == "mine"


async def test_transfer_to_a_service_and_to_a_named_agent(harness: Any) -> None:
    router = await harness.start()
    await harness.configure(name="support", channel="email", team="support", auto_accept=True)
    await harness.configure(name="billing", channel="email", team="billing")
    await harness.configure(name="calls", channel="preview")
    await harness.agent("ann")
    await harness.agent("bill", teams=("billing",))
    await harness.agent("zoe", teams=("billing",), state="not_ready")
    await harness.request(route("case-t"))
    await harness.observer.wait_for("interaction.assigned", interaction_id="case-t")

    not_mine = await harness.request(
        TransferRequested(interaction_id="case-t", agent_id="bill", to_service="billing")
    )
    assert not not_mine.ok and not_mine.error.code == "not_yours"
    wrong = await harness.request(
        TransferRequested(interaction_id="case-t", agent_id="ann", to_service="calls")
    )
    assert not wrong.ok and wrong.error.code == "channel_mismatch"
    nowhere = await harness.request(TransferRequested(interaction_id="case-t", agent_id="ann"))
    assert not nowhere.ok and nowhere.error.field == "to_service"

    moved = await harness.request(
        TransferRequested(
            interaction_id="case-t", agent_id="ann", to_service="billing", reason="invoice"
        )
    )
    assert moved.ok and moved.result["service"] == "billing"
    [event] = await harness.observer.wait_for("interaction.transferred", interaction_id="case-t")
    assert event["from_agent_id"] == "ann" and event["reason"] == "invoice"
    offer = (await harness.observer.wait_for("offer.made", interaction_id="case-t", count=2))[1]
    assert offer["agent_id"] == "bill" and offer["service"] == "billing"
    assert (
        await harness.request(OfferAnswer(offer_id=offer["offer_id"], agent_id="bill", accept=True))
    ).ok

    to_zoe = await harness.request(
        TransferRequested(interaction_id="case-t", agent_id="bill", to_agent_id="zoe")
    )
    assert to_zoe.ok
    listed = await harness.request(PersonalQueueListRequested(agent_id="zoe"))
    assert [i["interaction_id"] for i in listed.result["items"]] == ["case-t"]
    item = await router.store.get_work("case-t")
    # each assignment is kept too (reporting's rebuild asks routing for them)
    whats = [h.what for h in item.history]
    assert whats == ["assigned", "transferred", "assigned", "transferred"]
    assert (item.history[1].model_extra or {})["from_service"] == "support"
    live = await router.live_assignments(["ann", "bill"])
    assert live == {"assignments": {"ann": [], "bill": []}}  # capacity freed on both
    await harness.set_state("zoe", "ready")
    offers = await harness.observer.wait_for("offer.made", interaction_id="case-t", count=3)
    assert offers[2]["agent_id"] == "zoe"


async def test_service_configuration_commands_and_the_queue_view(harness: Any) -> None:
    await harness.start()
    defined = await harness.request(
        ServiceConfigured(service=ServiceDefinition(name="support", channel="email", priority=3))
    )
    assert defined.ok and defined.result["service"]["priority"] == 3
    bad = await harness.request(
        ServiceConfigured(
            service=ServiceDefinition(name="loop", channel="email", overflow_service="loop")
        )
    )
    assert not bad.ok and bad.error.field == "service.overflow_service"
    listed = await harness.request(ServicesListRequested())
    assert [s["name"] for s in listed.result["services"]] == ["support"]

    await harness.request(route("case-1"))
    await harness.request(route("case-2", personal_agent_id="someone"))
    view = await harness.request(QueueViewRequested())
    row = view.result["services"]["support"]
    assert row["depth"] == 1 and row["personal"] == 1 and row["offered"] == 0
    assert row["oldest_wait_seconds"] >= 0

    busy = await harness.request(ServiceRemoved(name="support"))
    assert not busy.ok and busy.error.code == "service_in_use"
    await harness.configure(name="empty", channel="preview")
    assert (await harness.request(ServiceRemoved(name="empty"))).ok
    gone = await harness.request(ServiceRemoved(name="empty"))
    assert not gone.ok and gone.error.code == "unknown_service"


async def test_services_are_seeded_from_the_demo_file_only_when_empty(harness: Any) -> None:
    demo = DEMO
    await harness.start(routing_config_file=demo)
    listed = await harness.request(ServicesListRequested())
    services = {s["name"]: s for s in listed.result["services"]}
    assert set(services) == {"support", "sales", "outbound-preview"}
    assert services["support"]["team"] == "support"
    assert services["support"]["offer_timeout_seconds"] == 30
    assert services["support"]["preferred_agent_wait_seconds"] == 60
    assert services["outbound-preview"]["channel"] == "preview"
    assert services["outbound-preview"]["auto_accept"] is False
    assert json.loads(demo.read_text())["services"]
    await harness.configure(name="support", channel="email", priority=99)
    await harness.start(routing_config_file=demo)  # a second replica: nothing re-seeded
    listed = await harness.request(ServicesListRequested())
    assert {s["name"]: s["priority"] for s in listed.result["services"]}["support"] == 99


async def test_preferred_agent_gets_the_follow_up_within_the_wait(harness: Any) -> None:
    await harness.start()
    await harness.configure(
        name="support", channel="email", team="support", preferred_agent_wait_seconds=1.0
    )
    await harness.agent("prev", state="not_ready")
    await harness.agent("other")
    await harness.request(route("case-f", preferred_agent_id="prev", reason="follow_up"))
    await asyncio.sleep(0.4)
    assert harness.observer.named("offer.made", interaction_id="case-f") == []
    await harness.set_state("prev", "ready")
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-f")
    assert offer["agent_id"] == "prev"

    # the wait runs out: anyone may take it; an offline preferred agent is not waited for
    await harness.request(route("case-g", preferred_agent_id="prev"))
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-g", seconds=5)
    assert offer["agent_id"] == "other"
    await harness.agent("gone", state="logged_out")
    await harness.request(route("case-h", preferred_agent_id="gone"))
    await harness.agent("third")
    [offer] = await harness.observer.wait_for("offer.made", interaction_id="case-h", seconds=0.9)
    assert offer["agent_id"] == "third"
